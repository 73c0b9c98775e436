"""Starting the server process: migrations, then uvicorn (what `redline serve` calls)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path
from typing import Any


class DatabaseUnreachable(Exception):
    """The database could not be reached at start-up (the CLI exits 10, UNAVAILABLE)."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"Cannot reach the database at {url}: {reason}")
        self.url = url  # its password hidden
        self.reason = reason


class UserContentProblem(Exception):
    """The user-content listener cannot be set up as configured (the CLI exits 5)."""


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
          no_runner: bool = False, user_content_port: int | None = None) -> None:
    """Apply migrations, then serve the API (and, unless `no_worker`, one background worker
    thread) until stopped with Ctrl-C or SIGTERM; user content (HTML reports, the trace
    viewer) on a second listener, `user_content_port` (default: the port + 1)."""
    import uvicorn

    from redline.server.app import create_app
    from redline.server.artifacts.user_content import create_user_content_app
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
    content_port = (user_content_port or settings.user_content_port
                    or (port + 1 if port < 65535 else port - 1))
    content_socket = _user_content_socket(settings, host, local, port, content_port)
    app = create_app(settings)
    content_app = create_user_content_app(settings, app.state.engine)
    app.state.embedded_worker = not no_worker
    if not no_runner:  # the embedded runner reaches this server over HTTP, like any runner
        app.state.embedded_runner_url = served
    logging.getLogger("redline.server").info(
        "Redline serving on http://%s:%s (database: %s)", host, port, _redact(url))
    proxies = settings.forwarded_allow_ips
    logging.getLogger("redline.server").info(
        "User content (HTML reports, trace viewer) served on http://%s:%s, linked as %s",
        host, content_port, settings.resolved_user_content_url)
    common: dict[str, Any] = {"log_level": (log_level or settings.log_level).lower(),
                              "proxy_headers": bool(proxies),
                              "forwarded_allow_ips": proxies or "",
                              "server_header": False, "access_log": False,
                              # Without it uvicorn waits for every request in flight, a hung
                              # client's too.
                              "timeout_graceful_shutdown": settings.shutdown_grace_seconds}
    main = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **common))
    content = _user_content_server(uvicorn.Config(content_app, lifespan="off", **common))
    try:
        with asyncio.Runner(loop_factory=main.config.get_loop_factory()) as runner:
            runner.run(_serve_both(main, content, content_socket))
    except KeyboardInterrupt:
        pass  # stopped with Ctrl-C, as uvicorn.run does
    finally:
        content_socket.close()
    if not main.started:
        raise SystemExit(3)  # uvicorn's start-up failure status (it logged why)


def _user_content_socket(settings, host: str, local: str, port: int, content_port: int):
    """Check the user-content origin against the dashboard's and bind its listener's socket
    (before anything starts, so a taken port is a clear error)."""
    from urllib.parse import urlsplit

    from redline.server.artifacts.user_content import origin_of

    if content_port == port:
        raise UserContentProblem(f"The user-content port ({content_port}) must differ from "
                                 "the served port: set --user-content-port or "
                                 "REDLINE_USER_CONTENT_PORT to a free port")
    if not settings.user_content_url:
        # The public URL's host name, at the second listener's port: right on one machine
        # and on a LAN; behind a proxy, REDLINE_USER_CONTENT_URL must say where it is.
        public = settings.resolved_public_url
        host_name = urlsplit(public).hostname or local
        settings.user_content_url = f"http://{host_name}:{content_port}"
        if public != f"http://{local}:{port}":
            logging.getLogger("redline.server").warning(
                "REDLINE_PUBLIC_URL is set but REDLINE_USER_CONTENT_URL is not: reports and "
                "the trace viewer are linked at %s; set REDLINE_USER_CONTENT_URL to where "
                "users reach the user-content listener (port %s)", settings.user_content_url,
                content_port)
    if origin_of(settings.resolved_user_content_url) == origin_of(
            settings.resolved_public_url):
        raise UserContentProblem(
            f"REDLINE_USER_CONTENT_URL ({settings.user_content_url}) is the dashboard's own "
            "origin: reports there could act as the signed-in user. Give user content "
            "another host name (or at least another port)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, content_port))
    except OSError as exc:
        sock.close()
        raise UserContentProblem(
            f"Cannot listen on {host}:{content_port} for user content ({exc.strerror}): "
            "choose a free port with --user-content-port or REDLINE_USER_CONTENT_PORT") \
            from None
    sock.set_inheritable(True)
    return sock


def _user_content_server(config):
    """The second listener's uvicorn server. The main server owns SIGINT/SIGTERM (and
    re-raises them once stopped); this one only stops with it."""
    import uvicorn

    class UserContentServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            yield

    return UserContentServer(config)


async def _serve_both(main, content, content_socket) -> None:
    """Serve the API and the user content in one event loop until the main server stops."""
    content_task = asyncio.create_task(content.serve(sockets=[content_socket]))

    async def stop_with_main():
        while not main.should_exit and not content_task.done():
            await asyncio.sleep(0.1)
        content.should_exit = True

    follower = asyncio.create_task(stop_with_main())
    try:
        await main.serve()
    finally:
        content.should_exit = True
        await asyncio.gather(content_task, follower, return_exceptions=True)


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
