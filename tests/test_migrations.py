"""Migrations and the model describe the same schema, on SQLite and on PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from redline.server.tables import metadata


def test_migrations_produce_the_model_schema(migrated_url):
    engine = create_engine(migrated_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    engine.dispose()
    assert differences == []


def test_migrating_twice_changes_nothing(migrated_url):
    from redline.server.db import migrate

    migrate(migrated_url)  # already at head: a no-op, not an error
