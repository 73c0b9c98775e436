"""Alembic environment: runs migrations against the URL `redline.server.db.migrate` passes."""

from typing import Any

from alembic import context
from sqlalchemy import Connection

from redline.server.db import make_engine
from redline.server.tables import metadata

config = context.config


def _driver(connection: Connection) -> Any:
    """The driver's own connection (sqlite3's) under SQLAlchemy's."""
    driver = connection.connection.driver_connection
    assert driver is not None
    return driver


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None, "redline.server.db.migrate passes sqlalchemy.url"
    engine = make_engine(url)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by rebuilding it (copy, drop, rename: Alembic's batch
            # mode). While foreign keys are enforced, dropping a table deletes its rows first
            # and fires the ON DELETE CASCADE of every table that refers to it: rebuilding
            # `test_cases` would take every result with it. SQLite's own procedure: enforcement
            # off for the change (it can only be switched outside a transaction, hence on the
            # driver's connection before SQLAlchemy begins one), then a check of every key.
            _driver(connection).execute("PRAGMA foreign_keys=OFF")
        context.configure(connection=connection, target_metadata=metadata,
                          render_as_batch=sqlite, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise RuntimeError(f"a migration left rows whose references are broken "
                                       f"(table, rowid, parent, key): {broken[:10]}")
        if sqlite:
            _driver(connection).execute("PRAGMA foreign_keys=ON")
    engine.dispose()


run_migrations_online()
