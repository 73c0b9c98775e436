"""What `Client` and `AsyncClient` share: configuration, request building, error mapping and
retry decisions. Only the sending and the sleeping differ between the two, so everything here
is plain functions and values (a retry decision is a number of seconds or None, never a sleep).
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from redline import __version__
from redline.errors import CATALOG, kind_for_status
from redline.sdk.exceptions import (
    APIError,
    NetworkError,
    RedlineError,
    TimeoutError,
    TransportError,
    ValidationError,
    error_from_response,
)
from redline.sdk.settings import DEFAULT_TIMEOUT, DEFAULT_URL, ClientSettings

#: a Retry-After longer than this is not slept through: the error is raised at once
DEFAULT_MAX_RETRY_DELAY = 60.0
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _Placeholder:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: a project id the server can imply (from the API key): the client's default project when it
#: has one, else left out of the request
IMPLIED_PROJECT: Any = _Placeholder("IMPLIED_PROJECT")
#: a project id the request must carry: the client's default, else the API key's own project
#: (asked once from /api/me), else a client-side ValidationError
REQUIRED_PROJECT: Any = _Placeholder("REQUIRED_PROJECT")
_PLACEHOLDERS = (IMPLIED_PROJECT, REQUIRED_PROJECT)


@dataclass
class Upload:
    """A file part of a multipart request: a path (opened per attempt, streamed) or bytes."""

    field: str
    source: str | os.PathLike | bytes
    filename: str | None = None
    content_type: str | None = None
    #: called with the bytes of this file sent so far, as they are read
    on_read: Callable[[int], Any] | None = None

    @property
    def size(self) -> int:
        return len(self.source) if isinstance(self.source, bytes) else os.path.getsize(
            self.source)

    def open(self):
        name = self.filename or (Path(self.source).name if not isinstance(self.source, bytes)
                                 else "upload")
        ctype = (self.content_type or mimetypes.guess_type(name)[0]
                 or "application/octet-stream")
        if isinstance(self.source, bytes):
            return name, self.source, ctype
        # closed by the client after the attempt (a retry reopens it)
        handle = open(self.source, "rb")  # noqa: SIM115
        if self.on_read is not None:
            handle = _CountingReader(handle, self.on_read)
        return name, handle, ctype


class _CountingReader:
    """A file that reports how much of it has been read (httpx streams it in chunks)."""

    def __init__(self, handle, on_read: Callable[[int], Any]):
        self._handle = handle
        self._on_read = on_read
        self._done = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._done += len(chunk)
        self._on_read(self._done)
        return chunk

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def close(self) -> None:
        self._handle.close()


@dataclass
class Call:
    """One API call a resource method asks for; the client sends it (with retries)."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    data: dict[str, Any] | None = None
    files: list[Upload] = field(default_factory=list)
    headers: dict[str, str] | None = None
    #: how to decode a 2xx body: a pydantic type, or None for the raw JSON
    model: Any = None
    #: send an Idempotency-Key (writes only); False for sign-in and first-run setup
    idempotent: bool = True
    idempotency_key: str | None = None
    timeout: float | None = None
    #: how to check whether a timed-out write landed (named in TimeoutError's message)
    verify: str | None = None
    #: copy the response's ETag onto the result's `etag` (for a later If-Match)
    keep_etag: bool = False
    #: answer the server's JSON instead of `model` (None: as the client says)
    raw: bool | None = None

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS

    def has_project_placeholder(self) -> bool:
        return any(v is p for v in _values(self) for p in _PLACEHOLDERS)

    def needs_project(self) -> bool:
        """Must a project id be found before sending (one the server cannot imply)?"""
        return any(value is REQUIRED_PROJECT for value in _values(self))

    def with_project(self, project_id: str | None) -> Call:
        """Fill the placeholders with `project_id`, or drop them when it is None."""

        def fill(mapping):
            if not isinstance(mapping, dict):
                return mapping
            filled = {}
            for key, value in mapping.items():
                if any(value is p for p in _PLACEHOLDERS):
                    if project_id is None:
                        continue
                    value = project_id
                filled[key] = value
            return filled

        self.params, self.json, self.data = fill(self.params), fill(self.json), fill(self.data)
        return self


