"""Typed methods for each API resource, shared by `Client` and `AsyncClient`.

Each method describes its call (`Call`) and hands it to the client, which sends it with the
catalog's retries; on an `AsyncClient` the same methods return awaitables. A `project_id`
left out is implied: the client's default project, else the API key's own project.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from redline.sdk._base import IMPLIED_PROJECT, REQUIRED_PROJECT, Call, Upload, clean

if TYPE_CHECKING:
    from redline.sdk import models as m
    from redline.sdk._base import BaseClient
else:  # references resolved when a response is decoded: importing this imports no pydantic
    from redline.sdk._lazy import models as m


def to_camel(name: str) -> str:
    """`commit_sha` -> `commitSha` (a name already in camelCase stays as it is)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _camel(fields: dict[str, Any]) -> dict[str, Any]:
    return {to_camel(k): v for k, v in fields.items() if v is not None}


def _project(project_id: str | None) -> Any:
    """A project the server implies from an API key when left out."""
    return project_id if project_id else IMPLIED_PROJECT


def _required(project_id: str | None) -> Any:
    """A project the request must name (found through /api/me for an API key)."""
    return project_id if project_id else REQUIRED_PROJECT


def _page(limit: int | None, offset: int | None, cursor: str | None) -> dict[str, Any]:
    return clean({"limit": limit, "offset": offset, "cursor": cursor})


class Resource:
    def __init__(self, client: BaseClient):
        self._c = client

    def _call(self, *args, **kwargs):
        return self._c._call(Call(*args, **kwargs))  # type: ignore[attr-defined]

    def _iter(self, *args, **kwargs):
        return self._c._paginate(Call(*args, **kwargs))  # type: ignore[attr-defined]


class System(Resource):
    def health(self):
        return self._call("GET", "/api/health")

    def setup(self, email: str, password: str, *, team: str | None, project: str | None,
              key_name: str | None, name: str | None):
        # Not idempotent on purpose: a retry after it landed must say CONFLICT, not replay
        # the response (which holds the new key) to whoever asks with the same key.
        body = clean({"email": email, "password": password, "name": name, "team": team,
                      "project": project, "keyName": key_name})
        return self._call("POST", "/api/setup", json=body, model=m.SetupResult,
                          idempotent=False, verify="sign in with `redline login`")

    def me(self):
        return self._call("GET", "/api/me", model=m.Me)

    def update_me(self, *, name: str | None = None, password: str | None = None,
                  current_password: str | None = None):
        """A new password needs `current_password`; it ends the user's other sign-ins."""
        return self._call("PATCH", "/api/me", json=clean({
            "name": name, "password": password, "currentPassword": current_password}),
            model=m.Me)

class Auth(Resource):
    def login(self, email: str, password: str) -> m.LoginResult:
        """Sign in: the client this is called on uses the personal token (`rlu_...`) from
        then on (the result has it too, for `Client(token=...)` elsewhere)."""
        result = self._call("POST", "/api/auth/login",
                            json={"email": email, "password": password},
                            model=m.LoginResult, idempotent=False)
        if inspect.isawaitable(result):  # an AsyncClient: sign in once the answer is in
            return self._signed_in_later(result)  # type: ignore[return-value]
        self._c._sign_in(_token_of(result))
        return result

    async def _signed_in_later(self, pending):
        result = await pending
        self._c._sign_in(_token_of(result))
        return result

    def logout(self) -> None:
        """Revoke the personal token this client uses."""
        return self._call("POST", "/api/auth/logout", idempotent=False)


def _pick_test(found: list[Any], run_id: str, file_path: str, full_title: str,
               variant: str | None) -> Any:
    """The one result of `found` with this file and full title (and variant), else the
    error: NOT_FOUND for none, VALIDATION_ERROR for several."""
    from redline.sdk.exceptions import NotFoundError, ValidationError

    def path(text: str | None) -> str:
        text = (text or "").replace("\\", "/")
        return text.removeprefix("./")

    matches = [t for t in found if (t.full_title or t.title) == full_title
               and path(t.file_path) == path(file_path)
               and (variant is None or t.variant == variant)]
    if len(matches) == 1:
        return matches[0]
    where = f"{file_path} › {full_title}" + (f" [{variant}]" if variant else "")
    if not matches:
        raise NotFoundError(f"Run {run_id} has no test {where}",
                            details={"field": "test", "reason": "not_found"},
                            next_action="List the run's tests: `redline tests list --run "
                            f"{run_id}`.")
    raise ValidationError(f"Several tests of run {run_id} are {where}: name the variant ("
                          + ", ".join(sorted(str(t.variant) for t in matches)) + ")",
                          details={"field": "variant", "reason": "ambiguous",
                                   "testIds": [t.id for t in matches]})


def _token_of(result: Any) -> str:
    return result["token"] if isinstance(result, dict) else result.token


