"""a case's run figures in the narrow table too

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24

Besides the window, the average duration and the last run time, a case's counts over its
window (runs, flaky runs, failed runs), its last status and the times of its last flaky and
last failed result move with most runs while a project is young (the count grows with each of
its first 50 runs) and whenever a failure enters or leaves the window: they move to
`test_case_windows` too. `test_cases` keeps the status and the score, which the reads filter
and sort by through its indexes, and which change only when a case's outcomes do. A case that
never ran has no row in `test_case_windows`: its counts read as 0. Existing values are copied
over; the downgrade copies them back.
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_COUNTS = ('total_runs', 'flaky_runs', 'failed_runs')
_MOVED = (*_COUNTS, 'last_status', 'last_flaky_at', 'last_failed_at')


def _columns() -> list[sa.Column]:
    return [*(sa.Column(name, sa.Integer(), nullable=False, server_default=sa.text('0'))
              for name in _COUNTS),
            sa.Column('last_status', sa.String(length=10), nullable=True),
            sa.Column('last_flaky_at', sa.DateTime(), nullable=True),
            sa.Column('last_failed_at', sa.DateTime(), nullable=True)]


def _copy(source: str, target: str, key: str, source_key: str) -> None:
    """Copy the moved columns from `source` to the rows of `target` that have one there."""
    for column in _MOVED:
        op.execute(f"UPDATE {target} SET {column} = (SELECT s.{column} FROM {source} s "
                   f"WHERE s.{source_key} = {target}.{key}) WHERE EXISTS (SELECT 1 FROM "
                   f"{source} s WHERE s.{source_key} = {target}.{key})")


def upgrade() -> None:
    # (SQLite adds columns in place; no rebuild of test_case_windows)
    for column in _columns():
        op.add_column('test_case_windows', column)
    _copy('test_cases', 'test_case_windows', 'test_case_id', 'id')
    with op.batch_alter_table('test_cases', schema=None) as batch_op:
        for name in _MOVED:
            batch_op.drop_column(name)


def downgrade() -> None:
    with op.batch_alter_table('test_cases', schema=None) as batch_op:
        for column in _columns():
            batch_op.add_column(column)
    _copy('test_case_windows', 'test_cases', 'id', 'test_case_id')
    with op.batch_alter_table('test_case_windows', schema=None) as batch_op:
        for name in _MOVED:
            batch_op.drop_column(name)
