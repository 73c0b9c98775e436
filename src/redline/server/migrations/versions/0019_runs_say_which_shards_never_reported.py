"""runs say which shards never reported

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07

A sharded run whose last shard never reports (its CI job crashed or was cancelled) is completed
by the worker's sweep after `REDLINE_SHARD_TIMEOUT_SECONDS` without news
(`runs.completion.complete_abandoned_shard_runs`); `missing_shards` keeps the shard numbers
that had not reported then (null for every other run).
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('missing_shards', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('missing_shards')
