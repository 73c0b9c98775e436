"""Roles (DESIGN.md section 5, RELIABILITY.md 6.2): owner, admin, member and viewer against
every mutating route of accounts, teams and projects, checked against one allow table."""

from __future__ import annotations

import pytest

from tests.support import live

ROLES = ["viewer", "member", "admin", "owner"]

# route -> the lowest role allowed
ALLOW = {
    "create project": "admin",
    "rename project": "admin",
    "delete project": "owner",
    "change settings": "admin",
    "create key": "admin",
    "deactivate key": "admin",
    "delete key": "admin",
    "list keys": "admin",
    "rename team": "admin",
    "invite": "admin",
    "list invitations": "admin",
    "revoke invitation": "admin",
    "change a role": "owner",
    "remove a member": "admin",
    "read project": "viewer",
    "read settings": "viewer",
    "list members": "viewer",
}


def perform(action: str, client, org) -> int:
    """Do one action in the org's team, on a target made fresh for it by the owner."""
    owner = org["owner"]
    project = org["project_id"]
    team = org["team_id"]
    if action == "create project":
        return client.post("/api/projects", json={"name": "p", "teamId": team}).status_code
    if action == "rename project":
        return client.patch(f"/api/projects/{project}", json={"name": "renamed"}).status_code
    if action == "delete project":
        target = owner.post("/api/projects", json={"name": "doomed", "teamId": team}).json()
        return client.delete(f"/api/projects/{target['id']}").status_code
    if action == "change settings":
        return client.patch(f"/api/projects/{project}/settings",
                            json={"dataRetentionDays": 30}).status_code
    if action in ("deactivate key", "delete key"):
        key = owner.post("/api/api-keys", json={"projectId": project, "name": "k"}).json()
        if action == "delete key":
            return client.delete(f"/api/api-keys/{key['id']}").status_code
        return client.patch(f"/api/api-keys/{key['id']}", json={"isActive": False}).status_code
    if action == "create key":
        return client.post("/api/api-keys", json={"projectId": project,
                                                  "name": "k", "scopes": ["runs:read"]}).status_code
    if action == "list keys":
        return client.get("/api/api-keys", params={"projectId": project}).status_code
    if action == "rename team":
        return client.patch(f"/api/teams/{team}", json={"name": "renamed"}).status_code
    if action == "invite":
        return client.post("/api/team-members", json={"teamId": team, "role": "viewer",
                                                      "email": f"{live.free_port()}@x.example"}
                           ).status_code
    if action == "list invitations":
        return client.get("/api/invitations", params={"teamId": team}).status_code
    if action == "revoke invitation":
        invite = owner.post("/api/team-members", json={
            "teamId": team, "role": "viewer", "email": f"{live.free_port()}@y.example"}).json()
        return client.delete(f"/api/invitations/{invite['id']}").status_code
    if action in ("change a role", "remove a member"):
        _, member_id = live.add_member(org["tenant"], "member")
        if action == "change a role":
            return client.patch(f"/api/team-members/{member_id}",
                                json={"role": "viewer"}).status_code
        return client.delete(f"/api/team-members/{member_id}").status_code
    if action == "read project":
        return client.get(f"/api/projects/{project}").status_code
    if action == "read settings":
        return client.get(f"/api/projects/{project}/settings").status_code
    if action == "list members":
        return client.get("/api/team-members", params={"teamId": team}).status_code
    raise AssertionError(action)


@pytest.fixture(scope="module")
def org(server):
    """One team with a user in each role."""
    tenant = live.make_tenant(server)
    owner = tenant.as_user()
    clients = {"owner": owner}
    for role in ("admin", "member", "viewer"):
        token, _ = live.add_member(tenant, role)
        clients[role] = server.client(Authorization=f"Bearer {token}")
    yield {"tenant": tenant, "owner": owner, "clients": clients, "team_id": tenant.team_id,
           "project_id": tenant.project_id}
    for client in clients.values():
        client.close()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", sorted(ALLOW))
