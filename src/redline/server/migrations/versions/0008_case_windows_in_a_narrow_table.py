"""case windows in a narrow table of their own

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24

A run's completion rewrote the whole `test_cases` row (about 1 KB: titles, tags, quarantine
and the packed window) of every case that ran, though for most cases only the window, the
average duration and the last run time change from run to run. Those three move to
`test_case_windows`, a narrow row per case; `test_cases` is rewritten only for the cases whose
figures changed. Existing values are copied over; the downgrade copies them back.
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_MOVED = ('window_state', 'avg_duration', 'last_run_at')


def upgrade() -> None:
    op.create_table('test_case_windows',
    sa.Column('test_case_id', sa.String(length=40), nullable=False),
    sa.Column('window_state', sa.LargeBinary(), nullable=False),
    sa.Column('avg_duration', sa.BigInteger(), nullable=False),
    sa.Column('last_run_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['test_case_id'], ['test_cases.id'], name=op.f('fk_test_case_windows_test_case_id_test_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('test_case_id', name=op.f('pk_test_case_windows'))
    )
    if op.get_bind().dialect.name == "postgresql":
        # every row is rewritten by most runs: room on each page keeps the updates HOT (0007)
        op.execute("ALTER TABLE test_case_windows SET (fillfactor = 50)")
    op.execute("INSERT INTO test_case_windows (test_case_id, window_state, avg_duration, "
               "last_run_at) SELECT id, window_state, avg_duration, last_run_at FROM test_cases "
               "WHERE window_state IS NOT NULL")
    with op.batch_alter_table('test_cases', schema=None) as batch_op:
        for column in _MOVED:
            batch_op.drop_column(column)


def downgrade() -> None:
    with op.batch_alter_table('test_cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('window_state', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('avg_duration', sa.BigInteger(), nullable=False,
                                      server_default=sa.text('0')))
        batch_op.add_column(sa.Column('last_run_at', sa.DateTime(), nullable=True))
    for column in _MOVED:
        op.execute(f"UPDATE test_cases SET {column} = (SELECT w.{column} FROM test_case_windows w "
                   f"WHERE w.test_case_id = test_cases.id) WHERE EXISTS (SELECT 1 FROM "
                   f"test_case_windows w WHERE w.test_case_id = test_cases.id)")
    op.drop_table('test_case_windows')
