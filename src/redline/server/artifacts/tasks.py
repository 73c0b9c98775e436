"""Background jobs of artifacts."""

from __future__ import annotations

from redline.server.artifacts import repository as repo
from redline.server.artifacts.blobs import blob_store, check_key
from redline.server.worker.registry import task


@task("artifacts.delete_blob")
def delete_blob(ctx, payload: dict) -> None:
    """Remove blobs (`storageKey`, or a list in `storageKeys`) that no artifact row points
    at. Queued when rows are deleted, and as the delayed guard of every upload (which the
    upload's own transaction cancels). Idempotent: a blob already gone is fine, and a blob
    whose row exists is kept."""
    from redline.server.worker.runner import Permanent

    keys = payload.get("storageKeys") or []
    if payload.get("storageKey"):
        keys = [payload["storageKey"], *keys]
    try:
        keys = [check_key(key) for key in keys]
    except (TypeError, ValueError) as exc:
        raise Permanent(f"bad payload: {exc}") from None
    if not keys:
        return
    with ctx.engine.connect() as conn:
        in_use = repo.keys_in_use(conn, keys)
    store = blob_store(ctx.settings)
    for key in keys:
        if key not in in_use:
            store.delete(key)
