"""The `redline` CLI as a subprocess against the real server: flags, output modes, profiles,
confirmations, first-run setup, and the commands for teams, projects and keys."""

from __future__ import annotations

import json
import re
import stat

import pytest

from redline.errors import CATALOG
from tests.clients.conftest import Cli, run_in_terminal
from tests.support import live

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def assert_failure(result, code: str, exit_code: int) -> dict:
    assert result.code == exit_code, result
    assert result.stdout == ""
    error = result.envelope["error"]
    assert error["code"] == code and error["exitCode"] == exit_code
    return error


# -- flags, help, version --------------------------------------------------------------------

@pytest.mark.parametrize("args", [["--help"], ["-h"], ["--version"], ["teams", "--help"],
                                  ["teams", "list", "--help"], ["serve", "--help"], []])
def test_help_and_version_exit_zero(cli, args):
    result = cli(*args)
    assert result.code == 0, result
    assert result.stdout and result.stderr == ""


def test_version_prints_the_version(cli):
    from redline import __version__

    assert cli("--version").stdout == f"redline {__version__}\n"


def test_root_help_lists_exit_codes_from_the_catalog_and_serve_help_the_settings(cli):
    text = cli("--help").stdout
    for code in CATALOG:
        assert code in text
    assert "REDLINE_API_KEY" in text
    serve = cli("serve", "--help").stdout
    assert "REDLINE_DATABASE_URL" in serve and "--no-worker" in serve


@pytest.mark.parametrize("args", [["teams", "list", "--bogus"], ["teams", "list", "-o", "yaml"],
                                  ["teams", "get"], ["teams", "list", "--limit", "x"],
                                  ["nosuchcommand"], ["keys", "create", "k", "--scope", "root"]])
def test_flag_parse_errors_exit_five_with_the_envelope(cli, args):
    result = cli(*args, "--output", "json") if "-o" not in args else cli(*args)
    if "-o" in args:  # a bad --output value: the mode is unknown, so the text form
        assert result.code == 5 and result.stdout == ""
        assert result.stderr.startswith("Error [VALIDATION_ERROR]: Invalid value for '--output'")
        return
    error = assert_failure(result, "VALIDATION_ERROR", 5)
    assert error["details"]["reason"] == "usage"
    assert "--help" in error["nextAction"]


def test_text_mode_usage_error(cli):
    result = cli("teams", "list", "--bogus")
    assert result.code == 5 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "Error [VALIDATION_ERROR]: No such option '--bogus'.",
        "Next: Run `redline teams list --help` to see the flags."]


# -- first run, sign-in, profiles -----------------------------------------------------------

def test_init_sets_up_a_fresh_server_once(fresh_server, tmp_path):
    cli = Cli(tmp_path / "config", fresh_server.url)
    result = cli("init", "--email", "owner@example.com", "--password", "password123",
                 "--team", "Acme", "--project", "Web", "--output", "json")
    assert result.code == 0, result
    assert result.stderr == ""
    body = result.json
    assert set(body) == {"user", "team", "project", "apiKey"}
    assert body["team"]["name"] == "Acme" and body["project"]["name"] == "Web"
    assert body["apiKey"]["key"].startswith("rl_live_") and body["apiKey"]["id"]
    profiles = tmp_path / "config" / "profiles.json"
    assert stat.S_IMODE(profiles.stat().st_mode) == 0o600
    assert json.loads(profiles.read_text())["profiles"]["default"]["project"] == \
        body["project"]["id"]
    # the owner is signed in: a project command works without flags
    assert cli("settings", "get", "-o", "json").json["projectId"] == body["project"]["id"]
    # the key printed once works as REDLINE_API_KEY, project implied
    whoami = cli("whoami", "-o", "json", REDLINE_API_KEY=body["apiKey"]["key"]).json
    assert whoami["kind"] == "key" and whoami["projectId"] == body["project"]["id"]
    again = cli("init", "--email", "x@example.com", "--password", "password123", "-o", "json")
    error = assert_failure(again, "CONFLICT", 6)
    assert "redline login" in error["nextAction"] and error["retryable"] is False


def test_init_without_a_terminal_needs_its_flags(fresh_server, tmp_path):
    result = Cli(tmp_path / "c", fresh_server.url)("init", "--password", "password123",
                                                    "-o", "json")
    error = assert_failure(result, "VALIDATION_ERROR", 5)
    assert error["details"]["field"] == "--email"


def test_login_whoami_logout(tenant, cli):
    result = cli("login", "--email", tenant.email, "--password", live.PASSWORD, "-o", "json")
    assert result.code == 0, result
    assert result.json["email"] == tenant.email and "token" not in result.json
    profiles = cli.config_dir / "profiles.json"
    assert stat.S_IMODE(profiles.stat().st_mode) == 0o600
    token = json.loads(profiles.read_text())["profiles"]["default"]["token"]
    me = cli("whoami", "-o", "json").json
    assert me["email"] == tenant.email and me["kind"] == "user"
    assert cli("logout").code == 0
    assert_failure(cli("whoami", "-o", "json"), "AUTH_REQUIRED", 3)
    # the token was revoked on the server, not only forgotten
    assert_failure(cli("whoami", "-o", "json", REDLINE_TOKEN=token), "AUTH_INVALID", 3)