def _values(call: Call):
    for mapping in (call.params, call.json, call.data):
        if isinstance(mapping, dict):
            yield from mapping.values()


def clean(mapping: dict[str, Any]) -> dict[str, Any]:
    """Drop None values (an absent optional field), keep everything else."""
    return {k: v for k, v in mapping.items() if v is not None}


def query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


@dataclass(frozen=True)
class Credentials:
    api_key: str | None = None
    token: str | None = None

    def headers(self) -> dict[str, str]:
        if self.api_key:
            return {"X-API-Key": self.api_key}
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        return {}


def tls_options(url: str) -> dict[str, Any]:
    """httpx client options for the server at `url`. An `http://` server reached without a
    proxy never makes a TLS connection (every request goes to `url`; redirects are not
    followed), so the client skips loading the CA store, which costs tens of milliseconds at
    each start of the CLI. `https://` (or a proxy) keeps httpx's certificate verification."""
    proxied = any(os.environ.get(name) for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY",
                                                     "all_proxy"))
    if url.startswith("http://") and not proxied:
        return {"verify": False}
    return {}


def multipart_boundary(idempotency_key: str) -> str:
    """The multipart boundary of a write with this key: every retry sends the same bytes."""
    return "redline-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]


def new_idempotency_key() -> str:
    return f"rlsdk_{uuid.uuid4().hex}"


def retry_delay(error: RedlineError, attempt: int, call: Call, idempotency_key: str | None,
                max_retry_delay: float, max_retries: int | None = None,
                rand: Callable[[], float] = random.random) -> float | None:
    """Seconds to wait before retrying `call` after `error`, or None to raise it.

    `attempt` is how many retries this error's code has had already. The policy is the
    catalog's (`errors.CATALOG[code].retry`); `max_retries` caps it further (0: never retry).
    A write is retried only when it carries an idempotency key, so the server can tell a
    retry from a second request.
    """
    code = error.code
    kind = CATALOG.get(code)
    if kind is None and isinstance(error, APIError) and error.status:
        kind = kind_for_status(error.status)  # a code from a newer server: its status class
    if kind is None:
        return None
    policy = kind.retry
    limit = policy.max_retries if max_retries is None else min(max_retries, policy.max_retries)
    if attempt >= limit:
        return None
    if call.is_write and not idempotency_key:
        return None
    retry_after = getattr(error, "retry_after", None)
    if policy.honour_retry_after:
        delay = retry_after if retry_after is not None else 1.0
    elif policy.exponential:
        ceiling = policy.delay * (2 ** attempt)
        delay = ceiling / 2 + rand() * ceiling / 2  # "equal jitter": never a thundering zero
        if retry_after is not None:
            delay = max(delay, retry_after)
    else:
        delay = policy.delay
    if delay > max_retry_delay:
        return None  # not worth blocking for: the caller gets the error and its retry_after
    return delay


def transport_error(exc: httpx.HTTPError, call: Call, url: str,
                    timeout: float | None) -> TransportError:
    """Map httpx's transport failures to the SDK's classes."""
    target = f"{call.method} {call.path}"
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        seconds = f" within {timeout:g} s" if timeout else ""
        if call.is_write:
            verify = f" (e.g. {call.verify})" if call.verify else ""
            message = (f"{target} got no answer{seconds}. The write may have landed on the "
                       f"server: verify{verify} before retrying it.")
        else:
            message = f"{target} got no answer{seconds}."
        return TimeoutError(message, method=call.method, url=url, write=call.is_write,
                            details={"method": call.method, "path": call.path,
                                     "write": call.is_write, "timeoutSeconds": timeout})
    reason = str(exc) or type(exc).__name__
    return NetworkError(f"Cannot reach the Redline server at {url}: {reason}",
                        method=call.method, url=url,
                        details={"method": call.method, "path": call.path, "url": url,
                                 "reason": type(exc).__name__})


def decode(call: Call, response: httpx.Response, raw: bool = False) -> Any:
    """The 2xx body as the call's model (None for 204), or as sent when `raw`."""
    if response.status_code == 204 or not response.content:
        return None
    try:
        body = response.json()
    except ValueError as exc:
        raise APIError(f"{call.method} {call.path} answered {response.status_code} with a body "
                       "that is not JSON", code="INTERNAL", status=response.status_code,
                       request_id=response.headers.get("x-request-id")) from exc
    if call.model is None or raw:
        return body
    result = _adapter(call.model).validate_python(body)
    if call.keep_etag and hasattr(result, "etag"):
        result.etag = response.headers.get("etag")
    return result


