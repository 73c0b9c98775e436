"""Queries for users and their sign-ins."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from redline.server.tables import sessions, team_members, teams, users


def find_user_by_email(conn: Connection, email: str):
    return conn.execute(select(users).where(users.c.email == email.lower())).first()


def get_user(conn: Connection, user_id: str):
    return conn.execute(select(users).where(users.c.id == user_id)).first()


def insert_user(conn: Connection, **values) -> None:
    conn.execute(insert(users).values(**values))


def update_user(conn: Connection, user_id: str, **values) -> None:
    conn.execute(update(users).where(users.c.id == user_id).values(**values))


def insert_session(conn: Connection, **values) -> None:
    conn.execute(insert(sessions).values(**values))


def revoke_session(conn: Connection, session_id: str, when) -> None:
    conn.execute(update(sessions).where(sessions.c.id == session_id).values(revoked_at=when))


def revoke_other_sessions(conn: Connection, user_id: str, keep_session_id: str | None,
                          when) -> None:
    """End every session and personal token of a user but one."""
    conn.execute(update(sessions).where(
        sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None),
        sessions.c.id != (keep_session_id or "")).values(revoked_at=when))


def memberships(conn: Connection, user_id: str):
    return conn.execute(
        select(teams.c.id, teams.c.name, team_members.c.role)
        .join(team_members, team_members.c.team_id == teams.c.id)
        .where(team_members.c.user_id == user_id).order_by(teams.c.id)).all()


def count_users(conn: Connection) -> int:
    from sqlalchemy import func

    return conn.execute(select(func.count()).select_from(users)).scalar_one()
