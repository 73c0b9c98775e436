"""Starting the server process: migrations, then uvicorn (what `redline serve` calls)."""

from __future__ import annotations

import logging
import os
from pathlib import Path


class DatabaseUnreachable(Exception):
    """The database could not be reached at start-up (the CLI exits 10, UNAVAILABLE)."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"Cannot reach the database at {url}: {reason}")
        self.url = url  # its password hidden
        self.reason = reason


def _migrate(url: str) -> None:
    """Migrate, or DatabaseUnreachable when the database cannot be reached at all."""
    from sqlalchemy.exc import OperationalError

    from redline.server.db import is_unavailable, migrate

    try:
        migrate(url)
    except Exception as exc:
        if isinstance(exc, OperationalError) or is_unavailable(exc):
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise DatabaseUnreachable(_redact(url), reason) from exc
        raise


def serve(host: str = "127.0.0.1", port: int = 8000, data_dir: str | None = None,
          no_worker: bool = False, workers: int = 1, log_level: str | None = None,
          no_runner: bool = False) -> None:
    """Apply migrations, then serve the API (and, unless `no_worker`, one background worker
    thread) until stopped with Ctrl-C or SIGTERM."""
    import uvicorn

    from redline.server.app import create_app
    from redline.server.config import SERVED_URL_FILE, Settings

    if data_dir is not None:
        os.environ["REDLINE_DATA_DIR"] = str(Path(data_dir))
    settings = Settings()
    logging.basicConfig(level=(log_level or settings.log_level).upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    url = settings.resolved_database_url
    _migrate(url)
    settings.resolved_secret_key  # noqa: B018 - create the key file before serving
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    served = f"http://{local}:{port}"
    if not settings.public_url:
        # Links (artifacts, invitations, `redline demo`'s sign-in line) follow the port really
        # served; the data dir remembers it for the commands run beside the server.
        settings.public_url = served
        (settings.data_dir / SERVED_URL_FILE).write_text(served + "\n")
        logging.getLogger("redline.server").info(
            "Links use %s (the address served); set REDLINE_PUBLIC_URL if users reach the "
            "server at another address", served)
    app = create_app(settings)
    app.state.embedded_worker = not no_worker
    if not no_runner:  # the embedded runner reaches this server over HTTP, like any runner
        app.state.embedded_runner_url = served
    logging.getLogger("redline.server").info(
        "Redline serving on http://%s:%s (database: %s)", host, port, _redact(url))
    proxies = settings.forwarded_allow_ips
    uvicorn.run(app, host=host, port=port, log_level=(log_level or settings.log_level).lower(),
                proxy_headers=bool(proxies), forwarded_allow_ips=proxies or "",
                server_header=False, access_log=False,
                # Without it uvicorn waits for every request in flight, a hung client's too.
                timeout_graceful_shutdown=settings.shutdown_grace_seconds)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def worker(processes: int = 1, data_dir: str | None = None, log_level: str | None = None,
           poll_interval: float = 0.5) -> int:
    """Run outbox workers in the foreground (`redline worker`): `processes` separate
    processes, each one worker. SIGTERM or Ctrl-C: no new claims, the job in hand finishes;
    a second signal exits at once (the job's lease lets another worker take it)."""
    import multiprocessing
    import signal

    if data_dir is not None:
        os.environ["REDLINE_DATA_DIR"] = str(Path(data_dir))
    if processes > 1:
        children = [multiprocessing.Process(target=worker, args=(1, data_dir, log_level,
                                                                  poll_interval))
                    for _ in range(processes)]
        for child in children:
            child.start()

        def forward(signum, _frame):
            for child in children:
                if child.is_alive():
                    os.kill(child.pid, signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        for child in children:
            child.join()
        return 0

    from redline.server.config import Settings
    from redline.server.db import make_engine
    from redline.server.executions.tasks import ExecutionsLoop
    from redline.server.worker.runner import Worker
    from redline.server.worker.shards import ShardTimeoutLoop

    settings = Settings()
    logging.basicConfig(level=(log_level or settings.log_level).upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _migrate(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url, 2, 2)
    instance = Worker(engine, settings, poll_interval=poll_interval)
    signals = {"count": 0}

    def on_signal(signum, _frame):
        signals["count"] += 1
        if signals["count"] > 1:
            os._exit(128 + signum)  # the second signal: leave now, the lease recovers it
        instance._stopping.set()
        instance._wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    executions = ExecutionsLoop(engine).start()  # lost runners, queue timeouts, schedules
    shards = ShardTimeoutLoop(engine, settings.shard_timeout_seconds).start()
    instance.run_forever()
    shards.stop()
    executions.stop()
    engine.dispose()
    return 0
