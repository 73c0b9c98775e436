"""windows whose writes were lost are rebuilt

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07

Before issue 21's fix, a run whose completion loaded more than 16 MiB of buckets (about
48,000 cases) wrote the windows of its first cases only: the others kept the window they had
before the run (or none, on a first import) while their figures moved on, and the next import
of the same suite failed on a figures' row that already existed. The cases of every run of at
least 40,000 results get their window, figures and status rebuilt from their stored results
where they differ from a recomputation (`stats.rebuild_windows`, with this code's window codec).
A database without such runs pays one query.

The downgrade has nothing to undo: the rebuilt statistics are the ones the results give.
"""
from alembic import op
from sqlalchemy import text

from redline.server.intelligence import stats

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

BIG_RUN = 40_000  # results: a smaller run's loaded buckets stayed under 16 MiB


def upgrade() -> None:
    conn = op.get_bind()
    big_runs = [row[0] for row in conn.execute(
        text("SELECT id FROM runs WHERE total_tests >= :n"), {"n": BIG_RUN})]
    cases: set[str] = set()
    for run_id in big_runs:
        cases.update(row[0] for row in conn.execute(
            text("SELECT DISTINCT test_case_id FROM test_results WHERE run_id = :run"),
            {"run": run_id}))
    if cases:
        stats.rebuild_windows(conn, sorted(cases))


def downgrade() -> None:
    pass
