"""The dashboard: server-rendered pages over the same services (and permissions) as the API.

Each view reads what it shows through the services the API endpoints call, builds one
context, and renders it. Write controls are shown only when the role table (`ROLE_SCOPES`)
grants the scope the service will check; the service checks it again on submit. Every form
carries the session's CSRF token. Pages read without JavaScript; `static/redline.js` only
refreshes the runs list while runs are in progress, selects all rows, and copies a new key.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from types import SimpleNamespace
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from redline.run_display import run_label
from redline.server.accounts import service as accounts
from redline.server.auth import DEFAULT_KEY_SCOPES, ROLE_SCOPES, ROLES, SCOPES, require_project
from redline.server.deps import address_rate_limited, get_db
from redline.server.http_errors import ApiError, validation_error
from redline.server.intelligence import service as intelligence
from redline.server.intelligence.fingerprint import fingerprint
from redline.server.kit.clock import parse_iso, utcnow
from redline.server.kit.cookies import session_cookie_name
from redline.server.projects import service as projects
from redline.server.results import service as results
from redline.server.runs import service as runs
from redline.server.teams import service as teams
from redline.server.web import charts
from redline.server.web.core import (
    Redirect,
    Web,
    anon_csrf,
    at_least,
    can,
    check_anon_csrf,
    optional_principal,
    secure,
    set_anon_cookie,
    url,
    view,
)
from redline.server.web.static import serve_static
from redline.server.web.trace import available as trace_viewer_available

# The pages: each opens the request's unit of work (`get_db`) before it runs.
router = APIRouter(include_in_schema=False, dependencies=[Depends(get_db)])
# Files that need no database: the static assets and the trace viewer.
assets = APIRouter(include_in_schema=False)

Csrf = Annotated[str, Form()]
Text = Annotated[str, Form(max_length=2000)]
RUN_STATUSES = ("running", "passed", "failed", "cancelled", "queued", "blocked")
RESULT_STATUSES = ("failed", "flaky", "passed", "skipped")
RUNS_PER_PAGE = 30
RESULTS_PER_PAGE = 100
SUITES_ON_RUN_PAGE = 300  # the rest of a big tree is on /runs/{id}/suites
TREE_INLINE_MAX_TESTS = 2000  # bigger runs link to their suite tree instead


def _web(request: Request) -> Web:
    return request.state.web


def _layout(web: Web, project_id: str | None = None, team_id: str | None = None) -> dict:
    """The header: the user, their teams, the current team's projects, the caller's role.
    A handful of queries whatever the page shows."""
    conn, principal = web.conn, web.principal
    me = accounts.me(conn, principal)
    role = None
    if project_id is not None:
        access = require_project(conn, principal, project_id, "runs:read")
        team_id, role = access.team_id, access.role
    elif team_id is not None:
        role = next((t["role"] for t in me["teams"] if t["teamId"] == team_id), None)
        if role is None:
            teams.get_team(conn, principal, team_id)  # NOT_FOUND, as the API answers
    elif me["teams"]:
        team_id, role = me["teams"][0]["teamId"], me["teams"][0]["role"]
    team_projects = projects.team_projects(conn, principal, team_id) if team_id else []
    project = next((p for p in team_projects if p["id"] == project_id), None)
    if project_id and project is None:
        project = projects.get_project(conn, principal, project_id)
    if project is None and team_projects:
        project = team_projects[0]  # team pages keep a project's tabs and switcher
    layout = {"me": me, "team_id": team_id, "team": next(
        (t for t in me["teams"] if t["teamId"] == team_id), None), "projects": team_projects,
        "project": project, "role": role,
        "can_write": can(role, "runs:write"), "can_quarantine": can(role, "flakiness:write"),
        "can_admin": can(role, "project:admin"), "team_admin": at_least(role, "admin"),
        "team_owner": at_least(role, "owner")}
    web.layout = layout
    return layout


# -- signing in and out -----------------------------------------------------------------------

def _safe_next(target: str | None) -> str:
    """Only a path on this site (never `//host` or a scheme): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/login")
@view(public=True)
def login_page(request: Request, next: str | None = None):
    web = _web(request)
    if optional_principal(web) is not None:
        raise Redirect(_safe_next(next))
    return _login_form(web, next, None, 200)


def _login_form(web: Web, next_path: str | None, error: str | None, status: int,
                email: str = "", headers: dict | None = None):
    token, fresh = anon_csrf(web.request)
    response = web.render("login.html", {"form_token": token, "next": _safe_next(next_path),
                                         "error": error, "email": email}, status=status,
                          headers=headers)
    set_anon_cookie(response, web.settings, fresh)
    return response


