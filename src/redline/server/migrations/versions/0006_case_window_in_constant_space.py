"""case statistics window in constant space

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

`test_cases.recent` (a JSON list of the newest 50 results) becomes `window_state`, the packed
form of intelligence/scoring.py's CaseWindow. Existing windows are converted in place: each
old list is replayed into the new form, so scores carry over without reading history.
"""
import json

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('test_cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('window_state', sa.LargeBinary(), nullable=True))
    _convert_windows()
    with op.batch_alter_table('test_cases', schema=None) as batch_op:
        batch_op.drop_column('recent')


def _convert_windows() -> None:
    from redline.server.intelligence import scoring

    conn = op.get_bind()
    cases = sa.table('test_cases', sa.column('id', sa.String), sa.column('recent', sa.Text),
                     sa.column('window_state', sa.LargeBinary))
    rows = conn.execute(sa.select(cases.c.id, sa.cast(cases.c.recent, sa.Text))
                        .where(cases.c.recent.is_not(None))).all()
    for case_id, recent in rows:
        entries = [scoring.Entry(status, commit, run_id, bool(outage), int(duration or 0))
                   for status, commit, run_id, _at, outage, duration in json.loads(recent)]
        window, _flags = scoring.replay(entries)
        conn.execute(cases.update().where(cases.c.id == case_id)
                     .values(window_state=window.encode()))


def downgrade() -> None:
    # The packed window keeps hashes, not commits and run ids: it cannot be turned back into
    # the old list. Downgrading empties the windows; `recent` refills as runs complete.
    with op.batch_alter_table('test_cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recent', sa.JSON().with_variant(
            postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True))
        batch_op.drop_column('window_state')
