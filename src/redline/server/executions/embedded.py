"""The runner embedded in `redline serve` (unless `--no-runner`): a `redline.runner.Runner`
thread that reaches this server over HTTP with a runner token of its own, made at start-up
and revoked at shutdown, like any other runner. It refuses to run a plan without the
bubblewrap sandbox unless `REDLINE_RUNNER_ALLOW_UNSANDBOXED`, and its sandbox hides the
server's data directory (its secret key, its SQLite database)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from redline.runner.agent import Runner, RunnerConfig
from redline.runner.client import RunnerClient
from redline.server.db import WRITE
from redline.server.executions import service


def source_paths(settings) -> list[Path]:
    return [Path(p) for p in (settings.runner_source_paths or "").split(os.pathsep)
            if p.strip()]


def hidden_paths(settings) -> list[Path]:
    """What a run must not see: the data directory, and the SQLite file if it is elsewhere."""
    hidden = [Path(settings.data_dir)]
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        hidden.append(Path(url.database).parent)
    return hidden


class EmbeddedRunner:
    def __init__(self, engine: Engine, settings, url: str):
        self.engine = engine
        name = f"embedded:{socket.gethostname()}:{os.getpid()}"
        with engine.connect().execution_options(**WRITE) as conn, conn.begin():
            token = service.instance_runner_token(conn, name)
        self.token_id = token["id"]
        config = RunnerConfig(source_paths=source_paths(settings),
                              allow_unsandboxed=settings.runner_allow_unsandboxed,
                              require_sandbox=True, hide_paths=hidden_paths(settings))
        self.runner = Runner(RunnerClient(url, token["token"]), config, name=name)

    def start(self) -> EmbeddedRunner:
        self.runner.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        self.runner.stop(timeout)
        self.runner.client.close()
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            service.revoke_instance_token(conn, self.token_id)