class Teams(Resource):
    def list(self, *, limit: int | None = None, offset: int | None = None,
             cursor: str | None = None) -> m.Page[m.Team]:
        return self._call("GET", "/api/teams", params=_page(limit, offset, cursor),
                          model=m.Page[m.Team])

    def iter(self, *, limit: int | None = None):
        return self._iter("GET", "/api/teams", params=_page(limit, None, None),
                          model=m.Page[m.Team])

    def create(self, name: str, *, idempotency_key: str | None = None) -> m.Team:
        return self._call("POST", "/api/teams", json={"name": name}, model=m.Team,
                          idempotency_key=idempotency_key, verify="`redline teams list`")

    def get(self, team_id: str) -> m.Team:
        return self._call("GET", f"/api/teams/{team_id}", model=m.Team)

    def rename(self, team_id: str, name: str) -> m.Team:
        return self._call("PATCH", f"/api/teams/{team_id}", json={"name": name}, model=m.Team,
                          verify=f"`redline teams get {team_id}`")

    def delete(self, team_id: str) -> m.Deleted:
        return self._call("DELETE", f"/api/teams/{team_id}", model=m.Deleted,
                          verify=f"`redline teams get {team_id}`")

    def usage(self, team_id: str) -> m.Usage:
        """Executed runs' runner-seconds this calendar month (UTC): used, left (null: no
        limit) and each project's share."""
        return self._call("GET", f"/api/teams/{team_id}/usage", model=m.Usage)

    def set_execution_budget(self, team_id: str, seconds: int | None) -> m.Team:
        """Admins: the runner-seconds a calendar month may use (None: no limit). Triggering
        with nothing left is `InsufficientCreditsError`."""
        return self._call("PATCH", f"/api/teams/{team_id}",
                          json={"executionBudgetSeconds": seconds}, model=m.Team,
                          verify=f"`redline usage --team {team_id}`")


class Members(Resource):
    def list(self, team_id: str, *, limit: int | None = None, offset: int | None = None,
             cursor: str | None = None) -> m.Page[m.Member]:
        return self._call("GET", "/api/team-members",
                          params={"teamId": team_id, **_page(limit, offset, cursor)},
                          model=m.Page[m.Member])

    def iter(self, team_id: str, *, limit: int | None = None):
        return self._iter("GET", "/api/team-members",
                          params={"teamId": team_id, **_page(limit, None, None)},
                          model=m.Page[m.Member])

    def invite(self, team_id: str, email: str, role: str = "member") -> m.Invitation:
        """An invitation (7 days); its `accept_url`/`accept_token` are in this result once."""
        return self._call("POST", "/api/team-members",
                          json={"teamId": team_id, "email": email, "role": role},
                          model=m.Invitation, verify=f"`redline invitations list {team_id}`")

    def set_role(self, member_id: str, role: str) -> m.Member:
        return self._call("PATCH", f"/api/team-members/{member_id}", json={"role": role},
                          model=m.Member)

    def remove(self, member_id: str) -> m.Deleted:
        return self._call("DELETE", f"/api/team-members/{member_id}", model=m.Deleted)


class Invitations(Resource):
    def list(self, team_id: str, *, limit: int | None = None, offset: int | None = None,
             cursor: str | None = None) -> m.Page[m.Invitation]:
        return self._call("GET", "/api/invitations",
                          params={"teamId": team_id, **_page(limit, offset, cursor)},
                          model=m.Page[m.Invitation])

    def iter(self, team_id: str, *, limit: int | None = None):
        return self._iter("GET", "/api/invitations",
                          params={"teamId": team_id, **_page(limit, None, None)},
                          model=m.Page[m.Invitation])

    def revoke(self, invitation_id: str) -> m.Deleted:
        return self._call("DELETE", f"/api/invitations/{invitation_id}", model=m.Deleted)

    def accept(self, invitation_id: str, *, token: str | None = None,
               password: str | None = None, name: str | None = None) -> m.Accepted:
        body = clean({"token": token, "password": password, "name": name})
        return self._call("POST", f"/api/invitations/{invitation_id}/accept", json=body,
                          model=m.Accepted, idempotent=False)


class Projects(Resource):
    def list(self, team_id: str, *, limit: int | None = None, offset: int | None = None,
             cursor: str | None = None) -> m.Page[m.Project]:
        return self._call("GET", "/api/projects",
                          params={"teamId": team_id, **_page(limit, offset, cursor)},
                          model=m.Page[m.Project])

    def iter(self, team_id: str, *, limit: int | None = None):
        return self._iter("GET", "/api/projects",
                          params={"teamId": team_id, **_page(limit, None, None)},
                          model=m.Page[m.Project])

    def create(self, name: str, team_id: str, *,
               idempotency_key: str | None = None) -> m.Project:
        return self._call("POST", "/api/projects", json={"name": name, "teamId": team_id},
                          model=m.Project, idempotency_key=idempotency_key,
                          verify=f"`redline projects list --team {team_id}`")

    def get(self, project_id: str | None = None) -> m.Project:
        """A project (default: the implied one)."""
        return self._c._call(_PathProjectCall(  # type: ignore[attr-defined]
            "GET", "/api/projects/{project}", model=m.Project, project_id=project_id))

    def rename(self, project_id: str, name: str) -> m.Project:
        return self._call("PATCH", f"/api/projects/{project_id}", json={"name": name},
                          model=m.Project, verify=f"`redline projects get {project_id}`")

    def delete(self, project_id: str) -> m.Deleted:
        return self._call("DELETE", f"/api/projects/{project_id}", model=m.Deleted,
                          verify=f"`redline projects get {project_id}`")

    def get_settings(self, project_id: str | None = None) -> m.ProjectSettings:
        """The settings, with `etag` naming the version read."""
        return self._c._call(_PathProjectCall(  # type: ignore[attr-defined]
            "GET", "/api/projects/{project}/settings", model=m.ProjectSettings,
            project_id=project_id, keep_etag=True))

    def update_settings(self, project_id: str | None = None, *,
                        data_retention_days: int | None = None,
                        flakiness_threshold: float | None = None,
                        auto_quarantine_enabled: bool | None = None,
                        if_match: str | None = None) -> m.ProjectSettings:
        """Change only the fields given. With `if_match` (a `get_settings().etag`), a change
        made by someone else since that read raises `PreconditionFailedError`."""
        body = _camel({"data_retention_days": data_retention_days,
                       "flakiness_threshold": flakiness_threshold,
                       "auto_quarantine_enabled": auto_quarantine_enabled})
        return self._c._call(_PathProjectCall(  # type: ignore[attr-defined]
            "PATCH", "/api/projects/{project}/settings", json=body, model=m.ProjectSettings,
            project_id=project_id, keep_etag=True,
            headers={"If-Match": if_match} if if_match else None))


