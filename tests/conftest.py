"""Shared fixtures: a real Redline server on loopback, on a fresh real database.

The database is chosen by `REDLINE_TEST_DB` (`sqlite`, the default, or `postgres`); `make test`
runs the suite once for each. PostgreSQL is the one at `REDLINE_TEST_PG_URL` (default
127.0.0.1:5432, trust auth): each test session gets a database of its own. Without PostgreSQL,
its run is skipped with a message, except under `CI=true`, where it fails.
"""

from __future__ import annotations

import os

import pytest

from tests.support import live

TEST_DB = os.environ.get("REDLINE_TEST_DB", "sqlite")
PG_ADMIN_URL = os.environ.get("REDLINE_TEST_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def missing_service(message: str):
    """Skip on a developer's machine; fail in CI, where every real part must run."""
    if IN_CI:
        pytest.fail(f"{message} (CI=true: this must run here)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    if TEST_DB == "sqlite":
        path = tmp_path_factory.mktemp("db") / "redline.db"
        yield f"sqlite:///{path}"
        return
    url = live.create_pg_database(PG_ADMIN_URL)
    if url is None:
        missing_service(f"PostgreSQL is not reachable at {PG_ADMIN_URL}; start it or set "
                        "REDLINE_TEST_PG_URL")
    yield url
    live.drop_pg_database(PG_ADMIN_URL, url)


@pytest.fixture(scope="session")
def migrated_url(database_url) -> str:
    from redline.server.db import migrate

    migrate(database_url)
    return database_url


@pytest.fixture(scope="session")
def server(migrated_url, tmp_path_factory) -> live.LiveServer:
    """One server for the session; rate limits off so tests do not trip over each other
    (the rate-limit tests start their own)."""
    data_dir = tmp_path_factory.mktemp("data")
    with live.LiveServer.start(migrated_url, data_dir, rate_limit_enabled=False) as srv:
        yield srv


@pytest.fixture
def start_server(migrated_url, tmp_path):
    """Start an extra server with its own settings (e.g. rate limits on, Redis)."""
    started = []

    def start(**settings):
        srv = live.LiveServer.start(migrated_url, tmp_path / f"data{len(started)}", **settings)
        srv.__enter__()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.__exit__(None, None, None)


@pytest.fixture
def tenant(server) -> live.Tenant:
    """A fresh user who owns a team with a project and a CI key."""
    return live.make_tenant(server)


@pytest.fixture
def other_tenant(server) -> live.Tenant:
    return live.make_tenant(server)
