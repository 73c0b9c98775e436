"""What an operator runs on the database (`redline db migrate|status|backup`): the schema's
revision, its size and row counts, and an online backup of a SQLite data directory.

The backup uses SQLite's online backup API (`sqlite3.Connection.backup`): a consistent copy
while the server keeps serving, without stopping it or copying a file that is being written.
"""

from __future__ import annotations

import os
import sqlite3
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from redline.server.config import Settings
from redline.server.db import migrate as migrate_url

#: backup names that hold the database alone; any other name is a .tar.gz of the data dir
DATABASE_ONLY_SUFFIXES = (".db", ".sqlite", ".sqlite3")
#: SQLite's own files next to the database, never copied as they are (the snapshot is)
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


class MaintenanceError(Exception):
    """A request the database cannot answer (e.g. a SQLite backup of PostgreSQL)."""


def settings_for(data_dir: str | None = None, database_url: str | None = None) -> Settings:
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = Path(data_dir)
    if database_url is not None:
        overrides["database_url"] = database_url
    return Settings(**overrides)


def _redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def migrate(settings: Settings) -> dict[str, Any]:
    """Upgrade the schema to the newest revision; answers the status before and after."""
    url = settings.resolved_database_url
    before = status(settings, counts=False)["revision"]
    migrate_url(url)
    after = status(settings, counts=False)
    return {**after, "previousRevision": before}


def status(settings: Settings, *, counts: bool = True) -> dict[str, Any]:
    """The database's revision (and the newest this version has), size and row counts."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    url = settings.resolved_database_url
    scripts = ScriptDirectory(str(Path(__file__).parent / "migrations"))
    head = scripts.get_current_head()
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            revision = MigrationContext.configure(conn).get_current_revision()
            if engine.dialect.name == "sqlite":
                size = _sqlite_size(make_url(url).database)
            else:
                size = conn.execute(text("SELECT pg_database_size(current_database())")
                                    ).scalar_one()
            rows: dict[str, int] = {}
            if counts:
                for table in sorted(inspect(conn).get_table_names()):
                    if table != "alembic_version":
                        rows[table] = conn.execute(
                            text(f'SELECT count(*) FROM "{table}"')).scalar_one()
    finally:
        engine.dispose()
    return {"database": _redacted(url), "dialect": engine.dialect.name,
            "revision": revision, "headRevision": head, "upToDate": revision == head,
            "sizeBytes": size, **({"rows": rows} if counts else {})}


def _sqlite_size(path: str | None) -> int:
    if not path:
        return 0
    return sum(os.path.getsize(path + suffix) for suffix in ("", "-wal")
               if os.path.exists(path + suffix))


def sqlite_path(settings: Settings) -> Path:
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise MaintenanceError("`redline db backup` copies a SQLite database; this server uses "
                               f"{url.get_backend_name()} (back it up with pg_dump)")
    return Path(url.database)


def default_backup_name() -> str:
    return f"redline-backup-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.tar.gz"


def backup(settings: Settings, destination: str | os.PathLike) -> dict[str, Any]:
    """Copy the SQLite database online to `destination`: the database alone for a name
    ending in .db/.sqlite, else a .tar.gz of the data directory (the database's snapshot,
    the secret key, local blobs). Written to a temporary name and renamed into place."""
    source = sqlite_path(settings)
    if not source.exists():
        raise MaintenanceError(f"No database at {source}")
    target = Path(destination)
    target.parent.mkdir(parents=True, exist_ok=True)
    database_only = target.name.endswith(DATABASE_ONLY_SUFFIXES)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".redline-backup-") as work:
        snapshot = Path(work) / source.name
        _online_copy(source, snapshot)
        partial = Path(work) / "partial"
        files = 1
        if database_only:
            snapshot.replace(partial)
        else:
            files = _archive(settings, source, snapshot, partial)
        partial.replace(target)
    return {"backup": str(target.resolve()), "database": str(source),
            "sizeBytes": target.stat().st_size, "files": files,
            "databaseOnly": database_only}


def _online_copy(source: Path, snapshot: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(snapshot)
    try:
        with dst:
            src.backup(dst, pages=1024)  # in steps: writers are not held off for long
    finally:
        dst.close()
        src.close()


def _archive(settings: Settings, source: Path, snapshot: Path, partial: Path) -> int:
    data_dir = settings.data_dir.resolve()
    skip = {source.resolve().with_name(source.name + suffix) for suffix in SQLITE_COMPANIONS}
    files = 1
    with tarfile.open(partial, "w:gz") as archive:
        archive.add(snapshot, arcname=_inside(source.resolve(), data_dir))
        for path in sorted(data_dir.rglob("*")):
            if any(part.startswith(".redline-backup-") for part in path.parts):
                continue  # this backup's own work files, when it is written in the data dir
            if path.is_file() and not path.is_symlink() and path not in skip:
                archive.add(path, arcname=str(path.relative_to(data_dir)))
                files += 1
    return files


def _inside(path: Path, data_dir: Path) -> str:
    """The database's name in the archive: its place in the data dir, else its name."""
    try:
        return str(path.relative_to(data_dir))
    except ValueError:
        return path.name
