"""window buckets carry their format's version

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

Every bucket's state (`window_buckets.state`: the slots of its cases' windows) starts with
one byte, the version of the window format it is written in (intelligence/scoring.py
`WindowCodec.VERSION`, 1 for the layout of 0012-0015). A later format reads the versions
before it, and writes its own when it rewrites a bucket, instead of converting every bucket
in a migration. The states stored so far are the unversioned version 1: they get the byte
here, so that the code reads one layout (an empty state too: the byte alone).

The downgrade takes the byte off again (a state of another version than 1 is refused).
"""
from alembic import op
from sqlalchemy import text

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

VERSION_1 = b"\x01"
_BATCH = 200  # buckets per read (a bucket holds up to 256 slots of 349 bytes)


def _rewrite(change) -> None:
    """Rewrite each bucket's state with `change(state)`, in batches of ids."""
    conn = op.get_bind()
    last = 0
    while True:
        rows = conn.execute(text(
            "SELECT id, state FROM window_buckets WHERE id > :last ORDER BY id LIMIT :n"),
            {"last": last, "n": _BATCH}).all()
        if not rows:
            return
        conn.execute(text("UPDATE window_buckets SET state = :state WHERE id = :id"),
                     [{"id": bucket_id, "state": change(bytes(state or b""))}
                      for bucket_id, state in rows])
        last = rows[-1][0]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE window_buckets SET state = '\\x01'::bytea || state")
    else:  # (SQLite's || makes text of a blob: the bytes are prefixed here instead)
        _rewrite(lambda state: VERSION_1 + state)


def _unversioned(state: bytes) -> bytes:
    if state[:1] != VERSION_1:
        raise RuntimeError(f"a window bucket of format version {state[:1].hex()}: only "
                           "version 1 can go back to the unversioned form")
    return state[1:]


def downgrade() -> None:
    _rewrite(_unversioned)