def test_login_with_a_wrong_password_exits_three(tenant, cli):
    assert_failure(cli("login", "--email", tenant.email, "--password", "wrong", "-o", "json"),
                   "AUTH_INVALID", 3)
    assert not (cli.config_dir / "profiles.json").exists()


def test_named_profiles(tenant, other_tenant, cli):
    for name, who in (("a", tenant), ("b", other_tenant)):
        assert cli("login", "--profile", name, "--email", who.email, "--password",
                   live.PASSWORD).code == 0
    assert cli("whoami", "-o", "json").json["email"] == other_tenant.email  # the last one
    assert cli("whoami", "--profile", "a", "-o", "json").json["email"] == tenant.email
    assert cli("whoami", "-o", "json", REDLINE_PROFILE="a").json["email"] == tenant.email


# -- projects: implied by a key, named with a token -----------------------------------------

def test_a_project_key_implies_the_project(tenant, cli):
    result = cli("settings", "get", "-o", "json", REDLINE_API_KEY=tenant.key)
    assert result.code == 0 and result.json["projectId"] == tenant.project_id
    assert result.json["etag"]


def test_a_personal_token_needs_the_project_named(tenant, cli):
    error = assert_failure(cli("settings", "get", "-o", "json", REDLINE_TOKEN=tenant.token),
                           "VALIDATION_ERROR", 5)
    assert error["details"]["field"] == "projectId"
    result = cli("settings", "get", "--project", tenant.project_id, "-o", "json",
                 REDLINE_TOKEN=tenant.token)
    assert result.json["projectId"] == tenant.project_id
    result = cli("settings", "get", "-o", "json", REDLINE_TOKEN=tenant.token,
                 REDLINE_PROJECT=tenant.project_id)
    assert result.json["projectId"] == tenant.project_id


def test_settings_set_changes_only_what_is_given(tenant, cli):
    env = {"REDLINE_TOKEN": tenant.token, "REDLINE_PROJECT": tenant.project_id}
    result = cli("settings", "set", "--retention-days", "30", "--no-auto-quarantine", "-o",
                 "json", **env)
    assert result.code == 0, result
    assert (result.json["dataRetentionDays"], result.json["autoQuarantineEnabled"],
            result.json["flakinessThreshold"]) == (30, False, 0.3)
    assert_failure(cli("settings", "set", "-o", "json", **env), "VALIDATION_ERROR", 5)


# -- output ---------------------------------------------------------------------------------

def test_piped_tables_are_tab_separated_with_rfc3339_times(tenant, cli):
    result = cli("teams", "list", REDLINE_TOKEN=tenant.token)
    assert result.code == 0 and result.stderr == ""
    [line] = result.stdout.splitlines()
    team_id, name, created = line.split("\t")
    assert team_id == tenant.team_id and name.endswith("team")
    assert RFC3339.match(created)


def test_json_success_goes_to_stdout_only(tenant, cli):
    result = cli("projects", "list", "-o", "json", REDLINE_TOKEN=tenant.token)
    assert result.code == 0 and result.stderr == ""
    page = result.json
    assert [p["id"] for p in page["data"]] == [tenant.project_id]
    assert set(page) >= {"data", "total", "limit", "offset"}


# -- destructive commands -------------------------------------------------------------------

def test_delete_without_a_terminal_refuses_unless_yes(tenant, cli):
    env = {"REDLINE_TOKEN": tenant.token}
    team = cli("teams", "create", "doomed", "-o", "json", **env).json
    result = cli("teams", "delete", team["id"], "-o", "json", **env)
    error = assert_failure(result, "CONFIRMATION_REQUIRED", 2)
    assert error["example"] == f"redline teams delete {team['id']} -o json --yes"
    assert cli("teams", "get", team["id"], "-o", "json", **env).code == 0  # still there
    result = cli("teams", "delete", team["id"], "--yes", "-o", "json", **env)
    assert result.code == 0 and result.json["success"] is True
    assert_failure(cli("teams", "get", team["id"], "-o", "json", **env), "NOT_FOUND", 4)


def test_text_mode_confirmation_shows_the_example(tenant, cli):
    result = cli("projects", "delete", tenant.project_id, REDLINE_TOKEN=tenant.token)
    assert result.code == 2 and result.stdout == ""
    assert result.stderr.splitlines()[0].startswith("Error [CONFIRMATION_REQUIRED]: ")
    assert f"Example: redline projects delete {tenant.project_id} --yes" in result.stderr


# -- teams, members, invitations, projects, keys --------------------------------------------