def test_role_matrix(org, role, action):
    status = perform(action, org["clients"][role], org)
    allowed = ROLES.index(role) >= ROLES.index(ALLOW[action])
    if allowed:
        assert 200 <= status < 300, f"{role} should be allowed to {action}"
    else:
        assert status == 403, f"{role} must not {action}"


def test_only_an_owner_deletes_a_team(server):
    tenant = live.make_tenant(server)
    admin_token, _ = live.add_member(tenant, "admin")
    with server.client(Authorization=f"Bearer {admin_token}") as admin:
        assert admin.delete(f"/api/teams/{tenant.team_id}").status_code == 403
    with tenant.as_user() as owner:
        assert owner.delete(f"/api/teams/{tenant.team_id}").status_code == 200
        assert owner.get(f"/api/teams/{tenant.team_id}").status_code == 404
    with tenant.as_key() as key_client:  # the project went with the team, and its key
        assert key_client.get(f"/api/projects/{tenant.project_id}").status_code == 401


def test_the_last_owner_cannot_leave_or_be_demoted(tenant):
    with tenant.as_user() as owner:
        me = owner.get("/api/team-members", params={"teamId": tenant.team_id}).json()["data"][0]
        leave = owner.delete(f"/api/team-members/{me['id']}")
        demote = owner.patch(f"/api/team-members/{me['id']}", json={"role": "admin"})
    assert leave.status_code == 409 and leave.json()["error"]["details"]["reason"] == "last_owner"
    assert demote.status_code == 409


def test_ownership_is_transferred_by_making_someone_owner(tenant):
    token, member_id = live.add_member(tenant, "admin")
    with tenant.as_user() as owner:
        assert owner.patch(f"/api/team-members/{member_id}",
                           json={"role": "owner"}).json()["role"] == "owner"
        me = next(m for m in owner.get("/api/team-members", params={"teamId": tenant.team_id})
                  .json()["data"] if m["userId"] == tenant.user_id)
        assert owner.delete(f"/api/team-members/{me['id']}").status_code == 200  # leaves
    with tenant.server.client(Authorization=f"Bearer {token}") as new_owner:
        assert new_owner.get(f"/api/teams/{tenant.team_id}").status_code == 200


def test_a_key_acts_with_its_creators_current_role(tenant):
    """A key made by an admin loses project:admin when the admin is demoted, at once."""
    token, member_id = live.add_member(tenant, "admin")
    with tenant.server.client(Authorization=f"Bearer {token}") as admin:
        key = admin.post("/api/api-keys", json={
            "projectId": tenant.project_id, "name": "admin key",
            "scopes": ["runs:read", "project:admin"]}).json()["key"]
    with tenant.as_key(key) as client:
        assert client.get("/api/api-keys", params={"projectId": tenant.project_id}
                          ).status_code == 200
        with tenant.as_user() as owner:
            owner.patch(f"/api/team-members/{member_id}", json={"role": "viewer"})
        response = client.get("/api/api-keys", params={"projectId": tenant.project_id})
        assert response.status_code == 403
        assert response.json()["error"]["details"]["granted"] == ["runs:read"]
        with tenant.as_user() as owner:
            owner.delete(f"/api/team-members/{member_id}")
        assert client.get(f"/api/projects/{tenant.project_id}").status_code == 401


def test_a_key_cannot_be_given_scopes_its_creator_lacks(tenant):
    token, _ = live.add_member(tenant, "admin")
    with tenant.server.client(Authorization=f"Bearer {token}") as admin:
        admin_key = admin.post("/api/api-keys", json={
            "projectId": tenant.project_id, "name": "k",
            "scopes": ["project:admin", "runs:read"]}).json()["key"]
    with tenant.as_key(admin_key) as client:
        response = client.post("/api/api-keys", json={"projectId": tenant.project_id,
                                                      "name": "wider", "scopes": ["runs:write"]})
    assert response.status_code == 403
    assert response.json()["error"]["details"]["required"] == ["runs:write"]
