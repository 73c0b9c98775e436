"""Teams, members, invitations, projects and settings, with the reference's shapes."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import update

from redline.server.kit.clock import parse_iso, utcnow
from redline.server.tables import invitations
from tests.support import live


def test_creating_a_team_makes_you_its_owner(tenant):
    with tenant.as_user() as client:
        team = client.post("/api/teams", json={"name": "QA Automation Team"})
        members = client.get("/api/team-members", params={"teamId": team.json()["id"]}).json()
    assert team.status_code == 201
    assert set(team.json()) == {"id", "name", "createdAt"}
    assert team.json()["id"].startswith("team_")
    [member] = members["data"]
    assert member["role"] == "owner" and member["email"] == tenant.email
    assert set(member) == {"id", "userId", "teamId", "role", "name", "email", "avatarUrl",
                           "joinedAt"}


def test_an_invitation_expires_after_seven_days(tenant):
    with tenant.as_user() as client:
        invite = client.post("/api/team-members", json={
            "teamId": tenant.team_id, "email": "NewMember@Example.com", "role": "member"})
    body = invite.json()
    assert invite.status_code == 201
    assert body["status"] == "pending" and body["email"] == "newmember@example.com"
    lifetime = parse_iso(body["expiresAt"]) - parse_iso(body["createdAt"])
    assert lifetime == timedelta(days=7)
    assert body["acceptUrl"].endswith(body["acceptToken"])


def test_a_new_user_accepts_with_the_token_and_a_password(tenant):
    with tenant.as_user() as client:
        invite = client.post("/api/team-members", json={
            "teamId": tenant.team_id, "email": "fresh@example.com", "role": "viewer"}).json()
    url = f"{tenant.server.url}/api/invitations/{invite['id']}/accept"
    no_token = httpx.post(url, json={"password": "long enough"})
    assert no_token.status_code == 404
    accepted = httpx.post(url, json={"token": invite["acceptToken"], "password": "long enough"})
    assert accepted.status_code == 201
    assert accepted.json()["member"]["role"] == "viewer"
    token = accepted.json()["token"]
    me = httpx.get(f"{tenant.server.url}/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["teams"][0]["teamId"] == tenant.team_id
    again = httpx.post(url, json={"token": invite["acceptToken"], "password": "long enough"})
    assert again.status_code == 409


def test_a_signed_in_user_accepts_an_invitation_to_their_email(tenant, other_tenant):
    with tenant.as_user() as client:
        invite = client.post("/api/team-members", json={
            "teamId": tenant.team_id, "email": other_tenant.email, "role": "member"}).json()
    with other_tenant.as_user() as client:
        accepted = client.post(f"/api/invitations/{invite['id']}/accept")
        assert accepted.status_code == 201
        teams = client.get("/api/teams").json()["data"]
    assert {t["id"] for t in teams} == {tenant.team_id, other_tenant.team_id}


def test_an_expired_invitation_cannot_be_accepted(server, tenant):
    with tenant.as_user() as client:
        invite = client.post("/api/team-members", json={
            "teamId": tenant.team_id, "email": "late@example.com", "role": "member"}).json()
        with server.engine.begin() as conn:
            conn.execute(update(invitations).where(invitations.c.id == invite["id"])
                         .values(expires_at=utcnow() - timedelta(seconds=1)))
        listed = client.get("/api/invitations", params={"teamId": tenant.team_id}).json()
    assert [i["status"] for i in listed["data"] if i["id"] == invite["id"]] == ["expired"]
    response = httpx.post(f"{server.url}/api/invitations/{invite['id']}/accept",
                          json={"token": invite["acceptToken"], "password": "long enough"})
    assert response.status_code == 400
    assert response.json()["error"]["details"]["reason"] == "expired"


def test_a_revoked_invitation_cannot_be_accepted(tenant):
    with tenant.as_user() as client:
        invite = client.post("/api/team-members", json={
            "teamId": tenant.team_id, "email": "revoked@example.com", "role": "member"}).json()
        assert client.delete(f"/api/invitations/{invite['id']}").status_code == 200
    response = httpx.post(f"{tenant.server.url}/api/invitations/{invite['id']}/accept",
                          json={"token": invite["acceptToken"], "password": "long enough"})
    assert response.status_code == 409


def test_inviting_someone_already_in_the_team_is_a_conflict(tenant):
    with tenant.as_user() as client:
        response = client.post("/api/team-members", json={
            "teamId": tenant.team_id, "email": tenant.email, "role": "member"})
    assert response.status_code == 409


def test_nobody_is_invited_as_owner(tenant):
    with tenant.as_user() as client:
        response = client.post("/api/team-members", json={
            "teamId": tenant.team_id, "email": "boss@example.com", "role": "owner"})
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "role"


def test_project_lifecycle_with_the_references_shapes(tenant):
    with tenant.as_user() as client:
        created = client.post("/api/projects", json={"name": "Mobile App E2E",
                                                     "teamId": tenant.team_id})
        project = created.json()
        assert created.status_code == 201
        assert set(project) == {"id", "name", "teamId", "createdAt", "updatedAt"}
        renamed = client.patch(f"/api/projects/{project['id']}",
                               json={"name": "Mobile (Prod)"}).json()
        assert set(renamed) == {"id", "name", "teamId", "updatedAt"}
        settings = client.get(f"/api/projects/{project['id']}/settings").json()
        assert settings == {"projectId": project["id"], "dataRetentionDays": 90,
                            "flakinessThreshold": 0.3, "autoQuarantineEnabled": True,
                            "artifactRetentionDays": {"passed": None, "failed": None,
                                                      "flaky": None, "skipped": None},
                            "updatedAt": settings["updatedAt"]}
        changed = client.patch(f"/api/projects/{project['id']}/settings",
                               json={"flakinessThreshold": 0.5}).json()
        assert changed["flakinessThreshold"] == 0.5 and changed["dataRetentionDays"] == 90
        bad = client.patch(f"/api/projects/{project['id']}/settings",
                           json={"flakinessThreshold": 1.5})
        assert bad.status_code == 400
        listed = client.get("/api/projects", params={"teamId": tenant.team_id}).json()
        assert {p["id"] for p in listed["data"]} == {tenant.project_id, project["id"]}
        assert listed["total"] == 2 and listed["limit"] == 50 and listed["offset"] == 0
        deleted = client.delete(f"/api/projects/{project['id']}")
        assert deleted.json() == {"success": True, "message": "Project deleted successfully"}
        assert client.get(f"/api/projects/{project['id']}").status_code == 404


def test_lists_page_by_offset_and_by_cursor(tenant):
    with tenant.as_user() as client:
        for i in range(4):
            client.post("/api/projects", json={"name": f"p{i}", "teamId": tenant.team_id})
        by_offset = client.get("/api/projects", params={"teamId": tenant.team_id, "limit": 2,
                                                        "offset": 2}).json()
        seen, cursor = [], None
        while True:
            params = {"teamId": tenant.team_id, "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/api/projects", params=params).json()
            seen += [p["id"] for p in page["data"]]
            cursor = page["nextCursor"]
            if not cursor:
                break
    assert by_offset["total"] == 5 and len(by_offset["data"]) == 2
    assert len(seen) == len(set(seen)) == 5


def test_setup_creates_owner_team_project_and_key_once(migrated_url, tmp_path):
    from redline.server.db import migrate

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    migrate(url)
    with live.LiveServer.start(url, tmp_path / "data") as srv, srv.client() as client:
        body = client.post("/api/setup", json={"email": "owner@example.com",
                                               "password": "password1", "team": "Acme",
                                               "project": "Web"}).json()
        assert set(body) == {"user", "team", "project", "apiKey"}
        assert body["apiKey"]["key"].startswith("rl_live_")
        me = client.get("/api/me", headers={"X-API-Key": body["apiKey"]["key"]}).json()
        assert me["projectId"] == body["project"]["id"]
        again = client.post("/api/setup", json={"email": "x@example.com",
                                                "password": "password1"})
        assert again.status_code == 409