def test_team_and_project_lifecycle(tenant, cli):
    env = {"REDLINE_TOKEN": tenant.token}
    team = cli("teams", "create", "Platform", "-o", "json", **env).json
    assert cli("teams", "rename", team["id"], "Platform QA", "-o", "json",
               **env).json["name"] == "Platform QA"
    project = cli("projects", "create", "API", "--team", team["id"], "-o", "json", **env).json
    assert project["teamId"] == team["id"]
    assert cli("projects", "rename", project["id"], "API v2", "-o", "json",
               **env).json["name"] == "API v2"
    # two teams now: the team must be named
    error = assert_failure(cli("projects", "list", "-o", "json", **env), "VALIDATION_ERROR", 5)
    assert team["id"] in error["message"]
    listed = cli("projects", "list", "--team", team["id"], "-o", "json", **env).json
    assert [p["id"] for p in listed["data"]] == [project["id"]]
    assert cli("projects", "delete", project["id"], "--yes", **env).code == 0


def test_members_and_invitations(tenant, cli):
    env = {"REDLINE_TOKEN": tenant.token, "REDLINE_TEAM": tenant.team_id}
    invite = cli("members", "invite", "new@example.com", "--role", "viewer", "-o", "json",
                 **env).json
    assert invite["status"] == "pending" and invite["acceptToken"]
    listed = cli("invitations", "list", "-o", "json", **env).json
    assert [i["id"] for i in listed["data"]] == [invite["id"]]
    accepted = cli("invitations", "accept", invite["id"], "--token", invite["acceptToken"],
                   "--password", "password123", "-o", "json",
                   REDLINE_URL=tenant.server.url).json
    member_id = accepted["member"]["id"]
    assert accepted["member"]["role"] == "viewer"
    assert cli("members", "set-role", member_id, "member", "-o", "json",
               **env).json["role"] == "member"
    members = cli("members", "list", "-o", "json", **env).json
    assert {m["email"] for m in members["data"]} == {tenant.email, "new@example.com"}
    assert cli("members", "remove", member_id, "--yes", **env).code == 0
    second = cli("members", "invite", "later@example.com", "-o", "json", **env).json
    assert cli("invitations", "revoke", second["id"], "--yes", "-o", "json", **env).code == 0


def test_api_keys(tenant, cli):
    env = {"REDLINE_TOKEN": tenant.token, "REDLINE_PROJECT": tenant.project_id}
    created = cli("keys", "create", "deploy", "--scope", "runs:read", "-o", "json", **env).json
    assert created["key"].startswith("rl_live_") and created["scopes"] == ["runs:read"]
    listed = cli("keys", "list", "-o", "json", **env).json
    assert created["key"] not in json.dumps(listed)  # masked
    assert {k["id"] for k in listed["data"]} == {tenant.key_id, created["id"]}
    assert cli("whoami", "-o", "json", REDLINE_API_KEY=created["key"]).code == 0
    assert cli("keys", "deactivate", created["id"], "-o", "json",
               **env).json["isActive"] is False
    assert_failure(cli("whoami", "-o", "json", REDLINE_API_KEY=created["key"]),
                   "AUTH_INVALID", 3)
    assert cli("keys", "activate", created["id"], **env).code == 0
    assert cli("whoami", "-o", "json", REDLINE_API_KEY=created["key"]).code == 0
    assert cli("keys", "delete", created["id"], "--yes", **env).code == 0


# -- on a terminal --------------------------------------------------------------------------

def test_a_terminal_gets_an_aligned_table_with_a_header(tenant, cli):
    code, output = run_in_terminal(cli, "teams", "list", REDLINE_TOKEN=tenant.token)
    assert code == 0, output
    header, row = output.strip().splitlines()
    assert header.split() == ["ID", "NAME", "CREATEDAT"]
    assert row.startswith(tenant.team_id + "  ") and "\t" not in row
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d$", row)  # a short time, for people


def test_a_terminal_is_asked_before_a_delete(tenant, cli):
    env = {"REDLINE_TOKEN": tenant.token}
    team = cli("teams", "create", "maybe", "-o", "json", **env).json
    code, output = run_in_terminal(cli, "teams", "delete", team["id"], answers="n\n", **env)
    assert code == 2 and "Delete team" in output and "CONFIRMATION_REQUIRED" in output
    assert cli("teams", "get", team["id"], **env).code == 0
    code, output = run_in_terminal(cli, "teams", "delete", team["id"], answers="y\n", **env)
    assert code == 0, output
    assert cli("teams", "get", team["id"], **env).code == 4


def test_serve_runs_the_server_until_sigterm(tmp_path):
    import signal
    import time

    import httpx

    port = live.free_port()
    cli = Cli(tmp_path / "config")
    proc = cli.popen("serve", "--port", str(port), "--data-dir", str(tmp_path / "data"),
                     "--no-worker")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.1)
        assert health.json() == {"status": "ok"}
        assert (tmp_path / "data" / "redline.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 143
    assert "Error [" not in stderr  # a server stopped as asked is not a failure
