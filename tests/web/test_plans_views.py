"""The dashboard's executed runs (issue 25) on a real server, through its forms: the Plans
page and its 9 statuses, Run now (source `portal`) for members and up, plan create and edit
for admins with a stale edit refused, a run page's execution section and Cancel, and the
team's execution budget and usage. Each refusal stores nothing."""

from __future__ import annotations

import html
import re
import secrets

from tests.executions.conftest import make_plan, trigger
from tests.support import live
from tests.web.conftest import Browser, csrf_of, import_report
from tests.web.test_views import counted_queries


def member(tenant, browser_for, role: str) -> Browser:
    """A new member of the tenant's team with `role`, signed in to the dashboard."""
    name = f"{role}{secrets.token_hex(3)}"
    live.add_member(tenant, role, name=name)
    client = browser_for()
    assert client.sign_in(f"{name}@example.com").status_code == 303
    return client


def runs_of(tenant, plan_id: str) -> list[dict]:
    with tenant.as_user() as api:
        return api.get("/api/runs", params={"projectId": tenant.project_id,
                                       "planId": plan_id}).json()["data"]


def form_of(page_html: str, action: str) -> dict[str, str]:
    """The fields of the form posting to `action`, as a browser would send them unchanged."""
    start = page_html.index(f'action="{action}"')
    body = page_html[start:page_html.index("</form>", start)]
    fields: dict[str, str] = {}
    for tag in re.findall(r"<(?:input|textarea|select)[^>]*>", body):
        name = re.search(r'name="([^"]+)"', tag)
        if not name:
            continue
        kind = re.search(r'type="([^"]+)"', tag)
        kind = kind.group(1) if kind else ""
        if kind in ("radio", "checkbox"):
            if " checked" in tag:
                fields[name.group(1)] = re.search(r'value="([^"]*)"', tag).group(1) \
                    if 'value="' in tag else "on"
            continue
        if tag.startswith("<textarea"):
            text = body[body.index(tag) + len(tag):]
            fields[name.group(1)] = html.unescape(text[:text.index("</textarea>")])
        elif tag.startswith("<select"):
            options = body[body.index(tag):]
            chosen = re.search(r'<option value="([^"]*)" selected', options)
            fields[name.group(1)] = chosen.group(1) if chosen else ""
        else:
            value = re.search(r'value="([^"]*)"', tag)
            fields[name.group(1)] = html.unescape(value.group(1)) if value else ""
    return fields


# -- the Plans page -----------------------------------------------------------------------------

def test_the_plans_page_shows_each_plan_with_status_last_run_and_schedule(tenant, owner):
    with tenant.as_user() as api:
        nightly = make_plan(api, tenant.project_id, name="nightly", schedule="0 3 * * *",
                            reportPaths=["report.xml"])
        draft = api.post("/api/plans", json={"projectId": tenant.project_id,
                                             "name": "not written yet"}).json()
        queued = trigger(api, nightly["id"], branch="main")
    page = owner.get(f"/projects/{tenant.project_id}/plans")
    assert page.status_code == 200
    rows = {plan_id: re.search(rf'data-plan="{plan_id}">(.*?)</tr>', page.text, re.DOTALL).group(1)
            for plan_id in (nightly["id"], draft["id"])}
    assert 'badge s-queued">queued' in rows[nightly["id"]]
    assert f'href="/runs/{queued["id"]}"' in rows[nightly["id"]]
    assert "<code>0 3 * * *</code>" in rows[nightly["id"]]
    assert "Run now" in rows[nightly["id"]]
    assert 'badge s-draft">draft' in rows[draft["id"]]
    assert "never run" in rows[draft["id"]] and "Run now" not in rows[draft["id"]]
    assert 'href="/projects/' + tenant.project_id + '/plans/new"' in page.text
    # the legend names all 9 statuses of the specification
    for status in ("draft", "ready", "queued", "running", "passed", "failed", "blocked",
                   "cancelled", "unknown"):
        assert f'badge s-{status}">{status}' in page.text
    assert 'aria-current="page">Plans</a>' in page.text


