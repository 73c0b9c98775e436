"""figures rows without a check of their case

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24

`test_case_windows.test_case_id` no longer references `test_cases` with a foreign key. A
figures' row is inserted only by `stats.apply_run`, for a case of the run it applies, in the
transaction that stored that case's result; cases are deleted only with their project, and the
rows' own `project_id` key still removes them then. The check cost PostgreSQL a lookup of the
case for each row inserted (5 µs a row here): half a second of a first import of 100,000 tests.

The downgrade puts the foreign key back (rows whose case is gone are removed first).
"""
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('test_case_windows', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_test_case_windows_test_case_id_test_cases'),
                                 type_='foreignkey')


def downgrade() -> None:
    op.execute("DELETE FROM test_case_windows WHERE NOT EXISTS (SELECT 1 FROM test_cases c "
               "WHERE c.id = test_case_windows.test_case_id)")
    with op.batch_alter_table('test_case_windows', schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f('fk_test_case_windows_test_case_id_test_cases'),
                                    'test_cases', ['test_case_id'], ['id'], ondelete='CASCADE')
