"""Queries for teams, memberships and invitations."""

from __future__ import annotations

from sqlalchemy import Connection, delete, func, insert, select, update

from redline.server.tables import invitations, team_members, teams, users


def insert_team(conn: Connection, **values) -> None:
    conn.execute(insert(teams).values(**values))


def get_team(conn: Connection, team_id: str):
    return conn.execute(select(teams).where(teams.c.id == team_id)).first()


def update_team(conn: Connection, team_id: str, **values) -> None:
    conn.execute(update(teams).where(teams.c.id == team_id).values(**values))


def delete_team(conn: Connection, team_id: str) -> None:
    conn.execute(delete(teams).where(teams.c.id == team_id))


def teams_of_user(conn: Connection, user_id: str, team_id: str | None, limit: int,
                  offset: int):
    query = (select(teams).join(team_members, team_members.c.team_id == teams.c.id)
             .where(team_members.c.user_id == user_id))
    if team_id is not None:
        query = query.where(teams.c.id == team_id)
    total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = conn.execute(query.order_by(teams.c.id).limit(limit).offset(offset)).all()
    return rows, total


def insert_member(conn: Connection, **values) -> None:
    conn.execute(insert(team_members).values(**values))


_member_columns = (team_members.c.id, team_members.c.user_id, team_members.c.team_id,
                   team_members.c.role, team_members.c.joined_at, users.c.name, users.c.email)


def list_members(conn: Connection, team_id: str, limit: int, offset: int):
    query = (select(*_member_columns).join(users, users.c.id == team_members.c.user_id)
             .where(team_members.c.team_id == team_id))
    total = conn.execute(select(func.count()).select_from(team_members).where(
        team_members.c.team_id == team_id)).scalar_one()
    return conn.execute(query.order_by(team_members.c.id).limit(limit).offset(offset)).all(), total


def get_member(conn: Connection, member_id: str):
    return conn.execute(select(*_member_columns).join(users, users.c.id == team_members.c.user_id)
                        .where(team_members.c.id == member_id)).first()


def member_of(conn: Connection, team_id: str, user_id: str):
    return conn.execute(select(*_member_columns).join(users, users.c.id == team_members.c.user_id)
                        .where(team_members.c.team_id == team_id,
                               team_members.c.user_id == user_id)).first()


def count_owners(conn: Connection, team_id: str) -> int:
    return conn.execute(select(func.count()).select_from(team_members).where(
        team_members.c.team_id == team_id, team_members.c.role == "owner")).scalar_one()


def update_member(conn: Connection, member_id: str, **values) -> None:
    conn.execute(update(team_members).where(team_members.c.id == member_id).values(**values))


def delete_member(conn: Connection, member_id: str) -> None:
    conn.execute(delete(team_members).where(team_members.c.id == member_id))


def insert_invitation(conn: Connection, **values) -> None:
    conn.execute(insert(invitations).values(**values))


def get_invitation(conn: Connection, invitation_id: str):
    return conn.execute(select(invitations).where(invitations.c.id == invitation_id)).first()


def list_invitations(conn: Connection, team_id: str, limit: int, offset: int):
    where = invitations.c.team_id == team_id
    total = conn.execute(select(func.count()).select_from(invitations).where(where)).scalar_one()
    rows = conn.execute(select(invitations).where(where).order_by(invitations.c.id.desc())
                        .limit(limit).offset(offset)).all()
    return rows, total


def update_invitation(conn: Connection, invitation_id: str, **values) -> None:
    conn.execute(update(invitations).where(invitations.c.id == invitation_id).values(**values))
