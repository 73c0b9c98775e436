"""The dashboard's executed runs (issue 25): a project's plans, "Run now", plan create and edit
for admins, the execution section of a run page (live log, exit code, reasons, runner, time
used, Cancel), and a team's execution budget and usage.

The views call the same services as `/api/plans`, `/api/runs/{id}/cancel`,
`/api/runs/{id}/log` and `/api/teams/{id}/usage`, so the rules (roles, CONFLICT,
PRECONDITION_FAILED, INSUFFICIENT_CREDITS) are the API's. Controls are shown only to roles
the services allow (`can`), and the services check again on submit. The live log is
`static/execution.js` polling this module's `/runs/{id}/log` with the session cookie: no
framework, and the page reads without it (the log as it was when the page was rendered).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError as PydanticValidationError

from redline.server.auth import require_project
from redline.server.deps import get_db
from redline.server.executions import schemas
from redline.server.executions import service as executions
from redline.server.http_errors import ApiError, validation_details
from redline.server.kit.clock import parse_iso, utcnow
from redline.server.runs import service as runs
from redline.server.web import views
from redline.server.web.core import Redirect, Web, can, env, url, view

router = APIRouter(include_in_schema=False, dependencies=[Depends(get_db)])

Csrf = Annotated[str, Form()]
Line = Annotated[str, Form(max_length=4096)]
Lines = Annotated[str, Form(max_length=65_536)]
Number = Annotated[str, Form(max_length=12)]

#: the specification's test status: a plan is one of these (reference, "Test status")
PLAN_STATUSES = ("draft", "ready", "queued", "running", "passed", "failed", "blocked",
                 "cancelled", "unknown")
LIVE = ("queued", "running")
PLANS_PER_PAGE = 100
PLAN_RUNS_SHOWN = 20
#: bytes of log the run page shows as rendered; the script reads the rest
LOG_FIRST_BYTES = 256 * 1024
#: a poll reads at most this much (the service's own cap is larger)
LOG_POLL_BYTES = 256 * 1024

# The templates ask the same role table as the services: `can(role, "executions:write")`.
env.globals["can"] = can


def _web(request: Request) -> Web:
    return request.state.web


# -- plans -------------------------------------------------------------------------------------

@router.get("/projects/{project_id}/plans")
@view()
def plans_page(request: Request, project_id: str,
               offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
               done: Annotated[str | None, Query(max_length=40)] = None):
    web = _web(request)
    views._layout(web, project_id)
    listing = executions.list_plans(web.conn, web.principal, project_id,
                                    web.page(PLANS_PER_PAGE, offset))
    base = f"/projects/{project_id}/plans"
    return web.render("plans.html", {
        "title": "Plans", "section": "plans", "plans": listing["data"],
        "total": listing["total"], "last_runs": executions.last_runs(
            web.conn, web.principal, project_id, [p["id"] for p in listing["data"]]),
        "statuses": PLAN_STATUSES, "done": done,
        "prev_url": url(base, offset=max(0, offset - PLANS_PER_PAGE)) if offset else None,
        "next_url": url(base, offset=offset + PLANS_PER_PAGE)
        if offset + PLANS_PER_PAGE < listing["total"] else None})


def _plan_context(web: Web, plan: dict, problem: dict | None = None,
                  done: str | None = None) -> dict:
    listing = runs.list_runs(web.conn, web.principal, plan["projectId"], None, None,
                             web.page(PLAN_RUNS_SHOWN), plan_id=plan["id"])
    return {"title": plan["name"], "section": "plans", "plan": plan,
            "plan_runs": listing["data"], "plan_runs_total": listing["total"],
            "problem": problem, "done": done}


@router.get("/plans/{plan_id}")
@view()
def plan_page(request: Request, plan_id: str,
              done: Annotated[str | None, Query(max_length=40)] = None):
    web = _web(request)
    plan = executions.get_plan(web.conn, web.principal, plan_id)
    views._layout(web, plan["projectId"])
    return web.render("plan.html", _plan_context(web, plan, done=done))


@router.post("/plans/{plan_id}/runs")
@view(write=True)
def run_now(request: Request, plan_id: str, csrf: Csrf = "",
            branch: Annotated[str, Form(max_length=255)] = ""):
    """Run now (source `portal`). A run in flight or a spent budget answers on the plan's
    page, with the run in flight linked; nothing is stored."""
    web = _web(request)
    body = schemas.RunTrigger(branch=branch.strip() or None, source="portal")
    try:
        run = executions.trigger(web.conn, web.principal, plan_id, body, web.settings)
    except ApiError as exc:
        if exc.code not in ("CONFLICT", "INSUFFICIENT_CREDITS"):
            raise
        plan = executions.get_plan(web.conn, web.principal, plan_id)
        views._layout(web, plan["projectId"])
        problem = {"code": exc.code, "message": exc.message,
                   "run_id": (exc.details or {}).get("runId")}
        return web.render("plan.html", _plan_context(web, plan, problem), status=exc.status)
    raise Redirect(f"/runs/{run['id']}")


# -- plan create and edit (admins) --------------------------------------------------------------

def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _env_lines(text: str, secret: bool, field: str) -> dict[str, Any]:
    """`NAME=value` a line (the value as typed, spaces kept), or, for the plain box, a JSON
    object (values with line breaks); in the secret box a bare `NAME` keeps the stored
    secret."""
    if not secret and text.strip().startswith("{"):
        try:
            values = json.loads(text)
        except ValueError as exc:
            raise ApiError("VALIDATION_ERROR", f"The env is not a valid JSON object: {exc}",
                           {"field": field, "reason": "invalid"}) from None
        if not isinstance(values, dict) or not all(isinstance(v, str)
                                                   for v in values.values()):
            raise ApiError("VALIDATION_ERROR", 'A JSON env is an object of strings, e.g. '
                           '{"MODE": "ci"}', {"field": field, "reason": "invalid"})
        return values
    found: dict[str, Any] = {}
    lines = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    for number, line in enumerate(lines, 1):
        name, equals, value = line.partition("=")
        name = name.strip()
        if not equals and not secret:
            raise ApiError("VALIDATION_ERROR", f"Env line {number} ('{name}'): write "
                           "NAME=value", {"field": field, "reason": "invalid"})
        if secret:
            found[name] = {"value": value if equals else None, "secret": True}
        else:
            found[name] = value
    return found


def _command(text: str) -> list[str]:
    """argv from the form: one argument a line, or a JSON list of strings (for arguments that
    hold a line break or edge spaces, e.g. `python -c` with a script)."""
    if text.strip().startswith("["):
        try:
            argv = json.loads(text)
        except ValueError as exc:
            raise ApiError("VALIDATION_ERROR", f"The command is not a valid JSON list: {exc}",
                           {"field": "command", "reason": "invalid"}) from None
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise ApiError("VALIDATION_ERROR", "A JSON command is a list of strings, e.g. "
                           '["python", "-m", "pytest"]', {"field": "command",
                                                          "reason": "invalid"})
        return argv
    return _lines(text)


def _command_text(argv: list[str]) -> str:
    """The command as the form shows it: a line per argument when each reads back the same,
    else the JSON list (so that saving the form never splits or trims an argument)."""
    if all(a and a == a.strip() and "\n" not in a and "\r" not in a for a in argv) \
            and not (argv and argv[0].startswith("[")):
        return "\n".join(argv)
    return json.dumps(argv, indent=1)


def _env_text(values: dict[str, str]) -> str:
    """Plain env as the form shows it: `NAME=value` lines, or the JSON object when a value
    holds a line break (so that saving the form never splits a value)."""
    if any("\n" in v or "\r" in v for v in values.values()):
        return json.dumps(values, indent=1)
    return "\n".join(f"{name}={value}" for name, value in values.items())


def _plan_fields(form: dict[str, str]) -> dict[str, Any]:
    """The API's plan body from the form's text fields (empty numbers: left out)."""
    kind = form["source_kind"]
    source: dict | None = None
    where = {"path": form["source_path"], "git": form["source_git"]}.get(kind)
    if where is not None and not where.strip():
        raise ApiError("VALIDATION_ERROR", f"A {kind} source needs its "
                       f"{'folder' if kind == 'path' else 'repository URL or path'}",
                       {"field": f"source.{kind}", "reason": "required"})
    if kind == "path":
        source = {"path": form["source_path"].strip()}
    elif kind == "git":
        source = {"git": form["source_git"].strip(), "ref": form["source_ref"].strip() or None}
    body: dict[str, Any] = {
        "name": form["name"].strip(), "source": source,
        "env": {**_env_lines(form["env"], False, "env"),
                **_env_lines(form["secret_env"], True, "secretEnv")},
        "reportPaths": _lines(form["report_paths"]),
        "schedule": form["schedule"].strip(), "sandbox": form["sandbox"],
        "network": form["network"] == "on"}
    command = _command(form["command"])
    if command:
        body["command"] = command
    for field, name in (("timeoutSeconds", "timeout_seconds"),
                        ("queueTimeoutSeconds", "queue_timeout_seconds"),
                        ("maxConcurrentRuns", "max_concurrent_runs")):
        text = form[name].strip()
        if text:
            if not text.isdigit():
                raise ApiError("VALIDATION_ERROR", f"Field '{field}' must be a whole number "
                               "of seconds", {"field": field, "reason": "invalid"})
            body[field] = int(text)
    return body


def _validated(model, body: dict):
    try:
        return model.model_validate(body)
    except PydanticValidationError as exc:
        message, details = validation_details([dict(e) for e in exc.errors()])
        raise ApiError("VALIDATION_ERROR", message, details) from None


def _form_of(plan: dict) -> dict[str, str]:
    """A stored plan as the form's text fields (secret values never leave the server)."""
    source = plan.get("source") or {}
    env = plan.get("env") or {}
    return {
        "name": plan["name"], "command": _command_text(plan.get("command") or []),
        "source_kind": "path" if "path" in source else "git" if "git" in source else "none",
        "source_path": source.get("path") or "", "source_git": source.get("git") or "",
        "source_ref": source.get("ref") or "",
        "env": _env_text({k: v["value"] or "" for k, v in env.items() if not v["secret"]}),
        "secret_env": "\n".join(k for k, v in env.items() if v["secret"]),
        "report_paths": "\n".join(plan.get("reportPaths") or []),
        "timeout_seconds": str(plan["timeoutSeconds"]),
        "queue_timeout_seconds": str(plan["queueTimeoutSeconds"]),
        "max_concurrent_runs": str(plan["maxConcurrentRuns"]),
        "schedule": plan.get("schedule") or "", "sandbox": plan["sandbox"],
        "network": "on" if plan["network"] else "",
        "code_version": str(plan["codeVersion"])}