class _PathProjectCall(Call):
    """A call whose path holds the project id (`{project}`), implied when not given."""

    def __init__(self, method: str, path: str, project_id: str | None = None, **kwargs):
        super().__init__(method, path, **kwargs)
        self._template = path
        self._project_id = project_id
        if project_id:
            self.path = path.format(project=project_id)

    def has_project_placeholder(self) -> bool:
        return not self._project_id

    def needs_project(self) -> bool:
        return not self._project_id

    def with_project(self, project_id: str | None) -> Call:
        self._project_id = project_id
        self.path = self._template.format(project=project_id)
        return self


class ApiKeys(Resource):
    def list(self, project_id: str | None = None, *, limit: int | None = None,
             offset: int | None = None, cursor: str | None = None) -> m.Page[m.ApiKey]:
        return self._call("GET", "/api/api-keys",
                          params={"projectId": _required(project_id),
                                  **_page(limit, offset, cursor)},
                          model=m.Page[m.ApiKey])

    def iter(self, project_id: str | None = None, *, limit: int | None = None):
        return self._iter("GET", "/api/api-keys",
                          params={"projectId": _required(project_id),
                                  **_page(limit, None, None)},
                          model=m.Page[m.ApiKey])

    def create(self, name: str, project_id: str | None = None, *,
               scopes: Sequence[str] | None = None, expires_at: str | None = None,
               idempotency_key: str | None = None) -> m.ApiKeyCreated:
        """A new key; its whole value (`key`) is in this result only."""
        body = {"projectId": _required(project_id), "name": name,
                **_camel({"scopes": list(scopes) if scopes is not None else None,
                          "expires_at": expires_at})}
        return self._call("POST", "/api/api-keys", json=body, model=m.ApiKeyCreated,
                          idempotency_key=idempotency_key, verify="`redline keys list`")

    def update(self, key_id: str, *, is_active: bool | None = None,
               name: str | None = None) -> m.ApiKeyUpdated:
        return self._call("PATCH", f"/api/api-keys/{key_id}",
                          json=_camel({"is_active": is_active, "name": name}),
                          model=m.ApiKeyUpdated)

    def deactivate(self, key_id: str) -> m.ApiKeyUpdated:
        return self.update(key_id, is_active=False)

    def activate(self, key_id: str) -> m.ApiKeyUpdated:
        return self.update(key_id, is_active=True)

    def delete(self, key_id: str) -> m.Deleted:
        return self._call("DELETE", f"/api/api-keys/{key_id}", model=m.Deleted)


# The calls of executed runs, built here for the resources and for the command handle, which
# always decodes models (`raw=False`) whatever the client's `raw`: it reads what it gets.

def trigger_call(plan_id: str, *, branch: str | None = None, ref: str | None = None,
                 commit_sha: str | None = None, env: dict[str, Any] | None = None,
                 source: str | None = None, idempotency_key: str | None = None,
                 raw: bool | None = None) -> Call:
    body = _camel({"branch": branch, "ref": ref, "commit_sha": commit_sha, "env": env,
                   "source": source})
    return Call("POST", f"/api/plans/{plan_id}/runs", json=body, model=m.Run,
                idempotency_key=idempotency_key, raw=raw,
                verify=f"`redline runs list --plan {plan_id}`")


def log_call(run_id: str, offset: int = 0, limit: int | None = None,
             raw: bool | None = None) -> Call:
    return Call("GET", f"/api/runs/{run_id}/log",
                params=clean({"offset": offset, "limit": limit}), model=m.LogChunk, raw=raw)


def cancel_call(run_id: str, raw: bool | None = None) -> Call:
    return Call("POST", f"/api/runs/{run_id}/cancel", model=m.Run, raw=raw,
                verify=f"`redline runs get {run_id}`")


def signal_call(run_id: str, signal: str, raw: bool | None = None) -> Call:
    return Call("POST", f"/api/runs/{run_id}/signal", json={"signal": signal},
                model=m.SignalSent, raw=raw, verify=f"`redline runs get {run_id}`")


