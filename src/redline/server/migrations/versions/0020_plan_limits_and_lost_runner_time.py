"""plan limits and lost runner time

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07

Executed runs (issue 24): a plan's resource limits (`plans.limits`: cpuSeconds, memoryMb,
openFiles, outputBytes; NULL: the server's defaults), and the runner-seconds of a run's
attempts whose runner was lost (`runs.lost_runner_seconds`), which a team's usage counts.
Both nullable: existing rows mean "the defaults" and "none lost".
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('limits', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True))
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lost_runner_seconds', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('lost_runner_seconds')
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.drop_column('limits')