@router.post("/login")
@view(write=True, public=True)
def login_submit(request: Request, email: Annotated[str, Form(max_length=320)] = "",
                 password: Annotated[str, Form(max_length=1000)] = "", csrf: Csrf = "",
                 next: Annotated[str, Form(max_length=2000)] = "/"):
    web = _web(request)
    check_anon_csrf(request, csrf)
    try:
        address_rate_limited(request)
        session = accounts.login(web.conn, email, password, web.settings,
                                 request.app.state.limiter)
    except ApiError as exc:
        if exc.code not in ("AUTH_INVALID", "RATE_LIMITED", "VALIDATION_ERROR"):
            raise
        message = ("Too many attempts: wait a few minutes before trying again."
                   if exc.code == "RATE_LIMITED" else "Email or password is wrong.")
        return _login_form(web, next, message, 429 if exc.code == "RATE_LIMITED" else 401,
                           email, exc.headers)
    response = RedirectResponse(_safe_next(next), status_code=303)
    _set_session_cookie(response, web.settings, session["token"])
    return response


def _set_session_cookie(response: Response, settings, token: str) -> None:
    response.set_cookie(session_cookie_name(settings), token, httponly=True, samesite="lax",
                        path="/", secure=settings.cookie_secure,
                        max_age=settings.session_absolute_seconds)


@router.post("/logout")
@view(write=True)
def logout(request: Request, csrf: Csrf = ""):
    web = _web(request)
    accounts.logout(web.conn, web.principal)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(session_cookie_name(web.settings), path="/",
                           secure=web.settings.cookie_secure, httponly=True, samesite="lax")
    return response


# -- home and switching -------------------------------------------------------------------------

@router.get("/")
@view()
def home(request: Request):
    web = _web(request)
    layout = _layout(web)
    if layout["projects"]:
        raise Redirect(f"/projects/{layout['projects'][0]['id']}/runs")
    return web.render("home.html", {"title": "Welcome"})


@router.get("/switch")
@view()
def switch(request: Request, project: str | None = None, team: str | None = None):
    if project:
        raise Redirect(f"/projects/{project}/runs")
    if team:
        raise Redirect(f"/teams/{team}")
    raise Redirect("/")


@router.get("/teams/{team_id}")
@view()
def team_page(request: Request, team_id: str):
    web = _web(request)
    layout = _layout(web, team_id=team_id)
    if layout["projects"]:
        raise Redirect(f"/projects/{layout['projects'][0]['id']}/runs")
    return web.render("home.html", {"title": "No projects yet"})


@router.get("/projects/{project_id}")
@view()
def project_page(request: Request, project_id: str):
    raise Redirect(f"/projects/{project_id}/runs")


# -- runs ---------------------------------------------------------------------------------------

