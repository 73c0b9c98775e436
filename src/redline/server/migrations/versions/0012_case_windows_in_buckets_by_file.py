"""case windows in buckets by test file

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24

Every run moved the window of each case that ran, so it rewrote one `test_case_windows` row
per case: 5,000 single-row UPDATEs for a 5,000-test run, most of the cost of a run's
statistics. The windows now live in `window_buckets`, the cases of one test file side by side
in one value (at most 256 a bucket; a larger file takes further parts), and a run rewrites a
bucket per file it touched. A window's slot holds the window padded to its full 341 bytes,
then the time of the case's last result (microseconds since the epoch, 0: none).

`test_case_windows` keeps, beside the case's bucket and slot, only the figures readers filter
and sort by in SQL and that a pass after a pass leaves alone (flaky and failed runs, the last
status, the last flaky and failed times). The total runs and the average duration are read
from the window's header, the last run from its slot; they leave the row. The flakiness score
moves there from `test_cases` (with its index): it changes with every run for the cases with
evidence in their window (the evidence ages), and is written with their other figures in the
narrow row rather than in the wide `test_cases` row and its indexes. The narrow row also
takes its case's project, indexed with the flaky runs: the flakiness list reads a project's
cases with evidence from that index.

The downgrade puts each window and its figures back in its case's row.

The layouts are spelled out here, not imported: this migration must keep converting the
layout of its time whatever scoring.py becomes.
"""
import struct
from datetime import datetime, timedelta
from itertools import groupby

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

_HEADER = struct.Struct("<BQQQQQ")  # count, failed, passed, outage, evidence, duration sum
_FULL_WINDOW = _HEADER.size + (4 + 2) * 50  # 341
_SLOT = _FULL_WINDOW + 8
_LAST_RUN = struct.Struct("<q")
_BUCKET_SLOTS = 256
_EPOCH = datetime(1970, 1, 1)
_MOVED = (("window_state", sa.LargeBinary()), ("avg_duration", sa.BigInteger()),
          ("last_run_at", sa.DateTime()), ("total_runs", sa.Integer()))


def _micros(moment: datetime | None) -> int:
    return 0 if moment is None else (moment - _EPOCH) // timedelta(microseconds=1)


