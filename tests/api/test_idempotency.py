"""`Idempotency-Key` on writes (DESIGN.md section 4, RELIABILITY.md section 1).

The same key with the same request replays the first response; with another request it is
IDEMPOTENCY_BODY_MISMATCH; while the first is still running it is CONFLICT. Keys are scoped to
the credential and the route. Failed requests are not stored, so a corrected retry runs.
"""

from __future__ import annotations

import secrets
import threading
import time
from datetime import timedelta

import httpx
from sqlalchemy import func, select, update

from redline.server import idempotency
from redline.server.db import WRITE
from redline.server.kit.clock import utcnow
from redline.server.tables import idempotency_keys, teams
from redline.server.teams import service as teams_service
from tests.support import live


def count_teams(server, name: str) -> int:
    with server.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(teams)
                            .where(teams.c.name == name)).scalar_one()


def test_same_key_same_body_replays_byte_for_byte(server, tenant):
    with tenant.as_user() as client:
        first = client.post("/api/teams", json={"name": "idem-1"},
                            headers={"Idempotency-Key": "create-idem-1"})
        second = client.post("/api/teams", json={"name": "idem-1"},
                             headers={"Idempotency-Key": "create-idem-1"})
    assert first.status_code == second.status_code == 201
    assert first.content == second.content
    assert second.headers["idempotent-replayed"] == "true"
    assert count_teams(server, "idem-1") == 1


