"""Queries for projects, their settings and API keys."""

from __future__ import annotations

from sqlalchemy import Connection, delete, func, insert, select, update

from redline.server.tables import api_keys, projects, team_members


def insert_project(conn: Connection, **values) -> None:
    conn.execute(insert(projects).values(**values))


def get_project(conn: Connection, project_id: str):
    return conn.execute(select(projects).where(projects.c.id == project_id)).first()


def update_project(conn: Connection, project_id: str, **values) -> None:
    conn.execute(update(projects).where(projects.c.id == project_id).values(**values))


def delete_project(conn: Connection, project_id: str) -> None:
    conn.execute(delete(projects).where(projects.c.id == project_id))


def _team_projects_query(team_id: str, user_id: str, only_project: str | None):
    query = (select(projects).join(team_members, (team_members.c.team_id == projects.c.team_id)
                                   & (team_members.c.user_id == user_id))
             .where(projects.c.team_id == team_id))
    if only_project is not None:
        query = query.where(projects.c.id == only_project)
    return query


def team_projects(conn: Connection, team_id: str, user_id: str, only_project: str | None,
                  limit: int):
    query = _team_projects_query(team_id, user_id, only_project)
    return conn.execute(query.order_by(projects.c.id).limit(limit)).all()


def list_projects(conn: Connection, team_id: str, user_id: str, only_project: str | None,
                  limit: int, offset: int):
    query = _team_projects_query(team_id, user_id, only_project)
    total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    return conn.execute(query.order_by(projects.c.id).limit(limit).offset(offset)).all(), total


def insert_key(conn: Connection, **values) -> None:
    conn.execute(insert(api_keys).values(**values))


def get_key(conn: Connection, key_id: str):
    return conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()


def update_key(conn: Connection, key_id: str, **values) -> None:
    conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(**values))


def delete_key(conn: Connection, key_id: str) -> None:
    conn.execute(delete(api_keys).where(api_keys.c.id == key_id))


def list_keys(conn: Connection, project_id: str, limit: int, offset: int):
    where = api_keys.c.project_id == project_id
    total = conn.execute(select(func.count()).select_from(api_keys).where(where)).scalar_one()
    rows = conn.execute(select(api_keys).where(where).order_by(api_keys.c.id)
                        .limit(limit).offset(offset)).all()
    return rows, total
