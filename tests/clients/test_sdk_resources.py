"""The SDK's typed methods against the real server: setup, accounts, teams, members,
invitations, projects, settings, API keys; pagination; implied projects; the async client."""

from __future__ import annotations

import asyncio

import pytest

from redline.sdk import AsyncClient, Client, models
from redline.sdk import exceptions as errors
from tests.clients.peers import FaultProxy, Reply
from tests.support import live


def as_user(tenant, **options) -> Client:
    return Client(tenant.server.url, token=tenant.token, from_env=False, **options)


def test_setup_then_sign_in(fresh_server):
    with Client(fresh_server.url, from_env=False) as anonymous:
        result = anonymous.setup("owner@example.com", "password123", team="Acme",
                                 project="Web", key_name="CI")
        assert isinstance(result, models.SetupResult)
        assert result.api_key.key.startswith("rl_live_")
        login = anonymous.auth.login("owner@example.com", "password123")
        assert login.token.startswith("rlu_") and login.user.id == result.user.id
    with Client(fresh_server.url, api_key=result.api_key.key, from_env=False) as ci:
        me = ci.me()
        assert (me.kind, me.project_id) == ("key", result.project.id)
        assert ci.projects.get().id == result.project.id  # implied by the key
    with Client(fresh_server.url, token=login.token, from_env=False) as owner:
        owner.auth.logout()
        with pytest.raises(errors.AuthInvalidError):
            owner.me()


def test_environment_supplies_url_and_key(tenant, monkeypatch):
    monkeypatch.setenv("REDLINE_URL", tenant.server.url)
    monkeypatch.setenv("REDLINE_API_KEY", tenant.key)
    with Client() as client:
        assert client.me().project_id == tenant.project_id


def test_teams_projects_and_settings(tenant):
    with as_user(tenant) as client:
        team = client.teams.create("SDK team")
        assert client.teams.get(team.id).name == "SDK team"
        assert client.teams.rename(team.id, "SDK team 2").name == "SDK team 2"
        project = client.projects.create("SDK project", team.id)
        assert [p.id for p in client.projects.list(team.id)] == [project.id]
        assert client.projects.rename(project.id, "renamed").name == "renamed"
        settings = client.projects.get_settings(project.id)
        assert (settings.data_retention_days, settings.flakiness_threshold) == (90, 0.3)
        assert settings.etag
        changed = client.projects.update_settings(project.id, flakiness_threshold=0.5,
                                                  if_match=settings.etag)
        assert changed.flakiness_threshold == 0.5 and changed.data_retention_days == 90
        with pytest.raises(errors.PreconditionFailedError):
            client.projects.update_settings(project.id, data_retention_days=10,
                                            if_match=settings.etag)
        assert client.projects.delete(project.id).success
        assert client.teams.delete(team.id).success
        with pytest.raises(errors.NotFoundError):
            client.teams.get(team.id)


def test_members_and_invitations(tenant):
    with as_user(tenant) as owner:
        invitation = owner.members.invite(tenant.team_id, "joiner@example.com", "viewer")
        assert invitation.accept_token and invitation.status == "pending"
        assert [i.id for i in owner.invitations.list(tenant.team_id)] == [invitation.id]
        with Client(tenant.server.url, from_env=False) as anonymous:
            accepted = anonymous.invitations.accept(invitation.id, token=invitation.accept_token,
                                                    password="password123")
        assert accepted.token and accepted.member.role == "viewer"
        with Client(tenant.server.url, token=accepted.token, from_env=False) as viewer:
            with pytest.raises(errors.AuthForbiddenError) as info:
                viewer.projects.create("nope", tenant.team_id)
            assert info.value.exit_code == 3
        member = owner.members.set_role(accepted.member.id, "admin")
        assert member.role == "admin"
        assert owner.members.remove(accepted.member.id).success
        other = owner.members.invite(tenant.team_id, "later@example.com")
        assert owner.invitations.revoke(other.id).success


def test_api_keys(tenant):
    with as_user(tenant) as owner:
        created = owner.api_keys.create("deploy", tenant.project_id, scopes=["runs:read"])
        assert created.key.startswith("rl_live_") and created.scopes == ["runs:read"]
        listed = {k.id: k for k in owner.api_keys.list(tenant.project_id)}
        assert listed[created.id].masked_key and created.key not in str(listed)
        assert owner.api_keys.deactivate(created.id).is_active is False
        with Client(tenant.server.url, api_key=created.key, from_env=False) as key:
            with pytest.raises(errors.AuthInvalidError):
                key.me()
            owner.api_keys.activate(created.id)
            assert key.me().key_id == created.id
        assert owner.api_keys.delete(created.id).success


def test_a_personal_token_must_name_the_project(tenant):
    with as_user(tenant) as client:
        with pytest.raises(errors.ValidationError) as info:
            client.projects.get_settings()
        assert info.value.status is None and info.value.exit_code == 5
    with as_user(tenant, project_id=tenant.project_id) as client:
        assert client.projects.get_settings().project_id == tenant.project_id


def test_iter_follows_next_cursor(tenant):
    with as_user(tenant) as client:
        made = [client.teams.create(f"page {i}").id for i in range(3)]
    with FaultProxy(tenant.server.url) as proxy, \
            Client(proxy.url, token=tenant.token, from_env=False) as client:
        seen = [team.id for team in client.teams.iter(limit=2)]
        requests = proxy.requests_to("/api/teams")
    assert sorted(seen) == sorted([tenant.team_id, *made])
    assert len(requests) == 2 and "cursor=" in requests[1].path


def test_models_keep_fields_from_a_newer_server(stub):
    stub.reply = Reply(200, {"id": "team_1", "name": "t", "createdAt": "2026-01-01T00:00:00Z",
                             "shinyNewField": {"a": 1}})
    with Client(stub.url, api_key="rl_live_stub", from_env=False) as client:
        team = client.teams.get("team_1")
    assert team.to_json()["shinyNewField"] == {"a": 1}
    assert models.parse_time(team.created_at).year == 2026


def test_the_async_client(tenant):
    async def go():
        async with AsyncClient(tenant.server.url, api_key=tenant.key, from_env=False) as client:
            me, project = await asyncio.gather(client.me(), client.projects.get())
            with pytest.raises(errors.AuthForbiddenError):
                await client.api_keys.list()
            return me, project

    me, project = asyncio.run(go())
    assert me.project_id == project.id == tenant.project_id


def test_sign_in_failures(tenant):
    with Client(tenant.server.url, from_env=False) as client:
        with pytest.raises(errors.AuthInvalidError):
            client.auth.login(tenant.email, "wrong password")
        with pytest.raises(errors.AuthRequiredError):
            client.me()
    assert live.login(tenant.server, tenant.email)  # not locked out by one failure


def test_the_transport_seam_takes_any_httpx_transport():
    """For unit tests of code built on the SDK: no server, the same error mapping."""
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/me":
            return httpx.Response(403, json={"error": {
                "code": "AUTH_FORBIDDEN", "message": "no", "details": {
                    "required": ["runs:write"], "granted": ["runs:read"]}}},
                headers={"X-Request-Id": "req_seam"})
        return httpx.Response(200, json={"status": "ok"})

    with Client("http://redline.test", api_key="rl_live_x", from_env=False,
                transport=httpx.MockTransport(handler)) as client:
        assert client.health() == {"status": "ok"}
        with pytest.raises(errors.AuthForbiddenError) as info:
            client.me()
    assert info.value.required_scopes == ["runs:write"]
    assert info.value.request_id == "req_seam"