NEW_PLAN = {"name": "", "command": "", "source_kind": "none", "source_path": "",
            "source_git": "", "source_ref": "", "env": "", "secret_env": "",
            "report_paths": "", "timeout_seconds": "1800", "queue_timeout_seconds": "3600",
            "max_concurrent_runs": "1", "schedule": "", "sandbox": "auto", "network": "",
            "code_version": ""}


def _require_admin(web: Web) -> None:
    layout = web.layout
    if not layout["can_admin"]:
        raise views._needs(layout["role"], "admin", "plans")


def _render_form(web: Web, form: dict[str, str], plan: dict | None,
                 error: dict | None = None, status: int = 200):
    return web.render("plan_form.html", {
        "title": f"Edit {plan['name']}" if plan else "New plan", "section": "plans",
        "form": form, "plan": plan, "error": error}, status=status)


def _form(name, command, source_kind, source_path, source_git, source_ref, env_text,
          secret_env, report_paths, timeout_seconds, queue_timeout_seconds,
          max_concurrent_runs, schedule, sandbox, network, code_version) -> dict[str, str]:
    return {"name": name, "command": command, "source_kind": source_kind,
            "source_path": source_path, "source_git": source_git, "source_ref": source_ref,
            "env": env_text, "secret_env": secret_env, "report_paths": report_paths,
            "timeout_seconds": timeout_seconds,
            "queue_timeout_seconds": queue_timeout_seconds,
            "max_concurrent_runs": max_concurrent_runs, "schedule": schedule,
            "sandbox": sandbox if sandbox in ("auto", "bubblewrap", "none") else "auto",
            "network": network, "code_version": code_version}


