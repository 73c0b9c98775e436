"""Issue 23: the CLI and SDK a CI engineer reaches for, through the real clients against the
session's server: webhooks, artifacts, `db`, Playwright attachments, CI metadata, the project
a key implies, tables, summaries, suggestions, sign-in."""

from __future__ import annotations

import json
import sqlite3
import struct
import tarfile
import zlib
from pathlib import Path

import pytest

from tests.clients.conftest import Cli, run_in_terminal
from tests.clients.reports import junit
from tests.support import live


def png_bytes() -> bytes:
    """A real 1x1 PNG (the server reads the format from the bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


@pytest.fixture
def tenant_env(server):
    tenant = live.make_tenant(server)
    return tenant, {"REDLINE_API_KEY": tenant.key}


def _import_run(cli: Cli, env: dict, tmp_path: Path, outcomes=None) -> dict:
    report = tmp_path / "junit.xml"
    report.write_text(junit(outcomes or {"test_one": "passed", "test_two": "failed"}))
    result = cli("upload", str(report), "-o", "json", **env)
    assert result.code == 0, result
    return result.json


# -- webhooks -------------------------------------------------------------------------------

def test_webhooks_from_create_to_delete(start_server, stub, tmp_path):
    server = start_server(webhook_allow_nets="127.0.0.0/8", rate_limit_enabled=False)
    tenant = live.make_tenant(server)
    cli = Cli(tmp_path / "config", server.url)
    env = {"REDLINE_TOKEN": tenant.token, "REDLINE_PROJECT": tenant.project_id}  # an admin
    created = cli("webhooks", "create", stub.url + "/hook", "-e",
                  "run.completed,run.failed", "--header", "X-Team: qa", "-o", "json", **env)
    assert created.code == 0, created
    hook = created.json
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["run.completed",
                                                                     "run.failed"]
    listed = cli("webhooks", "list", "-o", "json", **env).json
    assert [h["id"] for h in listed["data"]] == [hook["id"]]
    piped = cli("webhooks", "list", **env)
    assert piped.stdout.split("\t")[0] == hook["id"]  # TSV without a header when piped
    updated = cli("webhooks", "update", hook["id"], "--inactive", "-o", "json", **env)
    assert updated.code == 0 and updated.json["isActive"] is False
    pinged = cli("webhooks", "ping", hook["id"], "-o", "json", **env)
    assert pinged.code == 0, pinged
    delivery = pinged.json
    deliveries = cli("webhooks", "deliveries", hook["id"], "-o", "json", **env).json
    assert delivery["id"] in [d["id"] for d in deliveries["data"]]
    again = cli("webhooks", "redeliver", hook["id"], delivery["id"], "-o", "json", **env)
    assert again.code == 0 and again.json["id"] == delivery["id"], again
    assert cli("webhooks", "delete", hook["id"], "--yes", "-o", "json", **env).code == 0
    missing = cli("webhooks", "get", hook["id"], "-o", "json", **env)
    assert missing.code == 4 and missing.envelope["error"]["code"] == "NOT_FOUND"
    bad = cli("webhooks", "create", "https://x.example.com", "-e", "run.exploded", "-o",
              "json", **env)
    assert bad.code == 5 and bad.envelope["error"]["details"]["field"] == "--event"


# -- artifacts ------------------------------------------------------------------------------

def test_artifacts_upload_by_id_and_by_file_and_title_list_download_delete(
        cli, tenant_env, tmp_path):
    _tenant, env = tenant_env
    run = _import_run(cli, env, tmp_path)
    tests = cli("tests", "list", "--run", run["id"], "-o", "json", **env).json["data"]
    failed = next(t for t in tests if t["status"] == "failed")
    shot = tmp_path / "failure.png"
    shot.write_bytes(png_bytes())
    by_id = cli("artifacts", "upload", str(shot), "--run", run["id"], "--test", failed["id"],
                "-o", "json", **env)
    assert by_id.code == 0, by_id
    assert by_id.json["testId"] == failed["id"] and by_id.json["type"] == "screenshot"
    by_name = cli("artifacts", "upload", str(shot), "--run", run["id"], "--test-file",
                  failed["filePath"], "--test-title", failed["fullTitle"], "-o", "json", **env)
    assert by_name.code == 0, by_name
    assert by_name.json["testId"] == failed["id"]
    nowhere = cli("artifacts", "upload", str(shot), "--run", run["id"], "--test-file",
                  failed["filePath"], "--test-title", "no such test", "-o", "json", **env)
    assert nowhere.code == 4 and nowhere.envelope["error"]["code"] == "NOT_FOUND"
    unsaid = cli("artifacts", "upload", str(shot), "--run", run["id"], "-o", "json", **env)
    assert unsaid.code == 5 and unsaid.envelope["error"]["details"]["field"] == "--test"
    listed = cli("artifacts", "list", "--run", run["id"], "-o", "json", **env).json["data"]
    assert {a["id"] for a in listed} == {by_id.json["id"], by_name.json["id"]}
    target = tmp_path / "down.png"
    down = cli("artifacts", "download", by_id.json["id"], "--dest", str(target), **env)
    assert down.code == 0, down
    assert target.read_bytes() == png_bytes()
    assert cli("artifacts", "delete", by_id.json["id"], "--yes", **env).code == 0
    gone = cli("artifacts", "get", by_id.json["id"], "-o", "json", **env)
    assert gone.code == 4


def test_sdk_artifact_upload_takes_the_test_explicitly(server, tenant_env, tmp_path):
    from redline.sdk import Client
    from redline.sdk.exceptions import NotFoundError

    tenant, _ = tenant_env
    report = tmp_path / "junit.xml"
    report.write_text(junit({"test_one": "failed"}))
    with Client(server.url, api_key=tenant.key, from_env=False) as client:
        run = client.runs.import_report(report)
        with pytest.raises(TypeError):
            client.artifacts.upload(png_bytes(), type="screenshot", run_id=run.id,
                                    filename="a.png")  # type: ignore[call-arg]
        test = client.tests.find(run.id, file_path="tests/test_app.py",
                                 full_title=client.tests.list(run_id=run.id).data[0].full_title)
        artifact = client.artifacts.upload(png_bytes(), type="screenshot", run_id=run.id,
                                           test_id=test.id, filename="a.png")
        assert artifact.test_id == test.id
        whole_run = client.artifacts.upload(png_bytes(), type="screenshot", run_id=run.id,
                                            test_id=None, filename="b.png")
        assert whole_run.test_id is None
        with pytest.raises(NotFoundError):
            client.tests.find(run.id, file_path="tests/test_app.py", full_title="nope")
        path = tmp_path / "copy.png"
        assert client.artifacts.download(artifact.id, path).id == artifact.id
        assert path.read_bytes() == png_bytes()


# -- db -------------------------------------------------------------------------------------

def test_db_migrate_status_and_an_online_backup_of_a_sqlite_data_dir(tmp_path):
    cli = Cli(tmp_path / "config")
    data = tmp_path / "data"
    migrated = cli("db", "migrate", "--data-dir", str(data), "-o", "json")
    assert migrated.code == 0, migrated
    assert migrated.json["upToDate"] is True and migrated.json["previousRevision"] is None
    (data / "blobs").mkdir()
    (data / "blobs" / "one.png").write_bytes(png_bytes())
    reader = sqlite3.connect(data / "redline.db")  # a live connection: the copy is online
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM users").fetchone()
    status = cli("db", "status", "--data-dir", str(data), "-o", "json")
    assert status.code == 0, status
    assert status.json["revision"] == status.json["headRevision"]
    assert status.json["rows"]["users"] == 0 and status.json["sizeBytes"] > 0
    text = cli("db", "status", "--data-dir", str(data))
    assert "revision:" in text.stdout and "users" in text.stdout
    archive = tmp_path / "backup.tar.gz"
    made = cli("db", "backup", str(archive), "--data-dir", str(data), "-o", "json")
    assert made.code == 0, made
    reader.close()
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        assert {"redline.db", "secret_key", "blobs/one.png"} <= names or \
            {"redline.db", "blobs/one.png"} <= names
        tar.extract("redline.db", tmp_path / "restored", filter="data")
    copy = sqlite3.connect(tmp_path / "restored" / "redline.db")
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert copy.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
    copy.close()
    only = cli("db", "backup", str(tmp_path / "copy.db"), "--data-dir", str(data))
    assert only.code == 0 and Path(only.stdout.strip()).name == "copy.db"
    postgres = cli("db", "backup", "--database-url", "postgresql+psycopg://u@127.0.0.1:9/x",
                   "-o", "json")
    assert postgres.code == 7 and postgres.envelope["error"]["code"] == "UNSUPPORTED"


# -- upload: Playwright attachments, CI metadata, summary ----------------------------------

def _playwright_with_attachments(tmp_path: Path) -> tuple[Path, str]:
    """The real Playwright fixture, with a screenshot on one result and a missing video."""
    from tests.clients.reports import PLAYWRIGHT_JSON

    report = json.loads(PLAYWRIGHT_JSON.read_text())
    shots = tmp_path / "test-results" / "sample-fails-chromium"
    shots.mkdir(parents=True)
    (shots / "test-failed-1.png").write_bytes(png_bytes())

    def first_spec(suite):
        return suite["specs"][0] if suite.get("specs") else first_spec(suite["suites"][0])

    spec = first_spec(report["suites"][0])
    spec["tests"][0]["results"][-1].setdefault("attachments", []).extend([
        {"name": "screenshot", "contentType": "image/png",
         "path": str(shots / "test-failed-1.png")},
        {"name": "video", "contentType": "video/webm", "path": str(shots / "gone.webm")}])
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    return path, spec["title"]


def test_upload_of_a_playwright_report_uploads_its_attachments_linked_to_their_tests(
        cli, tenant_env, tmp_path):
    _tenant, env = tenant_env
    report, title = _playwright_with_attachments(tmp_path)
    result = cli("upload", str(report), "-o", "json", **env)
    assert result.code == 0, result
    sent = result.json["attachments"]
    assert (sent["uploaded"], sent["unlinked"], sent["missing"], sent["failed"]) == (1, 0, 1, 0)
    artifact = sent["artifacts"][0]
    test = cli("tests", "get", artifact["testId"], "-o", "json", **env).json
    assert test["title"] == title and test["runId"] == result.json["id"]
    listed = cli("artifacts", "list", "--test", artifact["testId"], "-o", "json", **env).json
    assert [a["type"] for a in listed["data"]] == ["screenshot"]
    without = cli("upload", str(report), "--no-attachments", "-o", "json", **env)
    assert "attachments" not in without.json
    assert cli("artifacts", "list", "--run", without.json["id"], "-o", "json",
               **env).json["data"] == []
    code, screen = run_in_terminal(cli, "upload", str(report), **env)
    assert code == 0, screen
    assert "Attachments 1/1 [" in screen and "100%" in screen
    assert "Attachments: 1 uploaded, 1 not found" in screen


GITHUB_PR = {"GITHUB_ACTIONS": "true", "GITHUB_SHA": "a" * 40, "GITHUB_REF_NAME": "41/merge",
             "GITHUB_HEAD_REF": "feature/login", "GITHUB_RUN_ID": "901",
             "GITHUB_RUN_ATTEMPT": "2", "GITHUB_SERVER_URL": "https://github.com",
             "GITHUB_REPOSITORY": "acme/web", "GITHUB_WORKFLOW": "CI", "GITHUB_JOB": "e2e"}


@pytest.mark.parametrize(("ci_env", "expected"), [
    (GITHUB_PR, {"branch": "feature/login", "commitSha": "a" * 40, "ciProvider": "github",
                 "ciBuildId": "901-2", "source": "github_action", "runTitle": "CI / e2e",
                 "ciBuildUrl": "https://github.com/acme/web/actions/runs/901"}),
    ({"GITLAB_CI": "true", "CI_COMMIT_REF_NAME": "main", "CI_COMMIT_SHA": "b" * 40,
      "CI_PIPELINE_ID": "77", "CI_PIPELINE_URL": "https://gitlab.example.com/p/-/pipelines/77",
      "CI_COMMIT_MESSAGE": "Fix login"},
     {"branch": "main", "commitSha": "b" * 40, "ciProvider": "gitlab", "ciBuildId": "77",
      "commitMessage": "Fix login", "source": "cli"}),
    ({"CIRCLECI": "true", "CIRCLE_BRANCH": "dev", "CIRCLE_SHA1": "c" * 40,
      "CIRCLE_WORKFLOW_ID": "wf-1"}, {"branch": "dev", "ciProvider": "circleci",
                                       "ciBuildId": "wf-1"}),
    ({"JENKINS_URL": "https://ci.example.com/", "GIT_BRANCH": "origin/release",
      "GIT_COMMIT": "d" * 40, "BUILD_TAG": "jenkins-web-12"},
     {"branch": "release", "ciProvider": "jenkins", "ciBuildId": "jenkins-web-12"}),
    ({"BUILDKITE": "true", "BUILDKITE_BRANCH": "bk", "BUILDKITE_COMMIT": "e" * 40,
      "BUILDKITE_BUILD_ID": "bk-9"}, {"branch": "bk", "ciProvider": "buildkite"}),
    ({"TF_BUILD": "True", "BUILD_SOURCEBRANCH": "refs/heads/az", "BUILD_SOURCEVERSION": "f" * 40,
      "BUILD_BUILDID": "5", "SYSTEM_COLLECTIONURI": "https://dev.azure.com/acme/",
      "SYSTEM_TEAMPROJECT": "web"},
     {"branch": "az", "ciProvider": "azure", "ciBuildId": "5",
      "ciBuildUrl": "https://dev.azure.com/acme/web/_build/results?buildId=5"}),
])
def test_upload_detects_the_ci_provider(cli, tenant_env, tmp_path, ci_env, expected):
    _tenant, env = tenant_env
    run = _import_run(cli, {**env, **ci_env}, tmp_path)
    assert {k: run.get(k) for k in expected} == expected


def test_flags_override_detection_and_git_fills_in_outside_ci(cli, tenant_env, tmp_path):
    import subprocess

    _tenant, env = tenant_env
    report = tmp_path / "junit.xml"
    report.write_text(junit({"test_one": "passed"}))
    flagged = cli("upload", str(report), "--branch", "mine", "--ci-build-id", "b1",
                  "--title", "nightly", "-o", "json", **env, **GITHUB_PR)
    assert (flagged.json["branch"], flagged.json["ciBuildId"], flagged.json["runTitle"],
            flagged.json["commitSha"]) == ("mine", "b1", "nightly", "a" * 40)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    git = ["git", "-C", str(checkout), "-c", "user.name=Ada", "-c", "user.email=a@x.io"]
    subprocess.run([*git, "init", "-q", "-b", "topic"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "Add login"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    import subprocess as sp

    proc = sp.run([*cli.command(), "upload", str(report), "-o", "json"], capture_output=True,
                  text=True, env=cli.env(**env), cwd=checkout, check=False)
    body = json.loads(proc.stdout)
    assert (body["branch"], body["commitSha"], body["commitMessage"].strip(),
            body["commitAuthor"], body["source"]) == ("topic", sha, "Add login", "Ada", "cli")


def test_upload_prints_a_short_summary_with_the_dashboard_url(cli, tenant_env, tmp_path):
    _tenant, env = tenant_env
    report = tmp_path / "junit.xml"
    report.write_text(junit({"test_one": "passed", "test_two": "failed"}))
    result = cli("upload", str(report), "--branch", "main", "--no-detect", **env)
    assert result.code == 0, result
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    assert "2 tests: 1 passed, 1 failed" in lines[0] and "on main" in lines[0]
    assert lines[1].startswith(f"{cli.url}/runs/run_")


def test_several_report_files_a_parse_error_names_the_file(cli, tenant_env, tmp_path):
    _tenant, env = tenant_env
    good = tmp_path / "good.xml"
    good.write_text(junit({"test_one": "passed"}))
    bad = tmp_path / "broken.xml"
    bad.write_text(junit({"test_two": "passed"})[:-40])
    result = cli("upload", str(good), str(bad), "-o", "json", **env)
    assert result.code == 5, result
    error = result.envelope["error"]
    assert "broken.xml" in error["message"] and error["details"]["file"] == "broken.xml"


# -- who and where --------------------------------------------------------------------------

def test_a_project_api_key_decides_the_project_over_the_profile_default(server, tmp_path):
    mine, other = live.make_tenant(server), live.make_tenant(server)
    cli = Cli(tmp_path / "config", server.url)
    login = cli("login", "--email", other.email, "--password", live.PASSWORD,
                "--default-project", other.project_id)
    assert login.code == 0, login
    listed = cli("runs", "list", "-o", "json", REDLINE_API_KEY=mine.key)
    assert listed.code == 0, listed
    assert cli("settings", "get", "-o", "json",
               REDLINE_API_KEY=mine.key).json["projectId"] == mine.project_id


def test_runs_list_with_several_projects_names_them_and_how_to_pick(server, tmp_path):
    tenant = live.make_tenant(server)
    with tenant.as_user() as user:
        second = user.post("/api/projects", json={"name": "second",
                                                  "teamId": tenant.team_id}).json()
    cli = Cli(tmp_path / "config", server.url)
    result = cli("runs", "list", "-o", "json", REDLINE_TOKEN=tenant.token)
    assert result.code == 5, result
    error = result.envelope["error"]
    assert tenant.project_id in error["message"] and second["id"] in error["message"]
    assert error["details"]["field"] == "--project" and "--project" in error["nextAction"]
    assert cli("runs", "list", "-p", second["id"], REDLINE_TOKEN=tenant.token).code == 0


def test_tables_have_headers_on_a_terminal_and_not_when_piped(cli, tenant_env, tmp_path):
    _tenant, env = tenant_env
    run = _import_run(cli, env, tmp_path)
    piped = cli("runs", "list", **env).stdout.splitlines()
    assert piped[0].split("\t")[0] == run["id"]
    _code, screen = run_in_terminal(cli, "runs", "list", **env)
    assert screen.splitlines()[0].split()[:4] == ["ID", "RUN", "STATUS", "VERDICT"]


def test_an_unknown_command_suggests_the_nearest(cli):
    result = cli("uplaod", "x.xml")
    assert result.code == 5
    assert "Did you mean 'upload'?" in result.stderr


def test_invitations_accept_signs_the_invitee_in(server, tmp_path):
    owner = live.make_tenant(server)
    with owner.as_user() as user:
        invite = user.post("/api/team-members", json={"teamId": owner.team_id,
                                                      "email": "new-invitee@example.com",
                                                      "role": "member"}).json()
    cli = Cli(tmp_path / "config", server.url)
    accepted = cli("invitations", "accept", invite["id"], "--token", invite["acceptToken"],
                   "--password", "a long password 1")
    assert accepted.code == 0, accepted
    whoami = cli("whoami", "-o", "json")
    assert whoami.code == 0, whoami
    assert whoami.json["email"] == "new-invitee@example.com"
    saved = json.loads((tmp_path / "config" / "profiles.json").read_text())
    assert saved["profiles"]["default"]["team"] == owner.team_id


def test_sdk_login_signs_in_the_client_it_was_called_on(server):
    import asyncio

    from redline.sdk import AsyncClient, Client

    tenant = live.make_tenant(server)
    with Client(server.url, from_env=False) as client:
        client.auth.login(tenant.email, live.PASSWORD)
        assert client.me().email == tenant.email

    async def go():
        async with AsyncClient(server.url, from_env=False) as client:
            await client.auth.login(tenant.email, live.PASSWORD)
            return (await client.me()).email

    assert asyncio.run(go()) == tenant.email