class Runs(Resource):
    def create(self, project_id: str | None = None, *, status: str = "running",
               idempotency_key: str | None = None, **fields: Any) -> m.Run:
        """Start a reported run; `fields` are the reference's (`branch`, `commit_sha`,
        `ci_build_id`, `shard_current`, `shard_total`, `tags`, ...) in snake_case."""
        body = {"projectId": _project(project_id), "status": status, **_camel(fields)}
        return self._call("POST", "/api/runs", json=body, model=m.Run,
                          idempotency_key=idempotency_key, verify="`redline runs list`")

    def list(self, project_id: str | None = None, *, status: str | None = None,
             branch: str | None = None, plan_id: str | None = None, limit: int | None = None,
             offset: int | None = None, cursor: str | None = None) -> m.Page[m.Run]:
        """The project's runs, newest first (a summary of each: counts, branch, commit,
        verdict). `status`: queued, running, passed, failed, blocked or cancelled;
        `plan_id`: the runs of one plan."""
        params = {"projectId": _project(project_id),
                  **_camel({"status": status, "branch": branch, "plan_id": plan_id}),
                  **_page(limit, offset, cursor)}
        return self._call("GET", "/api/runs", params=params, model=m.Page[m.Run])

    def iter(self, project_id: str | None = None, *, status: str | None = None,
             branch: str | None = None, plan_id: str | None = None,
             limit: int | None = None):
        """Every run matching the filters, page after page (follows `nextCursor`)."""
        params = {"projectId": _project(project_id),
                  **_camel({"status": status, "branch": branch, "plan_id": plan_id}),
                  **_page(limit, None, None)}
        return self._iter("GET", "/api/runs", params=params, model=m.Page[m.Run])

    def get(self, run_id: str) -> m.Run:
        return self._call("GET", f"/api/runs/{run_id}", model=m.Run)

    def update(self, run_id: str, **fields: Any) -> m.RunUpdated:
        """Finish a run or correct its counts (`status`, `total_tests`, `duration`,
        `shard_current`, ...). A terminal status completes it: statistics and the verdict are
        computed then (`runs.get` shows the verdict)."""
        return self._call("PATCH", f"/api/runs/{run_id}", json=_camel(fields),
                          model=m.RunUpdated, verify=f"`redline runs get {run_id}`")

    def delete(self, run_id: str) -> m.Deleted:
        return self._call("DELETE", f"/api/runs/{run_id}", model=m.Deleted,
                          verify=f"`redline runs get {run_id}`")

    def compare(self, run_id: str, base_run_id: str | None = None) -> m.Comparison:
        """`run_id` against `base_run_id`: new failures, fixed, still failing, new and removed
        tests (the base must be a run of the same project). Without `base_run_id` the server
        picks the base: the previous finished run of the branch, else the default branch's
        newest earlier run (`base_reason` says which; `base_run_id` None: there is none)."""
        params = {"base": base_run_id} if base_run_id is not None else {}
        return self._call("GET", f"/api/runs/{run_id}/compare", params=params,
                          model=m.Comparison)

    def previous(self, run: m.Run | str, *, scan: int = 200):
        """The finished run of the same branch just before `run` (a run or its id), or None:
        the base a pull request's run is compared with. Looks through the branch's newest
        `scan` runs."""
        return self._c._previous_run(run, scan)  # type: ignore[attr-defined]

    def add_tests(self, run_id: str, tests: Iterable[dict[str, Any]], *,
                  idempotency_key: str | None = None) -> m.BatchResult:
        """Report many results in one request (`POST /api/runs/{id}/tests/batch`); each
        result is a dict of the reference's test fields (camelCase or snake_case)."""
        body = {"tests": [_camel(t) for t in tests]}
        return self._call("POST", f"/api/runs/{run_id}/tests/batch", json=body,
                          model=m.BatchResult, idempotency_key=idempotency_key,
                          verify=f"`redline tests list --run {run_id}`")

    def import_report(self, reports: str | os.PathLike | bytes | Sequence[Any],
                      project_id: str | None = None, *, format: str | None = None,
                      idempotency_key: str | None = None, timeout: float | None = None,
                      on_progress: Callable[[int, int], Any] | None = None,
                      **query: Any) -> m.Run:
        """Import report files (JUnit XML, Playwright JSON, CTRF JSON; `format` auto, junit,
        playwright-json or ctrf) as one run; parsing happens on the server. `query` takes
        `branch`, `commit_sha`, `ci_build_id`, `source`, ... Files are streamed, not read
        whole; `on_progress(sent, total)` follows the bytes sent. The answer may take a while
        for a big report: `timeout` defaults to at least 300 s."""
        files: Sequence[Any] = (
            [reports] if isinstance(reports, (str, bytes, os.PathLike)) else reports)
        uploads = [r if isinstance(r, Upload) else Upload("file", r) for r in files]
        if on_progress is not None:
            total = sum(u.size for u in uploads)
            done = [0] * len(uploads)

            def reporter(index):
                def on_read(sent):
                    done[index] = sent
                    on_progress(sum(done), total)
                return on_read

            for index, upload in enumerate(uploads):
                upload.on_read = reporter(index)
        params = {"projectId": _project(project_id), **_camel({"format": format, **query})}
        if timeout is None:
            timeout = max(self._c.timeout, 300.0)
        return self._call("POST", "/api/runs/import", params=params, files=uploads, model=m.Run,
                          idempotency_key=idempotency_key, timeout=timeout,
                          verify="`redline runs list`")

    def wait(self, run_id: str, *, timeout: float | None = None, poll: float | None = None,
             raise_on_failure: bool = False, on_poll: Any = None) -> m.Run:
        """Poll a run until it is finished. `WaitTimeoutError` after `timeout` seconds (the
        run goes on); with `raise_on_failure`, `RunFailedError` unless the verdict (quarantine
        honoured) is `passed`. `on_poll(run)` is called after every poll."""
        return self._c._wait(run_id, timeout, poll, raise_on_failure,  # type: ignore
                             on_poll)

    # -- executed runs ----------------------------------------------------------------------

    def cancel(self, run_id: str) -> m.Run:
        """Stop an executed run (idempotent): a queued one is `cancelled` at once; a running
        one gets SIGTERM (its whole process group), SIGKILL after the grace period, then is
        `cancelled` (`cancel_requested` meanwhile); a finished one is answered unchanged."""
        return self._c._call(cancel_call(run_id))  # type: ignore[attr-defined]

    def signal(self, run_id: str, signal: str) -> m.SignalSent:
        """Deliver `INT`, `TERM`, `HUP`, `KILL`, `QUIT`, `USR1` or `USR2` to a running
        command's process group. `ConflictError` before its process started
        (`details.reason: "not_started"`) or after it finished (`"finished"`)."""
        return self._c._call(signal_call(run_id, signal))  # type: ignore[attr-defined]

    def log(self, run_id: str, *, offset: int = 0, limit: int | None = None) -> m.LogChunk:
        """One window of an executed run's output, from byte `offset`: `text`, `next_offset`
        (pass it back) and `complete` (the run ended and this is the end)."""
        return self._c._call(log_call(run_id, offset, limit))  # type: ignore[attr-defined]

    def follow_log(self, run_id: str, *, offset: int = 0, poll: float | None = None,
                   follow: bool = True, timeout: float | None = None):
        """The output as it arrives (an iterator of text; an async iterator on an
        `AsyncClient`), from byte `offset` until the run has ended. A dropped connection is
        retried from the offset reached (the catalog's NETWORK_ERROR policy), then
        `ConnectionClosedError` (`.offset`: where to resume). `follow=False`: what there is
        now, then stop. `timeout`: `WaitTimeoutError` after that many seconds (the run goes
        on; `details["offset"]` is where to read on)."""
        return self._c._follow_log(run_id, offset, poll, follow,  # type: ignore[attr-defined]
                                   timeout)