def test_the_plans_page_reads_a_fixed_number_of_queries_whatever_the_number_of_plans(
        tenant, owner):
    def page_queries() -> int:
        with counted_queries(tenant.server.engine) as statements:
            assert owner.get(f"/projects/{tenant.project_id}/plans").status_code == 200
        return len(statements)

    with tenant.as_user() as api:
        for n in range(2):
            trigger(api, make_plan(api, tenant.project_id, name=f"plan {n}")["id"])
        few = page_queries()
        for n in range(2, 12):
            trigger(api, make_plan(api, tenant.project_id, name=f"plan {n}")["id"])
    many = page_queries()
    assert many == few, (few, many)
    assert owner.get(f"/projects/{tenant.project_id}/plans").text.count('badge s-queued">') \
        == 2 * 12 + 1  # each plan queued, and so is its last run; and the legend's


def test_a_member_runs_a_plan_now_and_a_second_run_is_a_conflict(tenant, browser_for):
    with tenant.as_user() as api:
        plan = make_plan(api, tenant.project_id, name="unit", reportPaths=["report.xml"])
    client = member(tenant, browser_for, "member")
    page = f"/plans/{plan['id']}"
    started = client.post_form(f"/plans/{plan['id']}/runs", {"branch": "feature/x"},
                               csrf_from=page)
    assert started.status_code == 303
    run_id = started.headers["location"].removeprefix("/runs/")
    (run,) = runs_of(tenant, plan["id"])
    assert (run["id"], run["status"], run["source"], run["branch"]) == \
        (run_id, "queued", "portal", "feature/x")

    again = client.post_form(f"/plans/{plan['id']}/runs", {}, csrf_from=page)
    assert again.status_code == 409
    assert f'href="/runs/{run_id}">the run in flight</a>' in again.text
    assert len(runs_of(tenant, plan["id"])) == 1


def test_a_viewer_reads_plans_but_has_no_run_now_and_is_refused_when_posting(tenant,
                                                                             browser_for):
    with tenant.as_user() as api:
        plan = make_plan(api, tenant.project_id, name="unit")
    viewer = member(tenant, browser_for, "viewer")
    listing = viewer.get(f"/projects/{tenant.project_id}/plans")
    assert listing.status_code == 200 and "unit" in listing.text
    assert "Run now" not in listing.text and "New plan" not in listing.text
    page = viewer.get(f"/plans/{plan['id']}")
    assert "Run now" not in page.text and "Edit plan" not in page.text
    refused = viewer.post_form(f"/plans/{plan['id']}/runs", {"csrf": csrf_of(page.text)})
    assert refused.status_code == 403
    assert "AUTH_FORBIDDEN" in refused.text
    assert runs_of(tenant, plan["id"]) == []


def test_only_admins_create_and_edit_plans(tenant, browser_for):
    with tenant.as_user() as api:
        plan = make_plan(api, tenant.project_id, name="unit")
    client = member(tenant, browser_for, "member")
    assert client.get(f"/projects/{tenant.project_id}/plans/new").status_code == 403
    assert client.get(f"/plans/{plan['id']}/edit").status_code == 403
    csrf = csrf_of(client.get(f"/plans/{plan['id']}").text)
    refused = client.post_form(f"/plans/{plan['id']}/edit", {
        "csrf": csrf, "name": "renamed", "command": "false", "code_version": "1"})
    assert refused.status_code == 403
    created = client.post_form(f"/projects/{tenant.project_id}/plans", {
        "csrf": csrf, "name": "mine", "command": "true"})
    assert created.status_code == 403
    with tenant.as_user() as api:
        assert api.get(f"/api/plans/{plan['id']}").json()["name"] == "unit"
        assert api.get("/api/plans", params={"projectId": tenant.project_id}).json()[
            "total"] == 1


# -- create and edit ----------------------------------------------------------------------------