_ADAPTERS: dict[Any, Any] = {}


def _adapter(model: Any):
    """The pydantic TypeAdapter of a model (or of a `_lazy.ModelRef`), made once."""
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        from pydantic import TypeAdapter

        from redline.sdk._lazy import resolve

        adapter = _ADAPTERS[model] = TypeAdapter(resolve(model))
    return adapter


def api_error(response: httpx.Response) -> APIError:
    try:
        body = response.json()
    except ValueError:
        body = None
    return error_from_response(response.status_code, body, response.headers)


class BaseClient:
    """Configuration and request building shared by `Client` and `AsyncClient`."""

    def __init__(self, url: str | None = None, *, api_key: str | None = None,
                 token: str | None = None, project_id: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, max_retries: int | None = None,
                 max_retry_delay: float = DEFAULT_MAX_RETRY_DELAY,
                 headers: dict[str, str] | None = None, user_agent: str | None = None,
                 sleep: Callable[[float], Any] | None = None, from_env: bool = True,
                 raw: bool = False):
        if api_key and token:
            raise ValueError("pass api_key or token, not both")
        settings = ClientSettings.from_env() if from_env else ClientSettings()
        if api_key is None and token is None:
            api_key = settings.api_key
        env_url = settings.url
        self.url = (url or env_url or DEFAULT_URL).rstrip("/")
        self.credentials = Credentials(api_key=api_key, token=token)
        self.default_project_id = project_id
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_delay = max_retry_delay
        self._sleep = sleep
        #: methods answer the server's JSON (dicts) instead of models; `wait`, `previous`
        #: and the other helpers still answer models
        self.raw = raw
        self._implied_project: str | None = None
        self._headers = {"User-Agent": user_agent or f"redline-sdk/{__version__}",
                         "Accept": "application/json", **self.credentials.headers(),
                         **(headers or {})}

        from redline.sdk import resources as r

        self.auth = r.Auth(self)
        self.teams = r.Teams(self)
        self.members = r.Members(self)
        self.invitations = r.Invitations(self)
        self.projects = r.Projects(self)
        self.api_keys = r.ApiKeys(self)
        self.runs = r.Runs(self)
        self.tests = r.Tests(self)
        self.test_suites = r.TestSuites(self)
        self.test_cases = r.TestCases(self)
        self.flakiness = r.Flakiness(self)
        self.errors = r.ErrorGroups(self)
        self.trends = r.Trends(self)
        self.artifacts = r.Artifacts(self)
        self.webhooks = r.Webhooks(self)
        self.plans = r.Plans(self)
        self._system = r.System(self)

    # -- what both clients do the same way --------------------------------------------------

    def _project_from_me(self, me: Any) -> str:
        project = me.get("projectId") if isinstance(me, dict) else getattr(me, "project_id",
                                                                             None)
        if not project:
            raise ValidationError(
                "No project given: pass project_id (or --project), or use a project API key, "
                "which implies its project", details={"field": "projectId",
                                                      "reason": "required"})
        self._implied_project = project
        return project

    def _known_project(self) -> str | None:
        return self.default_project_id or self._implied_project

    def _needs_me_for_project(self) -> bool:
        if self.credentials.api_key:
            return True
        raise ValidationError(
            "No project given: pass project_id (or --project, or set a default project in "
            "the profile); a personal token acts across projects",
            details={"field": "projectId", "reason": "required"})

    def _sign_in(self, token: str) -> None:
        """Act with this personal token from now on (what `auth.login` does)."""
        self.credentials = Credentials(token=token)
        for name in ("X-API-Key", "Authorization"):
            self._headers.pop(name, None)
        self._headers.update(self.credentials.headers())
        self._implied_project = None

    def _request_kwargs(self, call: Call, idempotency_key: str | None):
        """httpx.request arguments, and the file handles to close after the attempt."""
        headers = {**self._headers, **(call.headers or {})}
        if idempotency_key and call.is_write:
            headers["Idempotency-Key"] = idempotency_key
        kwargs: dict[str, Any] = {"method": call.method, "url": self.url + call.path,
                                  "headers": headers}
        if call.params:
            kwargs["params"] = {k: query_value(v) for k, v in call.params.items()
                                if v is not None}
        handles = []
        if call.files:
            files = []
            for upload in call.files:
                name, handle, ctype = upload.open()
                if not isinstance(handle, bytes):
                    handles.append(handle)
                files.append((upload.field, (name, handle, ctype)))
            kwargs["files"] = files
            if idempotency_key and call.is_write:
                # httpx draws a random boundary: a retry would be another body, which the
                # server answers IDEMPOTENCY_BODY_MISMATCH instead of replaying the first
                headers["Content-Type"] = ("multipart/form-data; boundary="
                                           + multipart_boundary(idempotency_key))
            if call.data:
                kwargs["data"] = {k: str(query_value(v)) for k, v in call.data.items()
                                  if v is not None}
        elif call.json is not None:
            kwargs["json"] = call.json
        if call.timeout is not None:
            kwargs["timeout"] = call.timeout
        return kwargs, handles

    def _idempotency_key_for(self, call: Call) -> str | None:
        if not call.is_write:
            return None
        if call.idempotency_key:
            return call.idempotency_key
        return new_idempotency_key() if call.idempotent else None

    def _retry_delay(self, error: RedlineError, attempt: int, call: Call,
                     key: str | None) -> float | None:
        return retry_delay(error, attempt, call, key, self.max_retry_delay, self.max_retries)

    def _decode(self, call: Call, response: httpx.Response) -> Any:
        return decode(call, response, self.raw if call.raw is None else call.raw)

    # -- calls the helpers make, always decoded ---------------------------------------------

    @staticmethod
    def _get_run_call(run_id: str) -> Call:
        from redline.sdk._lazy import models as m

        return Call("GET", f"/api/runs/{run_id}", model=m.Run, raw=False)

    @staticmethod
    def _me_call() -> Call:
        from redline.sdk._lazy import models as m

        return Call("GET", "/api/me", model=m.Me, raw=True)  # only its projectId is read

    @staticmethod
    def _branch_runs_call(run: Any, limit: int) -> Call:
        from redline.sdk._lazy import models as m

        return Call("GET", "/api/runs", params={"projectId": run.project_id,
                                                "branch": run.branch, "limit": limit},
                    model=m.Page[m.Run], raw=False)

    def _api_error(self, response: httpx.Response) -> APIError:
        return api_error(response)

    def _transport_error(self, exc: httpx.HTTPError, call: Call) -> TransportError:
        return transport_error(exc, call, self.url,
                               call.timeout if call.timeout is not None else self.timeout)

    # -- top-level calls that are not a resource ---------------------------------------------

    def setup(self, email: str, password: str, *, team: str | None = None,
              project: str | None = None, key_name: str | None = None,
              name: str | None = None):
        """First-run setup of an empty server: the owner account, a team, a project and a CI
        key (whose whole value is in the result once). CONFLICT once the server is set up."""
        return self._system.setup(email, password, team=team, project=project,
                                  key_name=key_name, name=name)

    def health(self):
        """`{"status": "ok"}` when the server and its database answer."""
        return self._system.health()

    def me(self):
        """Who these credentials are: the user, the key's project and scopes, the teams."""
        return self._system.me()

    def update_me(self, *, name: str | None = None, password: str | None = None,
                  current_password: str | None = None):
        """A new password needs `current_password`; it ends the user's other sign-ins."""
        return self._system.update_me(name=name, password=password,
                                      current_password=current_password)

    def compare(self, base_run_id: str, head_run_id: str):
        """What changed from `base_run_id` to `head_run_id` (new failures, fixed, still
        failing, new and removed tests): `runs.compare(head_run_id, base_run_id)`."""
        return self.runs.compare(head_run_id, base_run_id)


def is_previous(candidate: Any, run: Any) -> bool:
    """Is `candidate` a finished run of `run`'s branch started before it? (Ids sort by
    creation time, so the id breaks a tie between equal timestamps.)"""
    return (candidate.id != run.id and candidate.status in ("passed", "failed")
            and (candidate.created_at or "", candidate.id) < (run.created_at or "", run.id))