@router.get("/projects/{project_id}/plans/new")
@view()
def plan_new(request: Request, project_id: str):
    web = _web(request)
    views._layout(web, project_id)
    _require_admin(web)
    return _render_form(web, dict(NEW_PLAN), None)


@router.post("/projects/{project_id}/plans")
@view(write=True)
def plan_create(request: Request, project_id: str, csrf: Csrf = "", name: Line = "",
                command: Lines = "", source_kind: Line = "none", source_path: Line = "",
                source_git: Line = "", source_ref: Line = "", env: Lines = "",
                secret_env: Lines = "", report_paths: Lines = "", timeout_seconds: Number = "",
                queue_timeout_seconds: Number = "", max_concurrent_runs: Number = "",
                schedule: Line = "", sandbox: Line = "auto", network: Line = ""):
    web = _web(request)
    form = _form(name, command, source_kind, source_path, source_git, source_ref, env,
                 secret_env, report_paths, timeout_seconds, queue_timeout_seconds,
                 max_concurrent_runs, schedule, sandbox, network, "")
    try:
        body = _plan_fields(form)
        body["schedule"] = body["schedule"] or None
        created = executions.create_plan(
            web.conn, web.principal,
            _validated(schemas.PlanCreate, {**body, "projectId": project_id}), web.settings)
    except ApiError as exc:
        if exc.code != "VALIDATION_ERROR":
            raise
        views._layout(web, project_id)
        # the form again, as typed (secret values included: they never reached the database)
        return _render_form(web, form, None, _problem(exc), exc.status)
    raise Redirect(f"/plans/{created['id']}?done=created")


