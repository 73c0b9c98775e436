"""window places on the case

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24

Where a case's window lives (its bucket and slot) moves from `test_case_windows` to the case's
own row. An import looks up its cases by identity anyway; with the place in that row, a run
completed by the import that made it takes its results and their places from the import,
without reading them back joined to their windows: on SQLite that read was a third of what a
run's statistics cost. A case gets its slot when it is created, so its bucket's state may end
before the slot (an empty window); the cases that never ran get theirs here, in their file's
last bucket while it has room, else in new ones (as `stats.place_cases` does).

The downgrade puts each place back beside the figures, and pads every bucket to its slots.
"""
from itertools import groupby

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

_SLOT = 349  # bytes a slot takes (0012)
_BUCKET_SLOTS = 256


def _place_cases_that_never_ran(conn) -> None:
    unplaced = conn.execute(sa.text(
        "SELECT project_id, coalesce(file_path, '') AS file_path, id FROM test_cases "
        "WHERE bucket_id IS NULL ORDER BY project_id, coalesce(file_path, ''), id")).all()
    for (project_id, file_path), cases in groupby(unplaced, key=lambda r: (r[0], r[1])):
        last = conn.execute(sa.text(
            "SELECT id, part, slots FROM window_buckets WHERE project_id = :project "
            "AND file_path = :file ORDER BY part DESC LIMIT 1"),
            {"project": project_id, "file": file_path}).first()
        bucket_id, part, slots = last if last is not None else (None, -1, _BUCKET_SLOTS)
        places, grown = [], {}
        for case in cases:
            if slots >= _BUCKET_SLOTS:
                part, slots = part + 1, 0
                bucket_id = conn.execute(sa.text(
                    "INSERT INTO window_buckets (project_id, file_path, part, slots, state) "
                    "VALUES (:project, :file, :part, 0, :state) RETURNING id").bindparams(
                        sa.bindparam("state", type_=sa.LargeBinary())),
                    {"project": project_id, "file": file_path, "part": part,
                     "state": b""}).scalar_one()
            places.append({"case": case.id, "bucket": bucket_id, "slot": slots})
            slots += 1
            grown[bucket_id] = slots
        conn.execute(sa.text("UPDATE window_buckets SET slots = :slots WHERE id = :id"),
                     [{"slots": count, "id": bucket} for bucket, count in grown.items()])
        conn.execute(sa.text("UPDATE test_cases SET bucket_id = :bucket, slot = :slot "
                             "WHERE id = :case"), places)


def upgrade() -> None:
    conn = op.get_bind()
    with op.batch_alter_table('test_cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bucket_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('slot', sa.Integer(), nullable=True))
    for column in ("bucket_id", "slot"):
        op.execute(f"UPDATE test_cases SET {column} = (SELECT w.{column} "
                   "FROM test_case_windows w WHERE w.test_case_id = test_cases.id)")
    _place_cases_that_never_ran(conn)
    with op.batch_alter_table('test_cases', schema=None) as batch_op:
        batch_op.alter_column('bucket_id', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('slot', existing_type=sa.Integer(), nullable=False)
        batch_op.create_index(batch_op.f('ix_test_cases_bucket_id'), ['bucket_id'],
                              unique=False)
    with op.batch_alter_table('test_case_windows', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_test_case_windows_bucket_id_window_buckets'),
                                 type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_test_case_windows_bucket_id'))
        batch_op.drop_column('slot')
        batch_op.drop_column('bucket_id')


def downgrade() -> None:
    conn = op.get_bind()
    with op.batch_alter_table('test_case_windows', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bucket_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('slot', sa.Integer(), nullable=True))
    for column in ("bucket_id", "slot"):
        op.execute(f"UPDATE test_case_windows SET {column} = (SELECT c.{column} "
                   "FROM test_cases c WHERE c.id = test_case_windows.test_case_id)")
    # 0012 keeps every bucket's state as long as its slots
    short = conn.execute(sa.text(
        "SELECT id, slots, state FROM window_buckets WHERE length(state) < slots * :slot"),
        {"slot": _SLOT}).all()
    if short:
        conn.execute(sa.text("UPDATE window_buckets SET state = :state WHERE id = :id")
                     .bindparams(sa.bindparam("state", type_=sa.LargeBinary())),
                     [{"id": bucket_id,
                       "state": bytes(state) + bytes(slots * _SLOT - len(state))}
                      for bucket_id, slots, state in short])
    with op.batch_alter_table('test_case_windows', schema=None) as batch_op:
        batch_op.alter_column('bucket_id', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('slot', existing_type=sa.Integer(), nullable=False)
        batch_op.create_index(batch_op.f('ix_test_case_windows_bucket_id'), ['bucket_id'],
                              unique=False)
        batch_op.create_foreign_key(
            batch_op.f('fk_test_case_windows_bucket_id_window_buckets'), 'window_buckets',
            ['bucket_id'], ['id'], ondelete='CASCADE')
    with op.batch_alter_table('test_cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_test_cases_bucket_id'))
        batch_op.drop_column('slot')
        batch_op.drop_column('bucket_id')