class Tests(Resource):
    def create(self, run_id: str, *, title: str, full_title: str, status: str, duration: int,
               project_id: str | None = None, idempotency_key: str | None = None,
               **fields: Any) -> m.TestResult:
        body = {"runId": run_id, "title": title, "fullTitle": full_title, "status": status,
                "duration": duration, **_camel({"project_id": project_id, **fields})}
        return self._call("POST", "/api/tests", json=body, model=m.TestResult,
                          idempotency_key=idempotency_key,
                          verify=f"`redline tests list --run {run_id}`")

    def list(self, project_id: str | None = None, *, run_id: str | None = None,
             status: str | None = None, search: str | None = None, limit: int | None = None,
             offset: int | None = None, cursor: str | None = None) -> m.Page[m.TestResult]:
        params = {"projectId": _project(project_id),
                  **_camel({"run_id": run_id, "status": status, "search": search}),
                  **_page(limit, offset, cursor)}
        return self._call("GET", "/api/tests", params=params, model=m.Page[m.TestResult])

    def iter(self, project_id: str | None = None, *, run_id: str | None = None,
             status: str | None = None, search: str | None = None, limit: int | None = None):
        params = {"projectId": _project(project_id),
                  **_camel({"run_id": run_id, "status": status, "search": search}),
                  **_page(limit, None, None)}
        return self._iter("GET", "/api/tests", params=params, model=m.Page[m.TestResult])

    def get(self, test_id: str) -> m.TestResult:
        return self._call("GET", f"/api/tests/{test_id}", model=m.TestResult)

    def find(self, run_id: str, *, file_path: str, full_title: str,
             variant: str | None = None) -> m.TestResult:
        """The result of a run with this file and full title (and variant, e.g. a Playwright
        project); `NotFoundError` when there is none, `ValidationError` when several match
        and no variant tells them apart."""
        call = Call("GET", "/api/tests", params={"projectId": IMPLIED_PROJECT,
                                                  "runId": run_id, "search": full_title,
                                                  "limit": 500},
                    model=m.Page[m.TestResult], raw=False)
        page = self._c._call(call)  # type: ignore[attr-defined]
        if inspect.isawaitable(page):
            return self._pick_later(page, run_id, file_path, full_title, variant)  # type: ignore
        return _pick_test(page.data, run_id, file_path, full_title, variant)

    @staticmethod
    async def _pick_later(pending, *args):
        return _pick_test((await pending).data, *args)

    def steps(self, test_id: str) -> m.StepList:
        """A result's steps (actions, assertions, hooks), nested; `walk()` flattens them."""
        return self._call("GET", f"/api/tests/{test_id}/steps", model=m.StepList)

    def history(self, test_id: str, *, branch: str | None = None) -> m.History:
        """The last 20 results of the test's case across runs, newest first. `test_id` is a
        result (`test_...`) or a case (`tc_...`)."""
        return self._call("GET", f"/api/tests/{test_id}/history",
                          params=clean({"branch": branch}), model=m.History)