def _problem(exc: ApiError) -> dict:
    return {"code": exc.code, "message": exc.message, "details": exc.details or {}}


@router.get("/plans/{plan_id}/edit")
@view()
def plan_edit(request: Request, plan_id: str):
    web = _web(request)
    plan = executions.get_plan(web.conn, web.principal, plan_id)
    views._layout(web, plan["projectId"])
    _require_admin(web)
    return _render_form(web, _form_of(plan), plan)


@router.post("/plans/{plan_id}/edit")
@view(write=True)
def plan_update(request: Request, plan_id: str, csrf: Csrf = "", name: Line = "",
                command: Lines = "", source_kind: Line = "none", source_path: Line = "",
                source_git: Line = "", source_ref: Line = "", env: Lines = "",
                secret_env: Lines = "", report_paths: Lines = "", timeout_seconds: Number = "",
                queue_timeout_seconds: Number = "", max_concurrent_runs: Number = "",
                schedule: Line = "", sandbox: Line = "auto", network: Line = "",
                code_version: Number = ""):
    """Saved against the codeVersion the form was loaded with (`If-Match`): when the plan
    changed meanwhile, the form comes back with the specification's PRECONDITION_FAILED
    (re-load, reapply, save) and nothing is stored."""
    web = _web(request)
    form = _form(name, command, source_kind, source_path, source_git, source_ref, env,
                 secret_env, report_paths, timeout_seconds, queue_timeout_seconds,
                 max_concurrent_runs, schedule, sandbox, network, code_version)
    try:
        body = _validated(schemas.PlanUpdate, _plan_fields(form))
        executions.update_plan(web.conn, web.principal, plan_id, body,
                               code_version.strip() or None, web.settings)
    except ApiError as exc:
        if exc.code not in ("VALIDATION_ERROR", "PRECONDITION_FAILED"):
            raise
        plan = executions.get_plan(web.conn, web.principal, plan_id)
        views._layout(web, plan["projectId"])
        return _render_form(web, form, plan, _problem(exc), exc.status)
    raise Redirect(f"/plans/{plan_id}?done=saved")


@router.post("/plans/{plan_id}/delete")
@view(write=True)
def plan_delete(request: Request, plan_id: str, csrf: Csrf = ""):
    web = _web(request)
    plan = executions.get_plan(web.conn, web.principal, plan_id)
    executions.delete_plan(web.conn, web.principal, plan_id)
    raise Redirect(f"/projects/{plan['projectId']}/plans?done=deleted")