def test_an_admin_creates_a_plan_and_edits_it_keeping_its_secret(tenant, owner):
    form = form_of(owner.get(f"/projects/{tenant.project_id}/plans/new").text,
                   f"/projects/{tenant.project_id}/plans")
    form.update(name="e2e", command="python\n-m\npytest\n--junitxml=report.xml\n",
                source_kind="git", source_git="https://example.com/acme/app.git",
                source_ref="main", env="MODE=ci\nEMPTY=", secret_env="API_TOKEN=s3cr3t-value",
                report_paths="report.xml\nmore/*.xml", schedule="*/30 * * * *",
                timeout_seconds="600")
    created = owner.post_form(f"/projects/{tenant.project_id}/plans", form)
    assert created.status_code == 303, created.text
    plan_id = created.headers["location"].split("?")[0].removeprefix("/plans/")
    with tenant.as_user() as api:
        plan = api.get(f"/api/plans/{plan_id}").json()
    assert plan["command"] == ["python", "-m", "pytest", "--junitxml=report.xml"]
    assert plan["source"] == {"git": "https://example.com/acme/app.git", "ref": "main"}
    assert plan["env"] == {"MODE": {"value": "ci", "secret": False},
                           "EMPTY": {"value": "", "secret": False},
                           "API_TOKEN": {"value": None, "secret": True}}
    assert (plan["reportPaths"], plan["schedule"], plan["timeoutSeconds"],
            plan["codeVersion"], plan["status"]) == \
        (["report.xml", "more/*.xml"], "*/30 * * * *", 600, 1, "ready")

    edit = owner.get(f"/plans/{plan_id}/edit").text
    assert "s3cr3t-value" not in edit  # a secret is never sent back
    form = form_of(edit, f"/plans/{plan_id}/edit")
    assert form["secret_env"] == "API_TOKEN" and form["code_version"] == "1"
    form["command"] = "python\n-m\npytest\n-x\n--junitxml=report.xml"
    saved = owner.post_form(f"/plans/{plan_id}/edit", form)
    assert saved.status_code == 303, saved.text
    with tenant.as_user() as api:
        plan = api.get(f"/api/plans/{plan_id}").json()
    assert plan["command"][3] == "-x" and plan["codeVersion"] == 2
    assert plan["env"]["API_TOKEN"] == {"value": None, "secret": True}  # kept


def test_an_edit_keeps_arguments_and_values_that_hold_line_breaks(tenant, owner):
    """A `python -c` script is one argument: the form shows such a command (and such env)
    as JSON, so saving it back changes nothing but what was edited."""
    script = "import sys\nprint('two lines')\n"
    with tenant.as_user() as api:
        plan = make_plan(api, tenant.project_id, name="script",
                         command=["python", "-c", script, " spaced "],
                         env={"CERT": "line 1\nline 2", "MODE": " ci "})
    form = form_of(owner.get(f"/plans/{plan['id']}/edit").text, f"/plans/{plan['id']}/edit")
    assert form["command"].lstrip().startswith("[") and form["env"].lstrip().startswith("{")
    form["name"] = "script, renamed"
    assert owner.post_form(f"/plans/{plan['id']}/edit", form).status_code == 303
    with tenant.as_user() as api:
        saved = api.get(f"/api/plans/{plan['id']}").json()
    assert saved["name"] == "script, renamed"
    assert saved["command"] == ["python", "-c", script, " spaced "]
    assert saved["env"] == {"CERT": {"value": "line 1\nline 2", "secret": False},
                            "MODE": {"value": " ci ", "secret": False}}
    assert saved["codeVersion"] == 1  # what it runs did not change

    new = f"/projects/{tenant.project_id}/plans"
    form = form_of(owner.get(f"{new}/new").text, new)
    form.update(name="typed as JSON", command='["python", "-c", "print(1)\\nprint(2)"]')
    created = owner.post_form(new, form)
    assert created.status_code == 303, created.text
    plan_id = created.headers["location"].split("?")[0].removeprefix("/plans/")
    with tenant.as_user() as api:
        assert api.get(f"/api/plans/{plan_id}").json()["command"] == [
            "python", "-c", "print(1)\nprint(2)"]
    refused = owner.post_form(new, {**form, "command": '["python", 3]'})
    assert refused.status_code == 400 and "list of strings" in refused.text


