"""The unit of work commits a write only when its response will be sent as a success."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from redline.server.app import create_app
from redline.server.config import Settings
from redline.server.deps import Db
from redline.server.kit.clock import utcnow
from redline.server.schemas import Deleted
from redline.server.tables import idempotency_keys


def test_a_write_is_committed_only_when_its_response_passes_validation(migrated_url, tmp_path):
    app = create_app(Settings(database_url=migrated_url, data_dir=tmp_path,
                              secret_key="test-secret-key", cookie_secure=False))
    router = APIRouter()
    marker = f"probe-{uuid.uuid4().hex}"

    def write(db, key: str) -> None:
        now = utcnow()
        db.execute(insert(idempotency_keys).values(scope=marker, key=key, request_hash="-",
                                                   state="done", created_at=now, locked_at=now))

    @router.post("/api/probe-valid", response_model=Deleted)
    def valid(db: Db):
        write(db, "valid")
        return {"success": True, "message": "ok"}

    @router.post("/api/probe-invalid", response_model=Deleted)
    def invalid(db: Db):
        write(db, "invalid")
        return {"success": "not a boolean", "message": "ok"}  # a server bug: a 500

    app.include_router(router)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/api/probe-valid").status_code == 200
        failed = client.post("/api/probe-invalid")
        assert failed.status_code == 500
        assert failed.json()["error"]["code"] == "INTERNAL"
    with app.state.engine.connect() as conn:
        stored = conn.execute(select(idempotency_keys.c.key).where(
            idempotency_keys.c.scope == marker)).scalars().all()
        conn.execute(idempotency_keys.delete().where(idempotency_keys.c.scope == marker))
        conn.commit()
    app.state.engine.dispose()
    assert stored == ["valid"]
