"""case windows in half the bytes

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24

Every run rewrites the window of each case that ran (intelligence/scoring.py CaseWindow). Its
commit keys go from 8 bytes to 4 (the first half of the same hash) and its durations from 4
bytes to 2 (exact below 32.768 s, to the nearest 1.024 s above): a full window takes 341 bytes
instead of 641, and a run writes about half as many pages for them. Each window is converted
in place and its average duration recomputed from the durations as now kept; a window already
in the new layout (packed by 0006 during the same upgrade) is left alone.

The downgrade widens them again. Durations are read back from their codes. Commit keys are
the 8-byte hashes of the commits of the stored results the window holds (the case's newest
results that ran, from runs whose statistics are applied); where retention deleted such a
result, its key is left empty, and a re-run on that commit is no longer recognised.

The layouts are spelled out here, not imported: this migration must keep converting the
layout of its time whatever scoring.py becomes.
"""
import hashlib
import struct

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_HEADER = struct.Struct("<BQQQQQ")  # count, failed, passed, outage, evidence, duration sum
_WIDE_KEY, _WIDE_DURATION = 8, 4
_NARROW_KEY, _NARROW_DURATION = 4, 2
_EXACT = 0x8000  # narrow durations below it are milliseconds; above, steps of 1,024 ms
_BATCH = 2000


def _code(duration: int) -> int:
    if duration < _EXACT:
        return max(duration, 0)
    return _EXACT | min((duration + 512) >> 10, _EXACT - 1)


def _milliseconds(code: int) -> int:
    return code if code < _EXACT else (code & (_EXACT - 1)) << 10


def _entries(state: bytes, key_size: int, duration_size: int):
    """(header, keys, durations) of a window packed with these sizes, or None when its
    length says it is packed otherwise."""
    if len(state) < _HEADER.size:
        return None
    count = state[0]
    if len(state) != _HEADER.size + (key_size + duration_size) * count:
        return None
    split = _HEADER.size + key_size * count
    keys = [state[at:at + key_size] for at in range(_HEADER.size, split, key_size)]
    durations = [int.from_bytes(state[at:at + duration_size], "little")
                 for at in range(split, len(state), duration_size)]
    return _HEADER.unpack_from(state), keys, durations


def _pack(header, keys: list[bytes], durations: list[int], duration_size: int,
          total: int) -> bytes:
    return (_HEADER.pack(*header[:5], total) + b"".join(keys)
            + b"".join(d.to_bytes(duration_size, "little") for d in durations))


def _windows(conn):
    """Every window row, in batches by case id."""
    after = ""
    while True:
        batch = conn.execute(sa.text(
            "SELECT test_case_id, window_state FROM test_case_windows "
            "WHERE test_case_id > :after ORDER BY test_case_id LIMIT :limit"),
            {"after": after, "limit": _BATCH}).all()
        if not batch:
            return
        yield from batch
        after = batch[-1][0]


def _rewrite(conn, rows: list[dict]) -> list[dict]:
    """Write `rows` once a batch is full (or when `rows` are the last); answers the rows
    still to write."""
    if rows:
        conn.execute(sa.text(
            "UPDATE test_case_windows SET window_state = :state, avg_duration = :average "
            "WHERE test_case_id = :id"), rows)
    return []


def upgrade() -> None:
    _convert((_WIDE_KEY, _WIDE_DURATION), _narrowed)


def downgrade() -> None:
    _convert((_NARROW_KEY, _NARROW_DURATION), _widened)


def _convert(sizes: tuple[int, int], convert) -> None:
    """Rewrite every window packed with `sizes` (bytes a key, bytes a duration) as
    `convert(conn, case id, header, keys, durations)` packs it: (its state, its average)."""
    conn = op.get_bind()
    rows: list = []
    for case_id, state in _windows(conn):  # (the key is never rewritten: batches go on)
        if len(rows) >= _BATCH:
            rows = _rewrite(conn, rows)
        found = _entries(bytes(state), *sizes)
        if found is not None:
            state, average = convert(conn, case_id, *found)
            rows.append({"id": case_id, "state": state, "average": average})
    _rewrite(conn, rows)


def _narrowed(_conn, _case_id, header, keys: list[bytes], durations: list[int]):
    codes = [_code(d) for d in durations]
    total = sum(_milliseconds(c) for c in codes)
    return (_pack(header, [k[:_NARROW_KEY] for k in keys], codes, _NARROW_DURATION, total),
            int(total / len(codes)) if codes else 0)


def _widened(conn, case_id: str, header, keys: list[bytes], codes: list[int]):
    commits = conn.execute(sa.text(
        "SELECT runs.commit_sha FROM test_results r JOIN runs ON runs.id = r.run_id "
        "WHERE r.test_case_id = :id AND r.status != 'skipped' AND runs.stats_applied "
        "ORDER BY r.created_at DESC, r.id DESC LIMIT :count"),
        {"id": case_id, "count": len(keys)}).scalars().all()
    wide = [hashlib.blake2b(commit.encode(), digest_size=_WIDE_KEY).digest() if commit
            else bytes(_WIDE_KEY) for commit in commits]
    wide += [bytes(_WIDE_KEY)] * (len(keys) - len(wide))  # results retention deleted
    durations = [_milliseconds(c) for c in codes]
    total = sum(durations)
    return (_pack(header, wide, durations, _WIDE_DURATION, total),
            int(total / len(durations)) if durations else 0)