def test_a_stale_edit_is_refused_with_the_specifications_message_and_stores_nothing(tenant,
                                                                                   owner):
    with tenant.as_user() as api:
        plan = make_plan(api, tenant.project_id, name="unit", command=["true"])
    form = form_of(owner.get(f"/plans/{plan['id']}/edit").text, f"/plans/{plan['id']}/edit")
    assert form["code_version"] == "1"
    # someone else changes what the plan runs meanwhile (codeVersion 2)
    with tenant.as_user() as api:
        changed = api.patch(f"/api/plans/{plan['id']}", json={"command": ["false"]},
                            headers={"If-Match": "1"})
        assert changed.json()["codeVersion"] == 2
    form.update(name="renamed", command="echo\nmine")
    stale = owner.post_form(f"/plans/{plan['id']}/edit", form)
    assert stale.status_code == 412
    text = html.unescape(stale.text)
    assert "Not saved: the plan changed since you loaded this form" in text
    assert "(newer codeVersion: it is at 2, your form was loaded at 1)" in text
    assert "Re-load the plan to get its current version, reapply your change" in text
    assert f'href="/plans/{plan["id"]}/edit">Re-load the plan</a>' in stale.text
    assert "PRECONDITION_FAILED" in stale.text
    assert 'value="renamed"' in stale.text  # what was typed is still there to reapply
    with tenant.as_user() as api:
        now = api.get(f"/api/plans/{plan['id']}").json()
    assert (now["name"], now["command"], now["codeVersion"]) == ("unit", ["false"], 2)
    # re-loaded, the same change saves
    form = form_of(owner.get(f"/plans/{plan['id']}/edit").text, f"/plans/{plan['id']}/edit")
    assert form["code_version"] == "2"
    form.update(name="renamed")
    assert owner.post_form(f"/plans/{plan['id']}/edit", form).status_code == 303


def test_a_bad_plan_form_says_what_to_fix_and_stores_nothing(tenant, owner):
    new = f"/projects/{tenant.project_id}/plans"
    form = form_of(owner.get(f"{new}/new").text, new)
    for change, expected in (
            ({"name": "x", "schedule": "every day"}, "schedule must be a 5-field cron"),
            ({"name": "x", "env": "JUST_A_NAME"},
             "Env line 1 ('JUST_A_NAME'): write NAME=value"),
            ({"name": "x", "env": "1BAD=v"}, "Env names are letters"),
            ({"name": "x", "timeout_seconds": "99999"}, "timeoutSeconds"),
            ({"name": "x", "timeout_seconds": "ten"}, "must be a whole number of seconds"),
            ({"name": "x", "source_kind": "git", "source_git": " "},
             "A git source needs its repository URL or path"),
            ({"name": "", "command": "true"}, "name")):
        refused = owner.post_form(new, {**form, **change})
        assert refused.status_code == 400, (change, refused.text)
        assert "Not saved:" in refused.text and expected in html.unescape(refused.text), change
    with tenant.as_user() as api:
        assert api.get("/api/plans", params={"projectId": tenant.project_id}).json()[
            "total"] == 0


# -- a run's execution section ----------------------------------------------------------------