# -- a run's execution: the section of the run page, its live log, Cancel ---------------------

def _used_ms(run: dict) -> int | None:
    """Runner time: from the real start to the finish (or to now while it runs)."""
    started = parse_iso(run["startedAt"]) if run.get("startedAt") else None
    if started is None:
        return None
    finished = parse_iso(run["finishedAt"]) if run.get("finishedAt") else utcnow()
    return max(int((finished - started).total_seconds() * 1000), 0)


def _state(run: dict) -> dict:
    return {"live": run["status"] in LIVE, "used_ms": _used_ms(run)}


def execution_section(web: Web, run: dict) -> dict:
    """What `_execution.html` shows on a run page; empty for a run that was not executed.
    The first part of the log is rendered with the page, the script follows from there."""
    if not run.get("planId"):
        return {"execution": None}
    log = executions.read_log(web.conn, web.principal, run["id"], 0, LOG_FIRST_BYTES)
    try:
        plan = executions.get_plan(web.conn, web.principal, run["planId"])
    except ApiError:
        plan = None  # the plan was deleted: its runs stay
    return {"execution": {**_state(run), "plan": plan, "log": log}}


@router.get("/runs/{run_id}/log")
@view()
def run_log(request: Request, run_id: str,
            offset: Annotated[int, Query(ge=0, le=2**53)] = 0):
    """A window of the log from `offset` and the run's state, for the page's script:
    `{text, nextOffset, complete, status, live, factsHtml}`."""
    web = _web(request)
    chunk = executions.read_log(web.conn, web.principal, run_id, offset, LOG_POLL_BYTES)
    run = runs.get_run(web.conn, web.principal, run_id)
    role = require_project(web.conn, web.principal, run["projectId"], "runs:read").role
    facts = env.get_template("_execution_facts.html").render(
        **web.base_context(), role=role, run=run, execution=_state(run))
    return JSONResponse({"text": chunk["text"], "nextOffset": chunk["nextOffset"],
                         "complete": chunk["complete"], "status": run["status"],
                         "live": run["status"] in LIVE, "factsHtml": facts})


@router.post("/runs/{run_id}/cancel")
@view(write=True)
def run_cancel(request: Request, run_id: str, csrf: Csrf = ""):
    """Idempotent, as the API's: a queued run ends at once, a running one is stopped by its
    runner (SIGTERM to its process group, SIGKILL after the grace period)."""
    web = _web(request)
    executions.cancel(web.conn, web.principal, run_id)
    raise Redirect(f"/runs/{run_id}#execution")


# -- a team's execution budget and usage -------------------------------------------------------

@router.get("/teams/{team_id}/usage")
@view()
def team_settings(request: Request, team_id: str,
                  done: Annotated[str | None, Query(max_length=40)] = None):
    web = _web(request)
    layout = views._layout(web, team_id=team_id)
    usage = executions.usage(web.conn, web.principal, team_id)
    names = {p["id"]: p["name"] for p in layout["projects"]}
    return web.render("team_settings.html", {
        "title": "Team settings", "section": "team", "usage": usage, "names": names,
        "done": done,
        "budget_hours": "" if usage["budgetSeconds"] is None
        else f"{usage['budgetSeconds'] / 3600:g}"})


@router.post("/teams/{team_id}/budget")
@view(write=True)
def team_budget(request: Request, team_id: str, csrf: Csrf = "",
                hours: Annotated[str, Form(max_length=20)] = ""):
    """Runner-hours a calendar month, empty for no limit (stored in seconds, as the API)."""
    web = _web(request)
    seconds = None
    if hours.strip():
        try:
            value = float(hours.strip())
        except ValueError:
            value = -1.0
        if not 0 <= value <= 10**10 / 3600:
            raise ApiError("VALIDATION_ERROR", "The budget is a number of runner-hours "
                           "(0 or more), or empty for no limit",
                           {"field": "executionBudgetSeconds", "reason": "invalid"})
        seconds = round(value * 3600)
    executions.set_budget(web.conn, web.principal, team_id, seconds)
    raise Redirect(f"/teams/{team_id}/usage?done=budget+saved")