class TestSuites(Resource):
    __test__ = False  # not a pytest test class

    def create(self, run_id: str, title: str, *, file_path: str | None = None,
               parent_suite_id: str | None = None, project_id: str | None = None) -> m.Suite:
        body = {"runId": run_id, "projectId": _project(project_id), "title": title,
                **_camel({"file_path": file_path, "parent_suite_id": parent_suite_id})}
        return self._call("POST", "/api/test-suites", json=body, model=m.Suite)

    def list(self, run_id: str, project_id: str | None = None) -> m.SuiteTree:
        """A run's suite tree: the top-level suites with their `children`."""
        return self._call("GET", "/api/test-suites",
                          params={"runId": run_id, "projectId": _project(project_id)},
                          model=m.SuiteTree)


class TestCases(Resource):
    """Tests by their identity across runs (file + full title + variant), with statistics."""

    __test__ = False  # not a pytest test class

    @staticmethod
    def _params(project_id, status, file, tag, search, sort):
        return {"projectId": _project(project_id),
                **_camel({"status": status, "file": file, "tag": tag, "search": search,
                          "sort": sort})}

    def list(self, project_id: str | None = None, *, status: str | None = None,
             file: str | None = None, tag: str | None = None, search: str | None = None,
             sort: str | None = None, limit: int | None = None, offset: int | None = None,
             cursor: str | None = None) -> m.Page[m.TestCase]:
        """`status`: new, stable, flaky or broken; `file`: exact file path; `search`: in the
        title or path; `sort`: flakiness (default), failure-rate, duration or title."""
        params = {**self._params(project_id, status, file, tag, search, sort),
                  **_page(limit, offset, cursor)}
        return self._call("GET", "/api/test-cases", params=params, model=m.Page[m.TestCase])

    def iter(self, project_id: str | None = None, *, status: str | None = None,
             file: str | None = None, tag: str | None = None, search: str | None = None,
             sort: str | None = None, limit: int | None = None):
        params = {**self._params(project_id, status, file, tag, search, sort),
                  **_page(limit, None, None)}
        return self._iter("GET", "/api/test-cases", params=params, model=m.Page[m.TestCase])

    def get(self, test_id: str) -> m.TestCaseDetail:
        """A case (`tc_...`, or any of its results `test_...`) with its flakiness evidence,
        the runs it failed in, the score's formula and its quarantine history."""
        return self._call("GET", f"/api/test-cases/{test_id}", model=m.TestCaseDetail)


def _time(value: datetime | str | None) -> str | None:
    """A time for the API: ISO 8601; a naive datetime is taken as UTC."""
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Flakiness(Resource):
    def list(self, project_id: str | None = None, *, min_score: float | None = None,
             quarantined: bool | None = None, limit: int | None = None,
             offset: int | None = None, cursor: str | None = None) -> m.FlakinessPage:
        """Flaky test cases, highest score first, with the project's summary. Without
        `min_score`: every case with flaky evidence or in quarantine."""
        params = {"projectId": _project(project_id),
                  **_camel({"min_score": min_score, "quarantined": quarantined}),
                  **_page(limit, offset, cursor)}
        return self._call("GET", "/api/flakiness", params=params, model=m.FlakinessPage)

    def iter(self, project_id: str | None = None, *, min_score: float | None = None,
             quarantined: bool | None = None, limit: int | None = None):
        params = {"projectId": _project(project_id),
                  **_camel({"min_score": min_score, "quarantined": quarantined}),
                  **_page(limit, None, None)}
        return self._iter("GET", "/api/flakiness", params=params, model=m.FlakinessPage)

    def set_quarantine(self, test_id: str, quarantined: bool, project_id: str | None = None, *,
                       reason: str | None = None, owner: str | None = None,
                       expires_at: datetime | str | None = None) -> m.QuarantineResult:
        body = {"testId": test_id, "isQuarantined": quarantined,
                **_camel({"project_id": project_id, "reason": reason, "owner": owner,
                          "expires_at": _time(expires_at)})}
        return self._call("POST", "/api/flakiness", json=body, model=m.QuarantineResult,
                          verify=f"`redline cases get {test_id}`")

    def quarantine(self, test_id: str, project_id: str | None = None, *,
                   reason: str | None = None, owner: str | None = None,
                   expires_at: datetime | str | None = None) -> m.QuarantineResult:
        """Quarantine a test case (a result id resolves to its case): its failures stop
        failing the verdict of runs started afterwards. `owner`: who is fixing it;
        `expires_at`: when the quarantine lifts by itself (a datetime or ISO 8601)."""
        return self.set_quarantine(test_id, True, project_id, reason=reason, owner=owner,
                                   expires_at=expires_at)

    def unquarantine(self, test_id: str, project_id: str | None = None, *,
                     reason: str | None = None) -> m.QuarantineResult:
        return self.set_quarantine(test_id, False, project_id, reason=reason)


class ErrorGroups(Resource):
    def list(self, project_id: str | None = None, *, since: datetime | str | None = None,
             limit: int | None = None, offset: int | None = None,
             cursor: str | None = None) -> m.Page[m.ErrorGroup]:
        """Failures grouped by their normalised error, most frequent first, over the failures
        since `since` (default: 30 days ago)."""
        params = {"projectId": _project(project_id), **clean({"since": _time(since)}),
                  **_page(limit, offset, cursor)}
        return self._call("GET", "/api/errors", params=params, model=m.Page[m.ErrorGroup])

    def iter(self, project_id: str | None = None, *, since: datetime | str | None = None,
             limit: int | None = None):
        params = {"projectId": _project(project_id), **clean({"since": _time(since)}),
                  **_page(limit, None, None)}
        return self._iter("GET", "/api/errors", params=params, model=m.Page[m.ErrorGroup])


