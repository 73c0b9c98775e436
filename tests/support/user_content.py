"""A Redline server with its user-content listener, as `redline serve` runs them: the API and
dashboard on one loopback port, the user-content app (artifacts/user_content.py) on another,
sharing the settings and the engine. `server.user_content` is the second listener."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import live


@contextmanager
def server_with_user_content(database_url: str, data_dir: Path,
                             **settings) -> Iterator[live.LiveServer]:
    from redline.server.artifacts.user_content import create_user_content_app

    port = live.free_port()
    settings = {"rate_limit_enabled": False,
                "user_content_url": f"http://127.0.0.1:{port}", **settings}
    with live.LiveServer.start(database_url, data_dir, **settings) as server:
        content_app = create_user_content_app(server.app.state.settings, server.engine)
        with live.LiveServer(content_app, port) as content:
            server.user_content = content  # type: ignore[attr-defined]
            yield server
