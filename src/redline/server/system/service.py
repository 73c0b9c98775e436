"""Server-wide operations: health, and the first-run setup behind `redline init`."""

from __future__ import annotations

from sqlalchemy import Connection, text

from redline.server.accounts import service as accounts
from redline.server.auth import Principal
from redline.server.http_errors import ApiError
from redline.server.projects import service as projects
from redline.server.teams import service as teams


def check_database(conn: Connection) -> None:
    conn.execute(text("SELECT 1"))


def setup(conn: Connection, email: str, password: str, name: str | None, team_name: str,
          project_name: str, key_name: str) -> dict:
    """Create the first owner, their team, a project and a CI key, on an empty server only."""
    if accounts.has_users(conn):
        raise ApiError("CONFLICT", "This server is set up already: sign in with `redline "
                       "login` instead", {"reason": "already_set_up"})
    user = accounts.create_user(conn, email, password, name)
    principal = Principal("user", user.id)
    team = teams.create_team(conn, principal, team_name)
    project = projects.create_project(conn, principal, team["id"], project_name)
    key = projects.create_key(conn, principal, project["id"], key_name, None, None)
    return {"user": accounts.user_json(user), "team": team, "project": project,
            "apiKey": {"id": key["id"], "key": key["key"], "name": key["name"],
                       "scopes": key["scopes"]}}