class Trends(Resource):
    def get(self, project_id: str | None = None, *, group_by: str | None = None,
            branch: str | None = None, days: int | None = None) -> m.Trends:
        """Pass rate, counts, duration and flaky count over the last `days` (default 30), per
        `day` (default) or per `run`, with the slowest test cases."""
        params = _camel({"group_by": group_by, "branch": branch, "days": days})
        return self._c._call(_PathProjectCall(  # type: ignore[attr-defined]
            "GET", "/api/projects/{project}/trends", params=params, model=m.Trends,
            project_id=project_id))


class Artifacts(Resource):
    def upload(self, file: str | os.PathLike | bytes, *, type: str, run_id: str,
               test_id: str | None, project_id: str | None = None,
               filename: str | None = None, content_type: str | None = None,
               on_progress: Callable[[int, int], Any] | None = None,
               idempotency_key: str | None = None) -> m.Artifact:
        """Upload a screenshot, video, trace or report of a run; the result has a signed URL.

        `test_id` is the test result (`test_...`) it belongs to, or None for an artifact of
        the whole run: it is always given, so an artifact never ends up unlinked because a
        file name matched no test (`tests.find` turns a file and title into the id).
        `on_progress(sent, total)` follows the bytes sent. `idempotency_key`: the same upload
        sent again with the same key (within 24 hours) answers the first artifact instead of
        storing a second copy."""
        upload = Upload("file", file, filename, content_type)
        if on_progress is not None:
            total = upload.size
            upload.on_read = lambda sent: on_progress(sent, total)
        # the fields go in the query: the server checks the type's cap and the tenancy before
        # the first byte of the file
        params = {"type": type, "runId": run_id, "projectId": _project(project_id),
                  **_camel({"test_id": test_id})}
        return self._call("POST", "/api/upload", params=params, files=[upload],
                          model=m.Artifact, idempotency_key=idempotency_key,
                          verify=f"`redline artifacts list --run {run_id}`")

    def list(self, *, run_id: str | None = None, test_id: str | None = None,
             type: str | None = None, limit: int | None = None,
             cursor: str | None = None) -> m.Page[m.Artifact]:
        """The artifacts of a run or of a test, oldest first, each with a fresh signed URL."""
        params = {**_camel({"run_id": run_id, "test_id": test_id, "type": type}),
                  **_page(limit, None, cursor)}
        return self._call("GET", "/api/artifacts", params=params, model=m.Page[m.Artifact])

    def iter(self, *, run_id: str | None = None, test_id: str | None = None,
             type: str | None = None, limit: int | None = None):
        params = {**_camel({"run_id": run_id, "test_id": test_id, "type": type}),
                  **_page(limit, None, None)}
        return self._iter("GET", "/api/artifacts", params=params, model=m.Page[m.Artifact])

    def get(self, artifact_id: str, *, expires_in: int | None = None,
            download: bool = False) -> m.Artifact:
        """An artifact with a fresh signed `url` (valid `expires_in` seconds; `download`: a
        link that always downloads)."""
        params = clean({"expiresIn": expires_in, "download": download or None})
        return self._call("GET", f"/api/artifacts/{artifact_id}", params=params,
                          model=m.Artifact)

    def download(self, artifact_id: str, path: str | os.PathLike) -> m.Artifact:
        """Write an artifact's file to `path` (streamed); returns the artifact."""
        return self._c._download(artifact_id, path)  # type: ignore[attr-defined]

    def delete(self, artifact_id: str) -> m.Deleted:
        return self._call("DELETE", f"/api/artifacts/{artifact_id}", model=m.Deleted)


class Webhooks(Resource):
    def list(self, project_id: str | None = None, *, limit: int | None = None,
             cursor: str | None = None) -> m.Page[m.Webhook]:
        return self._call("GET", "/api/webhooks",
                          params={"projectId": _required(project_id), **_page(limit, None, cursor)},
                          model=m.Page[m.Webhook])

    def get(self, webhook_id: str) -> m.Webhook:
        return self._call("GET", f"/api/webhooks/{webhook_id}", model=m.Webhook)

    def create(self, url: str, events: Sequence[str], project_id: str | None = None, *,
               headers: dict[str, str] | None = None, secret: str | None = None) -> m.Webhook:
        """A new webhook; the answer holds its signing secret (shown this once)."""
        body = {"projectId": _required(project_id), "url": url, "events": list(events),
                **_camel({"headers": headers, "secret": secret})}
        return self._call("POST", "/api/webhooks", json=body, model=m.Webhook)

    def update(self, webhook_id: str, *, url: str | None = None,
               events: Sequence[str] | None = None, headers: dict[str, str] | None = None,
               secret: str | None = None, is_active: bool | None = None) -> m.Webhook:
        body = _camel({"url": url, "events": list(events) if events is not None else None,
                       "headers": headers, "secret": secret, "is_active": is_active})
        return self._call("PATCH", f"/api/webhooks/{webhook_id}", json=body, model=m.Webhook)

    def delete(self, webhook_id: str) -> m.Deleted:
        return self._call("DELETE", f"/api/webhooks/{webhook_id}", model=m.Deleted)

    def deliveries(self, webhook_id: str, *, limit: int | None = None,
                   cursor: str | None = None) -> m.Page[m.Delivery]:
        """A webhook's deliveries, newest first."""
        return self._call("GET", f"/api/webhooks/{webhook_id}/deliveries",
                          params=_page(limit, None, cursor), model=m.Page[m.Delivery])

    def redeliver(self, webhook_id: str, delivery_id: str) -> m.Delivery:
        """Send a delivery again (same `webhook-id`, so a receiver can drop a duplicate)."""
        return self._call("POST", f"/api/webhooks/{webhook_id}/deliveries/{delivery_id}/"
                          "redeliver", model=m.Delivery)

    def ping(self, webhook_id: str) -> m.Delivery:
        """Send a test event."""
        return self._call("POST", f"/api/webhooks/{webhook_id}/ping", model=m.Delivery)