def test_an_executed_runs_page_has_its_execution_and_a_cancel_for_members(tenant, owner,
                                                                          browser_for):
    with tenant.as_user() as api:
        plan = make_plan(api, tenant.project_id, name="unit")
        run = trigger(api, plan["id"])
    page = owner.get(f"/runs/{run['id']}")
    assert 'id="execution"' in page.text
    assert f'href="/plans/{plan["id"]}">unit</a>' in page.text
    assert 'badge s-queued">queued' in page.text and "Cancel run" in page.text
    assert '<script src="/static/execution.js' in page.text

    log = owner.get(f"/runs/{run['id']}/log", params={"offset": 0})
    assert log.status_code == 200
    chunk = log.json()
    assert (chunk["text"], chunk["nextOffset"], chunk["complete"], chunk["status"],
            chunk["live"]) == ("", 0, False, "queued", True)
    assert "Cancel run" in chunk["factsHtml"]

    viewer = member(tenant, browser_for, "viewer")
    seen = viewer.get(f"/runs/{run['id']}")
    assert 'id="execution"' in seen.text and "Cancel run" not in seen.text
    assert "Cancel run" not in viewer.get(f"/runs/{run['id']}/log").json()["factsHtml"]
    refused = viewer.post_form(f"/runs/{run['id']}/cancel", {"csrf": csrf_of(seen.text)})
    assert refused.status_code == 403
    assert runs_of(tenant, plan["id"])[0]["status"] == "queued"

    no_token = owner.post_form(f"/runs/{run['id']}/cancel", {})
    assert no_token.status_code == 403  # the CSRF token is required
    cancelled = owner.post_form(f"/runs/{run['id']}/cancel", {}, csrf_from=f"/runs/{run['id']}")
    assert cancelled.status_code == 303
    assert cancelled.headers["location"] == f"/runs/{run['id']}#execution"
    page = owner.get(f"/runs/{run['id']}")
    assert 'badge s-cancelled">cancelled' in page.text and "Cancel run" not in page.text
    assert "Cancel reason" in page.text
    assert owner.get(f"/runs/{run['id']}/log").json()["complete"] is True


def test_a_reported_run_has_no_execution_section(tenant, owner):
    run = import_report(tenant)
    page = owner.get(f"/runs/{run['id']}")
    assert page.status_code == 200 and 'id="execution"' not in page.text


# -- the team's budget and usage --------------------------------------------------------------

def test_team_settings_show_usage_and_admins_set_the_budget(tenant, owner, browser_for):
    page = owner.get(f"/teams/{tenant.team_id}/usage")
    assert page.status_code == 200
    assert re.search(r'id="usage-budget">no limit<', page.text)
    saved = owner.post_form(f"/teams/{tenant.team_id}/budget", {"hours": "2.5"},
                            csrf_from=f"/teams/{tenant.team_id}/usage")
    assert saved.status_code == 303
    with tenant.as_user() as api:
        assert api.get(f"/api/teams/{tenant.team_id}/usage").json()["budgetSeconds"] == 9000
    page = owner.get(f"/teams/{tenant.team_id}/usage")
    assert re.search(r'id="usage-budget">2 h 30 m<', page.text)
    assert re.search(r'id="usage-left">2 h 30 m<', page.text)
    assert 'value="2.5"' in page.text

    bad = owner.post_form(f"/teams/{tenant.team_id}/budget", {"hours": "-1"},
                          csrf_from=f"/teams/{tenant.team_id}/usage")
    assert bad.status_code == 400 and "runner-hours" in bad.text

    viewer = member(tenant, browser_for, "member")
    seen = viewer.get(f"/teams/{tenant.team_id}/usage")
    assert seen.status_code == 200 and 'id="usage-used"' in seen.text
    assert 'name="hours"' not in seen.text and "A team admin or owner changes it" in seen.text
    refused = viewer.post_form(f"/teams/{tenant.team_id}/budget",
                               {"hours": "", "csrf": csrf_of(seen.text)})
    assert refused.status_code == 403
    with tenant.as_user() as api:
        assert api.get(f"/api/teams/{tenant.team_id}/usage").json()["budgetSeconds"] == 9000


def test_run_now_with_the_budget_spent_says_how_to_raise_it(tenant, owner):
    with tenant.as_user() as api:
        plan = make_plan(api, tenant.project_id, name="unit")
        assert api.patch(f"/api/teams/{tenant.team_id}",
                         json={"executionBudgetSeconds": 0}).status_code == 200
    refused = owner.post_form(f"/plans/{plan['id']}/runs", {}, csrf_from=f"/plans/{plan['id']}")
    assert refused.status_code == 402
    assert "INSUFFICIENT_CREDITS" in refused.text
    assert f'href="/teams/{tenant.team_id}/usage">the team settings</a>' in refused.text
    assert runs_of(tenant, plan["id"]) == []
