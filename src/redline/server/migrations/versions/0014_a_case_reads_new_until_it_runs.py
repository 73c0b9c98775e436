"""a case reads new until it runs

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-24

A case that never ran was stored `new`, and its first run rewrote its (wide) row to `stable`:
a project's first import of 100,000 tests rewrote 100,000 rows. A case is now created
`stable`, the status its first pass or failure gives, and reads as `new` while it has no
`test_case_windows` row (it never ran): the cases stored `new` become `stable`. (The column's
server default stays: every insert gives the status.)

The downgrade stores `new` again for the cases without a figures' row.
"""
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE test_cases SET status = 'stable' WHERE status = 'new'")


def downgrade() -> None:
    op.execute("UPDATE test_cases SET status = 'new' WHERE NOT EXISTS (SELECT 1 FROM "
               "test_case_windows w WHERE w.test_case_id = test_cases.id)")