class Plans(Resource):
    """Plans: how to run a project's suite on Redline's runners (executed runs).

    `command(plan_id, ...)` is the handle to run one, like Go's `exec.Cmd`: `start()`,
    `wait()`, `run()`, `signal()`, `cancel()`, `log()`.
    """

    def list(self, project_id: str | None = None, *, limit: int | None = None,
             offset: int | None = None, cursor: str | None = None) -> m.Page[m.Plan]:
        return self._call("GET", "/api/plans",
                          params={"projectId": _project(project_id),
                                  **_page(limit, offset, cursor)},
                          model=m.Page[m.Plan])

    def iter(self, project_id: str | None = None, *, limit: int | None = None):
        return self._iter("GET", "/api/plans",
                          params={"projectId": _project(project_id), **_page(limit, None, None)},
                          model=m.Page[m.Plan])

    def get(self, plan_id: str) -> m.Plan:
        return self._call("GET", f"/api/plans/{plan_id}", model=m.Plan)

    def create(self, name: str, command: Sequence[str] | None, project_id: str | None = None,
               *, idempotency_key: str | None = None, **fields: Any) -> m.Plan:
        """A plan (needs `project:admin`). `command` is an argv list (never a shell string;
        None: a draft). `fields`: `source` (`{"path": DIR}` or `{"git": URL, "ref": REF}`),
        `env` (a value, or `{"value": ..., "secret": True}`), `timeout_seconds`,
        `queue_timeout_seconds`, `report_paths`, `max_concurrent_runs`, `schedule` (cron),
        `sandbox`, `network`."""
        body = {"projectId": _project(project_id), "name": name,
                **_camel({"command": list(command) if command is not None else None,
                          **fields})}
        return self._call("POST", "/api/plans", json=body, model=m.Plan,
                          idempotency_key=idempotency_key, verify="`redline plans list`")

    def update(self, plan_id: str, *, if_match: int | str | None = None,
               **fields: Any) -> m.Plan:
        """Change the fields given (as in `create`; `schedule=""` removes the schedule).
        `if_match`: the `code_version` this change was made against; if the plan changed
        since, `PreconditionFailedError` (`details.current`, `details.sent`): fetch it
        again, reapply, retry."""
        headers = {"If-Match": str(if_match)} if if_match is not None else None
        body = _camel({k: list(v) if k in ("command", "report_paths") and v is not None
                       else v for k, v in fields.items()})
        return self._call("PATCH", f"/api/plans/{plan_id}", json=body, model=m.Plan,
                          headers=headers, verify=f"`redline plans show {plan_id}`")

    def delete(self, plan_id: str) -> m.Deleted:
        """Its queued runs are cancelled and its running ones asked to stop; its runs stay."""
        return self._call("DELETE", f"/api/plans/{plan_id}", model=m.Deleted,
                          verify=f"`redline plans show {plan_id}`")

    def trigger(self, plan_id: str, *, branch: str | None = None, ref: str | None = None,
                commit_sha: str | None = None, env: dict[str, Any] | None = None,
                source: str | None = None, idempotency_key: str | None = None) -> m.Run:
        """Queue a run of the plan (202: the run, `queued`). `CONFLICT` with
        `maxConcurrentRuns` runs in flight (`details.runId`), `INSUFFICIENT_CREDITS` with the
        team's budget spent. `command(...)` wraps this in a handle."""
        return self._c._call(trigger_call(  # type: ignore[attr-defined]
            plan_id, branch=branch, ref=ref, commit_sha=commit_sha, env=env, source=source,
            idempotency_key=idempotency_key))

    def command(self, plan_id: str, *, branch: str | None = None, ref: str | None = None,
                commit_sha: str | None = None, env: dict[str, Any] | None = None,
                source: str = "api", idempotency_key: str | None = None):
        """A handle on one run of the plan, not started yet (like Go's `exec.Command`):
        `start()`, `wait(timeout=)`, `run()`, `signal("INT")`, `cancel()`, `log()`,
        `run_id`, `exit_code`. On an `AsyncClient` its methods are awaited."""
        from redline.sdk.commands import AsyncCommand, Command

        cls = AsyncCommand if self._c.is_async else Command  # type: ignore[attr-defined]
        return cls(self._c, plan_id, branch=branch, ref=ref, commit_sha=commit_sha, env=env,
                   source=source, idempotency_key=idempotency_key)