def upgrade() -> None:
    conn = op.get_bind()
    op.create_table('window_buckets',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('project_id', sa.String(length=40), nullable=False),
    sa.Column('file_path', sa.String(length=1000), nullable=False),
    sa.Column('part', sa.Integer(), nullable=False),
    sa.Column('slots', sa.Integer(), nullable=False),
    sa.Column('state', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_window_buckets_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_window_buckets')),
    sa.UniqueConstraint('project_id', 'file_path', 'part', name=op.f('uq_window_buckets_project_id_file_path_part'))
    )
    if conn.dialect.name == "postgresql":
        # A bucket is rewritten whole by the runs that touch its file, out of line (TOAST)
        # past 2 kB: compressed with lz4 (a run's commit key is in every window of a file),
        # it takes a third of the space and of the chunks (16.6 -> 5.7 kB for 50 windows),
        # and a run's read and write of 100 such buckets took 20 -> 14 ms here. pglz, the
        # default, costs more to compress; without lz4 (a server built without it, or before
        # PostgreSQL 14) the buckets are stored uncompressed.
        try:
            with conn.begin_nested():
                op.execute("ALTER TABLE window_buckets ALTER COLUMN state SET COMPRESSION lz4")
        except sa.exc.DBAPIError:
            op.execute("ALTER TABLE window_buckets ALTER COLUMN state SET STORAGE EXTERNAL")
    with op.batch_alter_table('test_case_windows', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bucket_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('slot', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('flakiness_score', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('project_id', sa.String(length=40), nullable=True))
    for column in ("flakiness_score", "project_id"):
        op.execute(f"UPDATE test_case_windows SET {column} = (SELECT c.{column} "
                   "FROM test_cases c WHERE c.id = test_case_windows.test_case_id)")

    windows = sa.text(
        "SELECT c.project_id, coalesce(c.file_path, '') AS file_path, w.test_case_id, "
        "w.window_state, w.last_run_at FROM test_case_windows w "
        "JOIN test_cases c ON c.id = w.test_case_id "
        "ORDER BY c.project_id, coalesce(c.file_path, ''), w.test_case_id"
    ).columns(last_run_at=sa.DateTime(), window_state=sa.LargeBinary())
    buckets = sa.table('window_buckets', sa.column('id'), sa.column('project_id'),
                       sa.column('file_path'), sa.column('part'), sa.column('slots'),
                       sa.column('state'))
    rows = conn.execute(windows).all()  # (a case's window and time: 350 bytes each)
    for (project_id, file_path), group in groupby(rows, key=lambda r: (r[0], r[1])):
        cases = list(group)
        for part, start in enumerate(range(0, len(cases), _BUCKET_SLOTS)):
            chunk = cases[start:start + _BUCKET_SLOTS]
            state = bytearray(_SLOT * len(chunk))
            for slot, case in enumerate(chunk):
                state[slot * _SLOT:slot * _SLOT + len(case.window_state)] = case.window_state
                _LAST_RUN.pack_into(state, slot * _SLOT + _FULL_WINDOW,
                                    _micros(case.last_run_at))
            bucket_id = conn.execute(buckets.insert().values(
                project_id=project_id, file_path=file_path, part=part, slots=len(chunk),
                state=bytes(state)).returning(buckets.c.id)).scalar_one()
            conn.execute(sa.text("UPDATE test_case_windows SET bucket_id = :bucket, "
                                 "slot = :slot WHERE test_case_id = :case"),
                         [{"bucket": bucket_id, "slot": slot, "case": case.test_case_id}
                          for slot, case in enumerate(chunk)])

    with op.batch_alter_table('test_case_windows', schema=None) as batch_op:
        batch_op.alter_column('bucket_id', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('slot', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('flakiness_score', existing_type=sa.Float(), nullable=False)
        batch_op.alter_column('project_id', existing_type=sa.String(length=40),
                              nullable=False)
        batch_op.create_index(batch_op.f('ix_test_case_windows_bucket_id'), ['bucket_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_test_case_windows_project_id_flaky_runs'),
                              ['project_id', 'flaky_runs'], unique=False)
        batch_op.create_foreign_key(
            batch_op.f('fk_test_case_windows_project_id_projects'), 'projects',
            ['project_id'], ['id'], ondelete='CASCADE')
        batch_op.create_foreign_key(
            batch_op.f('fk_test_case_windows_bucket_id_window_buckets'), 'window_buckets',
            ['bucket_id'], ['id'], ondelete='CASCADE')
        for column, _type in _MOVED:
            batch_op.drop_column(column)
    with op.batch_alter_table('test_cases', schema=None) as batch_op:
        batch_op.drop_index('ix_test_cases_project_id_flakiness_score')
        batch_op.drop_column('flakiness_score')


def downgrade() -> None:
    conn = op.get_bind()
    with op.batch_alter_table('test_cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('flakiness_score', sa.Float(), nullable=True))
    op.execute("UPDATE test_cases SET flakiness_score = coalesce((SELECT w.flakiness_score "
               "FROM test_case_windows w WHERE w.test_case_id = test_cases.id), 0)")
    with op.batch_alter_table('test_cases', schema=None) as batch_op:
        batch_op.alter_column('flakiness_score', existing_type=sa.Float(), nullable=False)
        batch_op.create_index('ix_test_cases_project_id_flakiness_score',
                              ['project_id', 'flakiness_score'], unique=False)
    with op.batch_alter_table('test_case_windows', schema=None) as batch_op:
        for column, column_type in _MOVED:
            batch_op.add_column(sa.Column(column, column_type, nullable=True))
    for bucket_id, state in conn.execute(sa.text(
            "SELECT id, state FROM window_buckets ORDER BY id")).all():
        state = bytes(state)
        cases = conn.execute(sa.text(
            "SELECT test_case_id, slot FROM test_case_windows WHERE bucket_id = :bucket"),
            {"bucket": bucket_id}).all()
        values = []
        for case_id, slot in cases:
            start = slot * _SLOT
            count, *_bits, duration_sum = _HEADER.unpack_from(state, start)
            micros = _LAST_RUN.unpack_from(state, start + _FULL_WINDOW)[0]
            values.append({
                "case": case_id, "count": count,
                "window": state[start:start + _HEADER.size + 6 * count],
                "average": int(duration_sum / count) if count else 0,
                "last_run": _EPOCH + timedelta(microseconds=micros) if micros else None})
        if values:
            conn.execute(sa.text(
                "UPDATE test_case_windows SET window_state = :window, avg_duration = :average, "
                "last_run_at = :last_run, total_runs = :count WHERE test_case_id = :case"
            ).bindparams(sa.bindparam("window", type_=sa.LargeBinary()),
                         sa.bindparam("last_run", type_=sa.DateTime())), values)
    with op.batch_alter_table('test_case_windows', schema=None) as batch_op:
        batch_op.alter_column('window_state', existing_type=sa.LargeBinary(), nullable=False)
        batch_op.alter_column('avg_duration', existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column('total_runs', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_constraint(batch_op.f('fk_test_case_windows_bucket_id_window_buckets'),
                                 type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_test_case_windows_bucket_id'))
        batch_op.drop_constraint(batch_op.f('fk_test_case_windows_project_id_projects'),
                                 type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_test_case_windows_project_id_flaky_runs'))
        batch_op.drop_column('project_id')
        batch_op.drop_column('flakiness_score')
        batch_op.drop_column('slot')
        batch_op.drop_column('bucket_id')
    op.drop_table('window_buckets')
