"""A real Redline server in a background thread on a free loopback port, and tenants on it."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import httpx

PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def create_pg_database(admin_url: str) -> str | None:
    """A fresh, empty database for this test session, or None if PostgreSQL is not there."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    name = f"redline_test_{secrets.token_hex(4)}"
    try:
        engine = create_engine(admin_url, isolation_level="AUTOCOMMIT",
                               connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        engine.dispose()
    except OperationalError:
        return None
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(admin_url: str, url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    engine.dispose()


class LiveServer:
    """uvicorn serving `create_app` on 127.0.0.1; `url` is its base URL."""

    def __init__(self, app, port: int):
        import uvicorn

        self.app = app
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @classmethod
    def start(cls, database_url: str, data_dir: Path, **settings) -> LiveServer:
        from redline.server.app import create_app
        from redline.server.config import Settings

        values = {"database_url": database_url, "data_dir": Path(data_dir),
                  "secret_key": "test-secret-key", "cookie_secure": False, **settings}
        app = create_app(Settings(**values))
        return cls(app, free_port())

    @property
    def engine(self):
        return self.app.state.engine

    def __enter__(self) -> Self:
        self._thread.start()
        deadline = time.time() + 20
        while time.time() < deadline:
            if self._server.started:
                return self
            time.sleep(0.02)
        raise RuntimeError("the test server did not start")

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self.app.state.engine.dispose()

    def client(self, **headers) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@dataclass
class Tenant:
    server: LiveServer
    user_id: str
    email: str
    token: str
    team_id: str
    project_id: str
    key: str
    key_id: str
    _clients: list = field(default_factory=list)

    def as_user(self) -> httpx.Client:
        """A client signed in with the user's personal token (`Authorization: Bearer`)."""
        client = self.server.client(Authorization=f"Bearer {self.token}")
        self._clients.append(client)
        return client

    def as_key(self, key: str | None = None) -> httpx.Client:
        """A client using the project's CI key (`X-API-Key`)."""
        client = self.server.client(**{"X-API-Key": key or self.key})
        self._clients.append(client)
        return client


def create_user(server: LiveServer, email: str, password: str = PASSWORD) -> str:
    """Users come from setup or invitations; tests make them directly through the service."""
    from redline.server.accounts import service
    from redline.server.db import WRITE

    with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
        return service.create_user(conn, email, password).id


def login(server: LiveServer, email: str, password: str = PASSWORD) -> str:
    response = httpx.post(f"{server.url}/api/auth/login",
                          json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["token"]


def make_tenant(server: LiveServer, name: str | None = None) -> Tenant:
    name = name or f"t{secrets.token_hex(4)}"
    email = f"{name}@example.com"
    user_id = create_user(server, email)
    token = login(server, email)
    user = server.client(Authorization=f"Bearer {token}")
    team = user.post("/api/teams", json={"name": f"{name} team"}).json()
    project = user.post("/api/projects", json={"name": f"{name} project",
                                               "teamId": team["id"]}).json()
    key = user.post("/api/api-keys", json={"projectId": project["id"], "name": "CI"}).json()
    user.close()
    return Tenant(server, user_id, email, token, team["id"], project["id"], key["key"],
                  key["id"])


def add_member(owner: Tenant, role: str, name: str | None = None) -> tuple[str, str]:
    """Invite a new user into the owner's team with a role; returns (user token, member id)."""
    name = name or f"m{secrets.token_hex(4)}"
    with owner.as_user() as client:
        invite = client.post("/api/team-members", json={"teamId": owner.team_id,
                                                        "email": f"{name}@example.com",
                                                        "role": role}).json()
    response = httpx.post(f"{owner.server.url}/api/invitations/{invite['id']}/accept",
                          json={"token": invite["acceptToken"], "password": PASSWORD})
    assert response.status_code == 201, response.text
    body = response.json()
    return body["token"], body["member"]["id"]