def _day(value: str | None, field_name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError("VALIDATION_ERROR", f"'{field_name}' must be a date (YYYY-MM-DD)",
                       {"field": field_name, "reason": "invalid"}) from None


def _runs_in_range(web: Web, project_id: str, status, branch, start: date | None,
                   end: date | None, offset: int) -> dict:
    """Runs filtered by day. The runs service filters by status and branch; the date range
    is applied here by reading its pages newest first (one query per page of 500, never per
    run) until the range is passed."""
    if start is None and end is None:
        return runs.list_runs(web.conn, web.principal, project_id, status, branch,
                              web.page(RUNS_PER_PAGE, offset))
    low = datetime.combine(start, datetime.min.time()) if start else None
    high = datetime.combine(end + timedelta(days=1), datetime.min.time()) if end else None
    matched, cursor, exhausted = [], 0, False
    wanted = offset + RUNS_PER_PAGE + 1
    for _ in range(40):  # at most 20,000 runs read for one filtered page
        chunk = runs.list_runs(web.conn, web.principal, project_id, status, branch,
                               web.page(500, cursor))
        for run in chunk["data"]:
            created = parse_iso(run["createdAt"])
            if high is not None and created >= high:
                continue
            if low is not None and created < low:
                exhausted = True
                break
            matched.append(run)
        cursor += len(chunk["data"])
        if exhausted or len(matched) >= wanted or cursor >= chunk["total"]:
            exhausted = exhausted or cursor >= chunk["total"]
            break
    page = matched[offset:offset + RUNS_PER_PAGE]
    more = len(matched) > offset + RUNS_PER_PAGE
    return {"data": page, "total": len(matched) if exhausted else None,
            "limit": RUNS_PER_PAGE, "offset": offset, "more": more}


@router.get("/projects/{project_id}/runs")
@view()
def runs_page(request: Request, project_id: str,
              status: Annotated[str | None, Query(max_length=20)] = None,
              branch: Annotated[str | None, Query(max_length=255)] = None,
              since: Annotated[str | None, Query(alias="from", max_length=10)] = None,
              until: Annotated[str | None, Query(alias="to", max_length=10)] = None,
              offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
              fragment: Annotated[str | None, Query(max_length=10)] = None):
    web = _web(request)
    status = status if status in RUN_STATUSES else None
    branch = (branch or "").strip() or None
    if fragment != "rows":
        _layout(web, project_id)
    listing = _runs_in_range(web, project_id, status, branch, _day(since, "from"),
                             _day(until, "to"), offset)
    total = listing.get("total")
    more = listing.get("more", total is not None and offset + RUNS_PER_PAGE < total)
    filters = {"status": status, "branch": branch, "from": since, "to": until}
    base = f"/projects/{project_id}/runs"
    context = {
        "title": "Runs", "section": "runs", "runs": listing["data"], "total": total,
        "offset": offset, "filters": filters, "statuses": RUN_STATUSES,
        "branches": sorted({r["branch"] for r in listing["data"] if r["branch"]}),
        "live": offset == 0, "any_running": any(r["status"] in ("running", "queued")
                                                for r in listing["data"]),
        "rate_bar": charts.rate_bar,
        "fragment_url": url(base, status=status, branch=branch, fragment="rows",
                            **{"from": since, "to": until}),
        "prev_url": url(base, offset=max(0, offset - RUNS_PER_PAGE), status=status,
                        branch=branch, **{"from": since, "to": until}) if offset else None,
        "next_url": url(base, offset=offset + RUNS_PER_PAGE, status=status, branch=branch,
                        **{"from": since, "to": until}) if more else None,
    }
    if fragment == "rows":
        return secure(web.render("_run_rows.html", context))
    return web.render("runs.html", context)


def _group_failures(failures: list[dict], quarantined: set[str]) -> list[dict]:
    groups: dict[str, dict] = {}
    for item in failures:
        key = fingerprint(item.get("error")) or "no-error"
        group = groups.setdefault(key, {"fingerprint": key, "error": item.get("error") or {},
                                        "tests": []})
        item = {**item, "quarantined": item["testCaseId"] in quarantined}
        group["tests"].append(item)
    ordered = sorted(groups.values(), key=lambda g: -len(g["tests"]))
    for group in ordered:
        group["all_quarantined"] = all(t["quarantined"] for t in group["tests"])
    return ordered


def _trim_tree(nodes: list[dict], budget: int) -> tuple[list[dict], int]:
    """The first `budget` suites of a tree, depth first, and how many were left out."""
    kept: list[dict] = []
    left = budget
    omitted = 0
    for node in nodes:
        if left <= 0:
            omitted += 1 + _size(node["children"])
            continue
        left -= 1
        children, dropped = _trim_tree(node["children"], left)
        left -= _size(children)
        omitted += dropped
        kept.append({**node, "children": children})
    return kept, omitted


def _size(nodes: list[dict]) -> int:
    return sum(1 + _size(n["children"]) for n in nodes)


@router.get("/runs/{run_id}/suites")
@view()
def suites_page(request: Request, run_id: str):
    web = _web(request)
    run = runs.get_run(web.conn, web.principal, run_id)
    _layout(web, run["projectId"])
    tree = results.suite_tree(web.conn, web.principal, run_id, None)["data"]
    return web.render("suites.html", {"title": "Suites", "section": "runs", "run": run,
                                      "tree": tree})


@router.get("/runs/{run_id}")
@view()
def run_page(request: Request, run_id: str,
             status: Annotated[str | None, Query(max_length=10)] = None,
             q: Annotated[str | None, Query(max_length=200)] = None,
             offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0):
    web = _web(request)
    conn, principal = web.conn, web.principal
    row = runs.load_run(conn, principal, run_id, "runs:read")
    run = runs.run_json(row)
    project_id = run["projectId"]
    _layout(web, project_id)
    failed = results.list_results(conn, principal, project_id, run_id, "failed", None,
                                  web.page(500))
    flaky = results.list_results(conn, principal, project_id, run_id, "flaky", None,
                                 web.page(200))
    quarantined_now = intelligence.flakiness(conn, principal, project_id, None, True,
                                             web.page(500))
    quarantined = {c["testId"] for c in quarantined_now["data"]}
    compared = intelligence.compare_run(conn, principal, row, None)
    comparison = compared if compared["baseRunId"] is not None else None
    if run["totalTests"] <= TREE_INLINE_MAX_TESTS:
        tree, tree_omitted = _trim_tree(
            results.suite_tree(conn, principal, run_id, None)["data"], SUITES_ON_RUN_PAGE)
    else:  # a big run's tree is its own page: the run page stays fast
        tree, tree_omitted = [], None
    status = status if status in RESULT_STATUSES else None
    listing = results.list_results(conn, principal, project_id, run_id, status,
                                   (q or "").strip() or None,
                                   web.page(RESULTS_PER_PAGE, offset))
    base = f"/runs/{run_id}"
    context = {
        "title": f"Run {run_label(run)}", "section": "runs", "run": run,
        "artifacts": [a for a in _artifacts(web, run_id, None) if a["testId"] is None],
        "groups": _group_failures(failed["data"], quarantined),
        "failed_total": failed["total"], "failed_shown": len(failed["data"]),
        "flaky": flaky["data"], "flaky_total": flaky["total"], "comparison": comparison,
        "tree": tree, "tree_omitted": tree_omitted,
        "results": listing["data"],
        "results_total": listing["total"], "offset": offset, "status": status, "q": q or "",
        "statuses": RESULT_STATUSES, "per_page": RESULTS_PER_PAGE,
        "rate_bar": charts.rate_bar,
        "prev_url": url(base, status=status, q=q, offset=max(0, offset - RESULTS_PER_PAGE))
        + "#tests" if offset else None,
        "next_url": url(base, status=status, q=q, offset=offset + RESULTS_PER_PAGE) + "#tests"
        if offset + RESULTS_PER_PAGE < listing["total"] else None,
    }
    # A plan's run: its execution section (imported here: web/executions.py imports this module)
    from redline.server.web.executions import execution_section
    context.update(execution_section(web, run))
    return web.render("run.html", context)


@router.get("/tests/{test_id}")
@view()
def result_page(request: Request, test_id: str):
    web = _web(request)
    conn, principal = web.conn, web.principal
    result = results.get_result(conn, principal, test_id)
    _layout(web, result["projectId"])
    steps = results.get_steps(conn, principal, test_id)["data"]
    run = runs.get_run(conn, principal, result["runId"])
    hist = intelligence.history(conn, principal, result["testCaseId"], None)["data"]
    attachments = (result.get("extra") or {}).get("attachments") or []
    context = {"title": result["title"], "section": "runs", "result": result, "steps": steps,
               "run": run, "history": list(reversed(hist)), "attachments": attachments,
               "artifacts": _artifacts(web, None, test_id),
               "longest": max([s.get("duration") or 0 for s in steps] + [result["duration"], 1])}
    return web.render("result.html", context)


def _artifacts(web: Web, run_id: str | None, test_id: str | None) -> list[dict]:
    """Screenshots, videos, traces and reports, with links on this site's origin (the
    signed link's path: images and videos load under the page's CSP, 'self')."""
    try:
        from redline.server.artifacts import service as artifacts
        from redline.server.artifacts import user_content
    except ModuleNotFoundError:
        return []
    listed = artifacts.list_artifacts(web.conn, web.principal, web.settings, run_id, test_id,
                                      None, web.page(100))["data"]
    for item in listed:
        item["local_url"] = _local(item["url"])
        signed = SimpleNamespace(id=item["id"], project_id=item["projectId"],
                                 mime_type=item["mimeType"])
        item["download_url"] = _local(artifacts.mint_url(web.settings, signed, None,
                                                         "attachment")[0])
        # The trace viewer and HTML reports run scripts: they open on the user-content
        # origin, never this one (artifacts/user_content.py; none when there is no such origin).
        if item["type"] == "trace" and trace_viewer_available():
            item["viewer_url"] = user_content.trace_viewer_url(web.settings,
                                                               item["download_url"])
        if item["type"] == "report" and item["mimeType"] == "application/zip":
            item["report_url"] = user_content.report_url(web.settings, signed)
    return listed


def _local(link: str) -> str:
    parts = urlsplit(link)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# -- test cases, flakiness, quarantine ------------------------------------------------------

def _names(web: Web, team_id: str | None) -> dict[str, str]:
    """user id -> name, for 'who' columns (one query for the team's members)."""
    if not team_id:
        return {}
    members = teams.list_members(web.conn, web.principal, team_id, web.page(500))["data"]
    return {m["userId"]: m["name"] or m["email"] for m in members}


@router.get("/cases/{case_id}")
@view()
def case_page(request: Request, case_id: str,
              branch: Annotated[str | None, Query(max_length=255)] = None,
              done: Annotated[str | None, Query(max_length=20)] = None):
    web = _web(request)
    conn, principal = web.conn, web.principal
    case = intelligence.get_case(conn, principal, case_id)
    layout = _layout(web, case["projectId"])
    branch = (branch or "").strip() or None
    hist = intelligence.history(conn, principal, case["id"], branch)["data"]
    oldest_first = list(reversed(hist))
    chart = charts.bar_chart(
        [h["duration"] for h in oldest_first],
        [f"{h['createdAt'][:16].replace('T', ' ')} {h['status']} on {h['branch'] or '?'}"
         for h in oldest_first],
        [f"bar-{h['status']}" for h in oldest_first],
        title=f"Duration of the last {len(hist)} results", unit="ms",
        links=[f"/tests/{h['testId']}" for h in oldest_first])
    listed_runs = {item["runId"] for item in case["evidence"] + case["failedIn"]}
    context = {"title": case["title"], "section": "flaky", "case": case,
               "run_titles": intelligence.run_titles(conn, listed_runs),
               "history": oldest_first, "chart": chart, "branch": branch or "",
               "names": _names(web, layout["team_id"]), "done": done}
    return web.render("case.html", context)


@router.post("/cases/{case_id}/quarantine")
@view(write=True)
def case_quarantine(request: Request, case_id: str, csrf: Csrf = "",
                    action: Annotated[str, Form(max_length=20)] = "quarantine",
                    reason: Text = "", owner: Annotated[str, Form(max_length=255)] = ""):
    web = _web(request)
    quarantine = action == "quarantine"
    intelligence.quarantine(web.conn, web.principal, case_id, None, quarantine,
                            reason.strip() or None if quarantine else None,
                            owner.strip() or None if quarantine else None, None)
    raise Redirect(f"/cases/{case_id}?done={'quarantined' if quarantine else 'released'}")


@router.get("/projects/{project_id}/flaky")
@view()
def flaky_page(request: Request, project_id: str,
               quarantined: Annotated[str | None, Query(max_length=5)] = None,
               offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
               done: Annotated[str | None, Query(max_length=40)] = None):
    web = _web(request)
    _layout(web, project_id)
    only = {"yes": True, "no": False}.get(quarantined or "")
    listing = intelligence.flakiness(web.conn, web.principal, project_id, None, only,
                                     web.page(50, offset))
    base = f"/projects/{project_id}/flaky"
    context = {"title": "Flaky tests", "section": "flaky", "cases": listing["data"],
               "total": listing["total"], "summary": listing["summary"],
               "quarantined": quarantined or "", "done": done,
               "formula": intelligence.SCORE_FORMULA, "offset": offset,
               "prev_url": url(base, quarantined=quarantined, offset=max(0, offset - 50))
               if offset else None,
               "next_url": url(base, quarantined=quarantined, offset=offset + 50)
               if offset + 50 < listing["total"] else None}
    return web.render("flaky.html", context)


@router.post("/projects/{project_id}/flaky")
@view(write=True)
def flaky_bulk(request: Request, project_id: str, csrf: Csrf = "",
               test_id: Annotated[list[str], Form(max_length=500)] = [],  # noqa: B006
               action: Annotated[str, Form(max_length=20)] = "quarantine",
               reason: Text = ""):
    web = _web(request)
    quarantine = action == "quarantine"
    for case_id in test_id[:500]:
        intelligence.quarantine(web.conn, web.principal, case_id, project_id, quarantine,
                                (reason.strip() or "bulk") if quarantine else None, None, None)
    verb = "quarantined" if quarantine else "released"
    raise Redirect(f"/projects/{project_id}/flaky?done={len(test_id)}+{verb}")


@router.get("/projects/{project_id}/errors")
@view()
def errors_page(request: Request, project_id: str,
                days: Annotated[int, Query(ge=1, le=365)] = 30,
                offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0):
    web = _web(request)
    _layout(web, project_id)
    listing = intelligence.error_list(web.conn, web.principal, project_id,
                                      utcnow() - timedelta(days=days), web.page(50, offset))
    base = f"/projects/{project_id}/errors"
    context = {"title": "Error groups", "section": "errors", "groups": listing["data"],
               "total": listing["total"], "days": days,
               "prev_url": url(base, days=days, offset=max(0, offset - 50)) if offset else None,
               "next_url": url(base, days=days, offset=offset + 50)
               if offset + 50 < listing["total"] else None}
    return web.render("errors.html", context)


@router.get("/projects/{project_id}/trends")
@view()
def trends_page(request: Request, project_id: str,
                branch: Annotated[str | None, Query(max_length=255)] = None,
                days: Annotated[int, Query(ge=1, le=365)] = 30,
                group_by: Annotated[Literal["day", "run"], Query(alias="groupBy")] = "day",
                by: Annotated[str | None, Query(max_length=4)] = None):
    """The API's `groupBy` (day or run), as `GET /api/projects/{id}/trends` names it;
    `?by=` of older links is redirected to it."""
    if by is not None:
        raise Redirect(url(f"/projects/{project_id}/trends", branch=branch,
                           days=days if days != 30 else None,
                           groupBy="run" if by == "run" else "day"), 301)
    web = _web(request)
    _layout(web, project_id)
    branch = (branch or "").strip() or None
    data = intelligence.trends(web.conn, web.principal, project_id, group_by, branch, days)
    points = data["points"]
    labels = [(p["at"] or p["key"])[:10] if group_by == "day" else (p["at"] or "")[:16]
              .replace("T", " ") for p in points]
    chart_list = [
        ("Pass rate", charts.line_chart([p["passRate"] for p in points], labels,
                                        title="Pass rate (%)", unit="%", y_max=100,
                                        css="s-pass")),
        ("Tests", charts.line_chart([p["totalTests"] / max(p["runs"], 1) for p in points],
                                    labels, title="Tests per run", css="s-count")),
        ("Duration", charts.line_chart([p["duration"] for p in points], labels,
                                       title="Average run duration", unit="ms",
                                       css="s-duration")),
        ("Flaky", charts.line_chart([p["flakyTests"] for p in points], labels,
                                    title="Flaky results", css="s-flaky")),
    ]
    context = {"title": "Trends", "section": "trends", "charts": chart_list,
               "points": points, "branch": branch or "", "days": days, "group_by": group_by,
               "slowest": data["slowestTests"]}
    return web.render("trends.html", context)


# -- settings: project, keys, members and invitations -----------------------------------------

#: what each scope of the catalog (`auth.SCOPES`) lets a key do, beside its checkbox
SCOPE_HELP = {
    "runs:read": "read runs, results, test history and trends",
    "runs:write": "report runs and results (uploads from CI)",
    "artifacts:read": "download screenshots, videos, traces and reports",
    "artifacts:write": "upload screenshots, videos, traces and reports",
    "flakiness:write": "quarantine and release tests",
    "executions:write": "trigger and cancel executed runs (plans)",
    "project:admin": "manage the project's settings, keys and webhooks",
}

WEBHOOK_EVENTS = ("run.completed", "run.failed", "test.flaky", "test.quarantined")


def _webhooks_service():
    try:
        from redline.server.webhooks import service
    except ModuleNotFoundError:
        return None
    return service


def _settings_context(web: Web, project_id: str, new_key: dict | None = None,
                      new_webhook: dict | None = None) -> dict:
    conn, principal = web.conn, web.principal
    settings = projects.get_settings(conn, principal, project_id)
    keys = projects.list_keys(conn, principal, project_id, web.page(200))
    hooks = _webhooks_service()
    listed = hooks.list_webhooks(conn, principal, project_id, web.page(100))["data"] \
        if hooks else None
    granted = ROLE_SCOPES.get(web.layout.get("role") or "", frozenset())
    return {"title": "Settings", "section": "settings", "settings": settings,
            "keys": keys["data"], "new_key": new_key, "webhooks": listed,
            "new_webhook": new_webhook, "webhook_events": WEBHOOK_EVENTS,
            # the key form offers only the scopes its creator may grant, the usual CI ones
            # ticked
            "key_scopes": [{"name": scope, "help": SCOPE_HELP[scope],
                            "default": scope in DEFAULT_KEY_SCOPES}
                           for scope in SCOPES if scope in granted]}


@router.get("/projects/{project_id}/settings")
@view()
def settings_page(request: Request, project_id: str,
                  done: Annotated[str | None, Query(max_length=40)] = None):
    web = _web(request)
    layout = _layout(web, project_id)
    if not layout["can_admin"]:
        raise _needs(layout["role"], "admin", "project settings and API keys")
    return web.render("settings.html", {**_settings_context(web, project_id), "done": done})


def _needs(role: str | None, minimum: str, what: str) -> ApiError:
    return ApiError("AUTH_FORBIDDEN", f"Only a team {minimum} or owner manages {what}; you "
                    f"are {role}", {"required": [f"role:{minimum}"], "granted": [f"role:{role}"]})


@router.post("/projects/{project_id}/settings")
@view(write=True)
def settings_submit(request: Request, project_id: str, csrf: Csrf = "",
                    retention: Annotated[int, Form(ge=1, le=3650)] = 90,
                    threshold: Annotated[float, Form(ge=0, le=1)] = 0.3,
                    auto_quarantine: Annotated[str, Form(max_length=5)] = ""):
    web = _web(request)
    projects.update_settings(web.conn, web.principal, project_id, {
        "data_retention_days": retention, "flakiness_threshold": threshold,
        "auto_quarantine_enabled": auto_quarantine == "on"})
    raise Redirect(f"/projects/{project_id}/settings?done=saved")


@router.post("/projects/{project_id}/keys")
@view(write=True)
def key_create(request: Request, project_id: str, csrf: Csrf = "",
               name: Annotated[str, Form(min_length=1, max_length=200)] = "CI",
               expires: Annotated[str, Form(max_length=10)] = "",
               scopes: Annotated[list[str] | None, Form(max_length=len(SCOPES))] = None):
    """A key with the scopes ticked (none ticked: refused; a scope its creator lacks:
    refused by the service, as the API refuses it)."""
    web = _web(request)
    if not scopes:
        raise validation_error("scopes", "empty", "Tick at least one scope for the key")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise validation_error("scopes", "unknown_scope", f"Unknown scope(s): "
                               f"{', '.join(unknown)}; the scopes are {', '.join(SCOPES)}")
    expires_at = None
    day = _day(expires, "expires")
    if day is not None:
        expires_at = datetime.combine(day, datetime.min.time())
    created = projects.create_key(web.conn, web.principal, project_id, name.strip() or "CI",
                                  expires_at, scopes)
    _layout(web, project_id)
    # Shown once, in this response only: the key is stored as a hash.
    return web.render("settings.html", _settings_context(web, project_id, new_key=created),
                      status=201)


@router.post("/projects/{project_id}/keys/{key_id}/deactivate")
@view(write=True)
def key_deactivate(request: Request, project_id: str, key_id: str, csrf: Csrf = ""):
    web = _web(request)
    projects.update_key(web.conn, web.principal, key_id, False, None)
    raise Redirect(f"/projects/{project_id}/settings?done=deactivated")


@router.post("/projects/{project_id}/webhooks")
@view(write=True)
def webhook_create(request: Request, project_id: str, csrf: Csrf = "",
                   url_: Annotated[str, Form(alias="url", max_length=2048)] = "",
                   event: Annotated[list[str], Form(max_length=4)] = []):  # noqa: B006
    web = _web(request)
    hooks = _webhooks_service()
    events = [e for e in event if e in WEBHOOK_EVENTS]
    if hooks is None or not events:
        raise ApiError("VALIDATION_ERROR", "Pick at least one event", {
            "field": "events", "reason": "required"})
    created = hooks.create(web.conn, web.principal, project_id, url_.strip(), events, {},
                           None, web.settings)
    _layout(web, project_id)
    # The signing secret is shown once, like a new key.
    return web.render("settings.html", _settings_context(web, project_id,
                                                         new_webhook=created), status=201)


@router.get("/projects/{project_id}/webhooks/{webhook_id}")
@view()
def webhook_page(request: Request, project_id: str, webhook_id: str,
                 offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
                 done: Annotated[str | None, Query(max_length=40)] = None):
    web = _web(request)
    hooks = _webhooks_service()
    if hooks is None:
        raise ApiError("UNSUPPORTED", "Webhooks are not on this server", {})
    hook = hooks.get(web.conn, web.principal, webhook_id)
    if hook["projectId"] != project_id:
        raise ApiError("NOT_FOUND", f"Webhook '{webhook_id}' not found",
                       {"resource": "webhook"})
    _layout(web, project_id)
    log = hooks.deliveries(web.conn, web.principal, webhook_id, web.page(50, offset))
    base = f"/projects/{project_id}/webhooks/{webhook_id}"
    return web.render("webhook.html", {
        "title": "Webhook", "section": "settings", "hook": hook, "deliveries": log["data"],
        "total": log["total"], "done": done,
        "prev_url": url(base, offset=max(0, offset - 50)) if offset else None,
        "next_url": url(base, offset=offset + 50) if offset + 50 < log["total"] else None})


@router.post("/projects/{project_id}/webhooks/{webhook_id}/ping")
@view(write=True)
def webhook_ping(request: Request, project_id: str, webhook_id: str, csrf: Csrf = ""):
    web = _web(request)
    _webhooks_service().ping(web.conn, web.principal, webhook_id)
    raise Redirect(f"/projects/{project_id}/webhooks/{webhook_id}?done=ping+queued")


@router.post("/projects/{project_id}/webhooks/{webhook_id}/deliveries/{delivery_id}")
@view(write=True)
def webhook_redeliver(request: Request, project_id: str, webhook_id: str, delivery_id: str,
                      csrf: Csrf = ""):
    web = _web(request)
    _webhooks_service().redeliver(web.conn, web.principal, webhook_id, delivery_id)
    raise Redirect(f"/projects/{project_id}/webhooks/{webhook_id}?done=redelivery+queued")


@router.post("/projects/{project_id}/webhooks/{webhook_id}/active")
@view(write=True)
def webhook_active(request: Request, project_id: str, webhook_id: str, csrf: Csrf = "",
                   active: Annotated[str, Form(max_length=5)] = ""):
    web = _web(request)
    _webhooks_service().update_webhook(web.conn, web.principal, webhook_id,
                                       {"is_active": active == "true"}, web.settings)
    raise Redirect(f"/projects/{project_id}/webhooks/{webhook_id}?done=saved")


def _members_context(web: Web, team_id: str, invitation: dict | None = None) -> dict:
    layout = web.layout
    members = teams.list_members(web.conn, web.principal, team_id, web.page(500))
    invitations = (teams.list_invitations(web.conn, web.principal, team_id,
                                          web.page(200))["data"]
                   if layout["team_admin"] else [])
    invitable = [r for r in ROLES if r != "owner" or layout["team_owner"]]
    return {"title": "Members", "section": "members", "members": members["data"],
            "invitations": invitations, "invitation": invitation, "roles": ROLES,
            "invitable": invitable}


@router.get("/teams/{team_id}/members")
@view()
def members_page(request: Request, team_id: str,
                 done: Annotated[str | None, Query(max_length=40)] = None):
    web = _web(request)
    _layout(web, team_id=team_id)
    return web.render("members.html", {**_members_context(web, team_id), "done": done})


@router.post("/teams/{team_id}/invitations")
@view(write=True)
def invitation_create(request: Request, team_id: str, csrf: Csrf = "",
                      email: Annotated[str, Form(max_length=320)] = "",
                      role: Annotated[str, Form(max_length=10)] = "member"):
    web = _web(request)
    if role not in ROLES:
        raise ApiError("VALIDATION_ERROR", "Pick a role", {"field": "role",
                                                           "reason": "invalid_choice"})
    public_url = str(request.base_url).rstrip("/")
    invitation = teams.invite(web.conn, web.principal, team_id, email, role, public_url)
    _layout(web, team_id=team_id)
    # The link carries the invitation's secret: shown once, like a new key.
    return web.render("members.html", _members_context(web, team_id, invitation), status=201)


@router.post("/teams/{team_id}/invitations/{invitation_id}/revoke")
@view(write=True)
def invitation_revoke(request: Request, team_id: str, invitation_id: str, csrf: Csrf = ""):
    teams.revoke_invitation(_web(request).conn, _web(request).principal, invitation_id)
    raise Redirect(f"/teams/{team_id}/members?done=revoked")


@router.post("/teams/{team_id}/members/{member_id}/role")
@view(write=True)
def member_role(request: Request, team_id: str, member_id: str, csrf: Csrf = "",
                role: Annotated[str, Form(max_length=10)] = ""):
    web = _web(request)
    if role not in ROLES:
        raise ApiError("VALIDATION_ERROR", "Pick a role", {"field": "role",
                                                           "reason": "invalid_choice"})
    teams.change_role(web.conn, web.principal, member_id, role)
    raise Redirect(f"/teams/{team_id}/members?done=role+changed")


@router.post("/teams/{team_id}/members/{member_id}/remove")
@view(write=True)
def member_remove(request: Request, team_id: str, member_id: str, csrf: Csrf = ""):
    web = _web(request)
    teams.remove_member(web.conn, web.principal, member_id)
    raise Redirect(f"/teams/{team_id}/members?done=removed")


# -- invitations: joining a team ---------------------------------------------------------------

@router.get("/invitations/{invitation_id}")
@view(public=True)
def invitation_page(request: Request, invitation_id: str,
                    token: Annotated[str | None, Query(max_length=200)] = None):
    web = _web(request)
    return _invitation_form(web, invitation_id, token, None, 200)


def _invitation_form(web: Web, invitation_id: str, token: str | None, error: str | None,
                     status: int, name: str = ""):
    form_token, fresh = anon_csrf(web.request)
    principal = optional_principal(web)
    me = accounts.me(web.conn, principal) if principal else None
    response = web.render("invitation.html", {
        "title": "Join a team", "form_token": form_token, "invitation_id": invitation_id,
        "token": token or "", "error": error, "name": name, "signed_in": me}, status=status)
    set_anon_cookie(response, web.settings, fresh)
    return response


@router.post("/invitations/{invitation_id}")
@view(write=True, public=True)
def invitation_accept(request: Request, invitation_id: str, csrf: Csrf = "",
                      token: Annotated[str, Form(max_length=200)] = "",
                      name: Annotated[str, Form(max_length=200)] = "",
                      password: Annotated[str, Form(max_length=1000)] = ""):
    web = _web(request)
    check_anon_csrf(request, csrf)
    principal = optional_principal(web)
    try:
        address_rate_limited(request)
        accepted = teams.accept_invitation(web.conn, principal, invitation_id, token or None,
                                           password or None, name.strip() or None, web.settings)
    except ApiError as exc:
        if exc.code == "NOT_FOUND":
            message = "This invitation link is not valid (or was revoked)."
        else:
            message = exc.message
        # an error status: the view wrapper rolls back whatever the service did
        return _invitation_form(web, invitation_id, token, message, exc.status, name)
    team_id = accepted["member"]["teamId"]
    response = RedirectResponse(f"/teams/{team_id}", status_code=303)
    if accepted.get("token"):
        _set_session_cookie(response, web.settings, accepted["token"])
    return response


# -- Playwright's trace viewer -----------------------------------------------------------------

@assets.get("/trace/{path:path}")
def trace_viewer(path: str, request: Request):
    """Crafted traces have carried XSS in the viewer: it runs on the user-content origin."""
    from redline.server.artifacts.user_content import redirect_to_user_content

    return redirect_to_user_content(request, "The trace viewer")


# -- static files -------------------------------------------------------------------------------

@assets.get("/static/{name}")
def static(name: str, request: Request):
    return serve_static(name, request)
