"""Fixtures of the client tests: the CLI as a subprocess, stub and fault peers, special servers.

Everything talks to real HTTP on loopback: the session's Redline server (`server`, `tenant`
from tests/conftest.py), servers started with other settings, and the peers in `peers.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.clients.peers import FaultProxy, StubServer
from tests.support import live

REPO = Path(__file__).resolve().parents[2]
REDLINE = Path(sys.executable).with_name("redline")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self):
        return json.loads(self.stdout)

    @property
    def envelope(self) -> dict:
        """The one JSON line of a failure on stderr."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, self.stderr
        return json.loads(lines[0])


class Cli:
    """Runs `redline` as a subprocess with a private config dir and no ambient credentials."""

    def __init__(self, config_dir: Path, url: str | None = None):
        self.config_dir = config_dir
        self.url = url

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDLINE_")}
        env["REDLINE_CONFIG_DIR"] = str(self.config_dir)
        env.pop("GITHUB_SHA", None)
        env.pop("GITHUB_REF_NAME", None)
        if self.url:
            env["REDLINE_URL"] = self.url
        env.update(extra)
        return env

    def command(self) -> list[str]:
        return [str(REDLINE)] if REDLINE.exists() else [sys.executable, "-m",
                                                        "redline.cli.main"]

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60,
                 **env: str) -> Result:
        proc = subprocess.run([*self.command(), *args], capture_output=True, text=True,
                              check=False, input=input if input is not None else "",
                              timeout=timeout, env=self.env(**env), cwd=REPO)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen([*self.command(), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                env=self.env(**env), cwd=REPO)


@pytest.fixture
def cli(server, tmp_path) -> Cli:
    """The CLI pointed at the session's server."""
    return Cli(tmp_path / "config", server.url)


@pytest.fixture
def stub():
    with StubServer() as peer:
        yield peer


@pytest.fixture
def proxy(server):
    """A fault proxy in front of the session's server."""
    with FaultProxy(server.url) as peer:
        yield peer


@pytest.fixture
def fresh_server(tmp_path_factory):
    """A server on a fresh, empty database (for first-run setup)."""
    from redline.server.db import migrate
    from tests.conftest import PG_ADMIN_URL, TEST_DB, missing_service

    data = tmp_path_factory.mktemp("fresh")
    if TEST_DB == "postgres":
        url = live.create_pg_database(PG_ADMIN_URL)
        if url is None:
            missing_service("PostgreSQL is not reachable")
    else:
        url = f"sqlite:///{data / 'fresh.db'}"
    migrate(url)
    with live.LiveServer.start(url, data / "data", rate_limit_enabled=False) as srv:
        yield srv
    if TEST_DB == "postgres":
        live.drop_pg_database(PG_ADMIN_URL, url)


@pytest.fixture
def broken_server(tmp_path):
    """A server whose schema lost a table: a real fault, answered INTERNAL."""
    from redline.server.db import migrate

    url = f"sqlite:///{tmp_path / 'broken.db'}"
    migrate(url)
    with live.LiveServer.start(url, tmp_path / "broken-data", rate_limit_enabled=False) as srv:
        tenant = live.make_tenant(srv)
        with srv.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE team_members")
        yield srv, tenant


@pytest.fixture
def dead_database_server(tmp_path):
    """A server whose database cannot be reached: UNAVAILABLE."""
    srv = live.LiveServer.start("postgresql+psycopg://postgres@127.0.0.1:9/none",
                                tmp_path / "dead-data")
    with srv:
        yield srv


@pytest.fixture
def closed_url() -> str:
    """A loopback URL nobody listens on."""
    return f"http://127.0.0.1:{live.free_port()}"


def run_in_terminal(cli: Cli, *args: str, answers: str = "", timeout: float = 30,
                    **env: str) -> tuple[int, str]:
    """Run the CLI with stdin, stdout and stderr on a pseudo-terminal; type `answers`."""
    import os
    import pty
    import select
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen([*cli.command(), *args], stdin=slave, stdout=slave, stderr=slave,
                            env={**cli.env(**env), "COLUMNS": "200"}, cwd=REPO,
                            close_fds=True)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    typed = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if answers and not typed and b"?" in output:
                os.write(master, answers.encode())
                typed = True
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    os.close(master)
    return proc.returncode, output.decode(errors="replace").replace("\r\n", "\n")


@dataclass
class Triage:
    """A project with real history: runs imported from reports, completed, with statistics.

    - `pw`: the Playwright JSON fixture (branch e2e): nested steps, suites, retries, flaky
    - `reruns`: pytest-rerunfailures' JUnit fixture (branch unit): flaky results
    - `base`, `head`, `rerun` on branch main: test_a passes, fails, then passes again on the
      same commit as `head` (same-commit flaky evidence); test_b fails then is fixed; test_d
      is new in `head`.
    """

    tenant: live.Tenant
    runs: dict
    folder: Path

    @property
    def server_url(self) -> str:
        return self.tenant.server.url

    def env(self) -> dict[str, str]:
        return {"REDLINE_URL": self.tenant.server.url, "REDLINE_API_KEY": self.tenant.key}


MAIN_RUNS = [("base", "m1", {"test_a": "passed", "test_b": "failed", "test_c": "passed"}),
             ("head", "m2", {"test_a": "failed", "test_b": "passed", "test_c": "passed",
                             "test_d": "passed"}),
             ("rerun", "m2", {"test_a": "passed", "test_b": "passed", "test_c": "passed",
                              "test_d": "skipped"})]


@pytest.fixture(scope="session")
def triage(server, tmp_path_factory) -> Triage:
    """One populated project for the read-only tests of the SDK, CLI and MCP server."""
    from redline.sdk import Client
    from tests.clients import reports

    tenant = live.make_tenant(server)
    folder = tmp_path_factory.mktemp("triage")
    runs = {}
    with Client(server.url, api_key=tenant.key, from_env=False) as ci:
        runs["pw"] = ci.runs.import_report(reports.PLAYWRIGHT_JSON, branch="e2e",
                                           commit_sha="pw1")
        runs["reruns"] = ci.runs.import_report(reports.PYTEST_RERUNS, branch="unit",
                                               commit_sha="u1")
        for name, sha, outcomes in MAIN_RUNS:
            path = folder / f"{name}.xml"
            path.write_text(reports.junit(outcomes))
            runs[name] = ci.runs.import_report(path, branch="main", commit_sha=sha)
    return Triage(tenant, runs, folder)
