"""Starting the server process: migrations, then uvicorn (what `redline serve` calls)."""

from __future__ import annotations

import logging
import os
from pathlib import Path


def serve(host: str = "127.0.0.1", port: int = 8000, data_dir: str | None = None,
          no_worker: bool = False, workers: int = 1, log_level: str | None = None) -> None:
    """Apply migrations, then serve the API (and, unless `no_worker`, one background worker
    thread) until stopped with Ctrl-C or SIGTERM."""
    import uvicorn

    from redline.server.app import create_app
    from redline.server.config import Settings
    from redline.server.db import migrate

    if data_dir is not None:
        os.environ["REDLINE_DATA_DIR"] = str(Path(data_dir))
    settings = Settings()
    logging.basicConfig(level=(log_level or settings.log_level).upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    url = settings.resolved_database_url
    migrate(url)
    settings.resolved_secret_key  # noqa: B018 - create the key file before serving
    app = create_app(settings)
    app.state.embedded_worker = not no_worker
    logging.getLogger("redline.server").info(
        "Redline serving on http://%s:%s (database: %s)", host, port, _redact(url))
    proxies = settings.forwarded_allow_ips
    uvicorn.run(app, host=host, port=port, log_level=(log_level or settings.log_level).lower(),
                proxy_headers=bool(proxies), forwarded_allow_ips=proxies or "",
                server_header=False, access_log=False)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