def test_same_key_other_body_is_a_mismatch_and_creates_nothing(server, tenant):
    with tenant.as_user() as client:
        client.post("/api/teams", json={"name": "idem-2"}, headers={"Idempotency-Key": "k2"})
        response = client.post("/api/teams", json={"name": "idem-2b"},
                               headers={"Idempotency-Key": "k2"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "IDEMPOTENCY_BODY_MISMATCH"
    assert count_teams(server, "idem-2b") == 0


def test_keys_are_scoped_to_the_credential_and_the_route(server, tenant, other_tenant):
    with tenant.as_user() as a, other_tenant.as_user() as b:
        a.post("/api/teams", json={"name": "idem-3"}, headers={"Idempotency-Key": "shared"})
        replay_for_b = b.post("/api/teams", json={"name": "idem-3"},
                              headers={"Idempotency-Key": "shared"})
        other_route = a.post("/api/projects", json={"name": "p", "teamId": tenant.team_id},
                             headers={"Idempotency-Key": "shared"})
    assert replay_for_b.status_code == 201 and "idempotent-replayed" not in replay_for_b.headers
    assert count_teams(server, "idem-3") == 2  # B got its own team, not A's response
    assert other_route.status_code == 201


def test_concurrent_requests_with_one_key_create_one_resource(server, tenant):
    statuses = []
    barrier = threading.Barrier(20)

    def send():
        with httpx.Client(base_url=server.url, timeout=30,
                          headers={"Authorization": f"Bearer {tenant.token}"}) as client:
            barrier.wait()
            response = client.post("/api/teams", json={"name": "idem-race"},
                                   headers={"Idempotency-Key": "race"})
            statuses.append((response.status_code, response.headers.get("idempotent-replayed"),
                             response.json().get("error", {}).get("code")))

    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert count_teams(server, "idem-race") == 1
    fresh = [s for s in statuses if s[0] == 201 and s[1] is None]
    assert len(fresh) == 1
    assert all(s[0] == 201 or s[2] == "CONFLICT" for s in statuses), statuses
    assert not [s for s in statuses if s[0] >= 500]


def test_a_failed_request_is_not_stored_so_a_corrected_retry_runs(server, tenant):
    with tenant.as_user() as client:
        bad = client.post("/api/projects", json={"name": "", "teamId": tenant.team_id},
                          headers={"Idempotency-Key": "fix-me"})
        assert bad.status_code == 400
        # Same key, corrected body: not a mismatch, because the failure was not kept.
        good = client.post("/api/projects", json={"name": "fixed", "teamId": tenant.team_id},
                           headers={"Idempotency-Key": "fix-me"})
    assert good.status_code == 201


def test_a_server_error_releases_the_key_and_keeps_no_effect(tmp_path):
    """Policy for 5xx: the transaction is rolled back and the key released, so a retry runs
    the request again with nothing doubled."""
    from redline.server.db import migrate

    url = f"sqlite:///{tmp_path / 'broken.db'}"
    migrate(url)
    with live.LiveServer.start(url, tmp_path / "data") as srv:
        tenant = live.make_tenant(srv)
        with srv.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE team_members RENAME TO team_members_gone")
        with tenant.as_user() as client:
            response = client.post("/api/teams", json={"name": "half"},
                                   headers={"Idempotency-Key": "boom"})
        assert response.status_code == 500
        assert count_teams(srv, "half") == 0  # the team insert was rolled back
        with srv.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(idempotency_keys)
                                .where(idempotency_keys.c.key == "boom")).scalar_one() == 0


def test_a_claim_left_by_a_dead_process_is_taken_over(server, tenant):
    """A request whose process died never committed its effect (record and effect share one
    transaction), so after the lease its key runs again, once."""
    with tenant.as_user() as client:
        client.post("/api/teams", json={"name": "idem-dead"},
                    headers={"Idempotency-Key": "dead"})
        with server.engine.begin() as conn:  # make it look like a crash mid-request
            conn.execute(update(idempotency_keys).where(idempotency_keys.c.key == "dead")
                         .values(state="running", locked_at=utcnow() - timedelta(minutes=2)))
            conn.execute(teams.delete().where(teams.c.name == "idem-dead"))
        retry = client.post("/api/teams", json={"name": "idem-dead"},
                            headers={"Idempotency-Key": "dead"})
    assert retry.status_code == 201 and "idempotent-replayed" not in retry.headers
    assert count_teams(server, "idem-dead") == 1


def test_a_claim_still_running_answers_conflict(server, tenant):
    with tenant.as_user() as client:
        client.post("/api/teams", json={"name": "idem-busy"},
                    headers={"Idempotency-Key": "busy"})
        with server.engine.begin() as conn:
            conn.execute(update(idempotency_keys).where(idempotency_keys.c.key == "busy")
                         .values(state="running", locked_at=utcnow()))
        response = client.post("/api/teams", json={"name": "idem-busy"},
                               headers={"Idempotency-Key": "busy"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "CONFLICT"
    assert response.headers["retry-after"] == "1"


def test_after_24_hours_the_key_starts_a_new_request(server, tenant):
    with tenant.as_user() as client:
        client.post("/api/teams", json={"name": "idem-old"}, headers={"Idempotency-Key": "old"})
        with server.engine.begin() as conn:
            conn.execute(update(idempotency_keys).where(idempotency_keys.c.key == "old")
                         .values(created_at=utcnow() - timedelta(hours=25)))
        again = client.post("/api/teams", json={"name": "idem-old"},
                            headers={"Idempotency-Key": "old"})
    assert again.status_code == 201 and "idempotent-replayed" not in again.headers
    assert count_teams(server, "idem-old") == 2


def test_a_key_longer_than_255_characters_is_refused(tenant):
    with tenant.as_user() as client:
        response = client.post("/api/teams", json={"name": "x"},
                               headers={"Idempotency-Key": "k" * 256})
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "Idempotency-Key"


def test_deletes_replay_too(server, tenant):
    with tenant.as_user() as client:
        project = client.post("/api/projects", json={"name": "gone",
                                                     "teamId": tenant.team_id}).json()
        first = client.delete(f"/api/projects/{project['id']}",
                              headers={"Idempotency-Key": "del"})
        second = client.delete(f"/api/projects/{project['id']}",
                               headers={"Idempotency-Key": "del"})
    assert first.status_code == second.status_code == 200
    assert second.headers["idempotent-replayed"] == "true"


def test_a_claim_whose_process_died_is_taken_over_within_seconds(server, tenant):
    """A claim left `running` by a request whose process died (no renewal since) is taken
    over by a retry once its short lease ends, not after a minute."""
    key = "crashed-" + secrets.token_hex(6)
    with tenant.as_key() as client:
        first = client.post("/api/runs", json={"status": "running", "runTitle": "crashed"},
                            headers={"Idempotency-Key": key})
        assert first.status_code == 201
        with server.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            conn.execute(update(idempotency_keys).where(idempotency_keys.c.key == key).values(
                state="running", response_status=None, response_body=None,
                locked_at=utcnow() - idempotency.STALE_AFTER - timedelta(seconds=1)))
        assert idempotency.STALE_AFTER <= timedelta(seconds=10)
        retry = client.post("/api/runs", json={"status": "running", "runTitle": "crashed"},
                            headers={"Idempotency-Key": key})
    assert retry.status_code == 201 and "idempotent-replayed" not in retry.headers


def test_a_claim_is_renewed_while_its_request_runs(server, tenant, monkeypatch):
    """A request that runs longer than the lease keeps its claim (renewed while it runs): a
    retry meanwhile does not run it again; the request ran once."""
    monkeypatch.setattr(idempotency, "STALE_AFTER", timedelta(seconds=1))
    monkeypatch.setattr(idempotency, "RENEW_EVERY", 0.2)
    real = teams_service.create_team
    calls = []

    def slow_create_team(*args, **kwargs):
        calls.append(1)
        time.sleep(3)
        return real(*args, **kwargs)

    monkeypatch.setattr(teams_service, "create_team", slow_create_team)
    key = "renewed-" + secrets.token_hex(6)
    name = "slow team " + key
    answers = {}
    with tenant.as_user() as client:
        def first():
            answers["first"] = client.post("/api/teams", json={"name": name},
                                           headers={"Idempotency-Key": key})

        thread = threading.Thread(target=first)
        thread.start()
        time.sleep(2)  # past the lease: only its renewal keeps the claim
        during = client.post("/api/teams", json={"name": name},
                             headers={"Idempotency-Key": key})
        thread.join()
        after = client.post("/api/teams", json={"name": name},
                            headers={"Idempotency-Key": key})
        teams = client.get("/api/teams", params={"limit": 500}).json()["data"]
    # PostgreSQL: CONFLICT while it runs. SQLite: the retry waits for the writer turn the
    # first holds, then replays its answer. Never a second execution.
    assert (during.status_code == 409 and during.json()["error"]["code"] == "CONFLICT") or (
        during.headers.get("idempotent-replayed") == "true"), during.text
    assert answers["first"].status_code == 201
    assert after.headers.get("idempotent-replayed") == "true"
    assert len(calls) == 1
    assert sum(t["name"] == name for t in teams) == 1
