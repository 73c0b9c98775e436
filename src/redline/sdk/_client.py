"""`Client` (blocking) and `AsyncClient` (asyncio): the same API over one shared base."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import httpx

from redline.errors import CATALOG
from redline.sdk._base import BaseClient, Call, is_previous, tls_options
from redline.sdk.exceptions import (
    ConnectionClosedError,
    RedlineError,
    RunFailedError,
    TimeoutError,
    TransportError,
    UnavailableError,
    WaitTimeoutError,
)
from redline.sdk.resources import log_call

if TYPE_CHECKING:
    from redline.sdk.models import Run

DEFAULT_WAIT_TIMEOUT = 30 * 60.0
DEFAULT_POLL = 2.0
#: seconds between reads of a live run's log when nothing new came
DEFAULT_LOG_POLL = 0.5
#: what a log read that fails this way means: the stream dropped (after the call's retries)
_DROPPED = (TransportError, UnavailableError)


def _items(page: Any) -> list:
    """A page's items: a model's `data`, or the `data` of the server's JSON (raw)."""
    return page.get("data") or [] if isinstance(page, dict) else page.data


def _next_page(call: Call, page: Any) -> Call | None:
    cursor = page.get("nextCursor") if isinstance(page, dict) else getattr(
        page, "next_cursor", None)
    if not cursor or not _items(page):
        return None
    params = {k: v for k, v in (call.params or {}).items() if k != "offset"}
    params["cursor"] = cursor
    return Call(call.method, call.path, params=params, model=call.model, raw=call.raw)


#: a signed link needs no credentials, so none are sent to it (httpx's client has none: the
#: client's headers go with each API call)
_DOWNLOAD_HEADERS = {"Accept": "*/*"}


def _on_this_server(base: str, link: str) -> str:
    """The signed link, fetched from the server this client talks to: the signature covers
    the path and query, not the host, and REDLINE_PUBLIC_URL may name an address this
    machine does not reach (or the default port when the server runs on another)."""
    parts = urlsplit(link)
    return base + parts.path + (f"?{parts.query}" if parts.query else "")


def _artifact_call(artifact_id: str) -> Call:
    from redline.sdk._lazy import models as m

    return Call("GET", f"/api/artifacts/{artifact_id}", model=m.Artifact, raw=False)


def _wait_message(run_id: str, status: str | None, timeout: float) -> str:
    return (f"Run {run_id} is still {status or 'unfinished'} after {timeout:g} s; it goes on "
            f"on the server. Wait again with `redline wait {run_id}`; do not start it again.")


def _log_dropped(run_id: str, offset: int, cause: RedlineError) -> ConnectionClosedError:
    return ConnectionClosedError(
        f"The log of run {run_id} stopped at byte {offset}: {cause.message}. The run goes "
        f"on; read again from offset {offset}.", run_id=run_id, offset=offset)


def _log_timeout(run_id: str, offset: int, timeout: float,
                 waited: float) -> WaitTimeoutError:
    error = WaitTimeoutError(
        f"Followed the log of run {run_id} for {timeout:g} s; the run goes on. Read on with "
        f"`redline runs log {run_id} --follow --offset {offset}`, or wait for its verdict "
        f"with `redline wait {run_id}`; do not start it again.", run_id=run_id, waited=waited)
    error.details["offset"] = offset
    return error


def _log_pause(started: float, poll: float, timeout: float | None, run_id: str,
               offset: int) -> float:
    """Seconds to sleep before the next read of a quiet log, or its WaitTimeoutError."""
    if timeout is None:
        return poll
    waited = time.monotonic() - started
    if waited >= timeout:
        raise _log_timeout(run_id, offset, timeout, waited)
    return min(poll, timeout - waited)


def _resume_delay(client: BaseClient, error: RedlineError, attempt: int) -> float | None:
    """Seconds before reading a log again after a read that got no answer in time, or None.
    A log read changes nothing, so a timeout is resumed from the same offset like a dropped
    connection (the catalog's NETWORK_ERROR policy, which the call itself already applied to
    a refused or reset connection)."""
    policy = CATALOG["NETWORK_ERROR"].retry
    limit = policy.max_retries if client.max_retries is None else min(client.max_retries,
                                                                       policy.max_retries)
    if not isinstance(error, TimeoutError) or attempt >= limit:
        return None
    return policy.delay * (2 ** attempt)


def _log_done(chunk: Any, follow: bool) -> bool:
    """Is this read the last one? The run ended and its log is read, or (not following)
    nothing more has been written yet."""
    return chunk.complete or (not follow and not chunk.text)


def _verdict_error(run: Run) -> RunFailedError:
    return RunFailedError(f"Run {run.id} finished {run.outcome}", run=run, status=run.outcome)


class Client(BaseClient):
    """A blocking Redline client.

    ```python
    from redline.sdk import Client

    with Client("http://127.0.0.1:8000", api_key="rl_live_...") as client:
        for run in client.runs.iter(status="failed"):
            print(run.id, run.branch)
    ```

    `url` defaults to `$REDLINE_URL`, `api_key` to `$REDLINE_API_KEY`. Pass `token=` for a
    personal token from `client.auth.login(...)`. `transport=` is the seam for tests (any
    `httpx.BaseTransport`); `sleep=` replaces the waits between retries and polls.
    """

    is_async = False

    def __init__(self, url: str | None = None, *, transport: httpx.BaseTransport | None = None,
                 http_client: httpx.Client | None = None, **options: Any):
        super().__init__(url, **options)
        self._http = http_client or httpx.Client(timeout=self.timeout, transport=transport,
                                                 **tls_options(self.url))
        self._owns_http = http_client is None
        self._sleeper: Callable[[float], Any] = self._sleep or time.sleep

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, call: Call) -> Any:
        if call.has_project_placeholder():
            call.with_project(self._resolve_project() if call.needs_project()
                              else self._known_project())
        key = self._idempotency_key_for(call)  # made once: every retry sends the same key
        attempts: dict[str, int] = {}
        while True:
            kwargs, handles = self._request_kwargs(call, key)
            try:
                response = self._http.request(**kwargs)
            except httpx.HTTPError as exc:
                error: RedlineError = self._transport_error(exc, call)
                cause: BaseException | None = exc
            else:
                if response.is_success:
                    return self._decode(call, response)
                error, cause = self._api_error(response), None
            finally:
                for handle in handles:
                    handle.close()
            delay = self._retry_delay(error, attempts.get(error.code, 0), call, key)
            if delay is None:
                raise error from cause
            attempts[error.code] = attempts.get(error.code, 0) + 1
            self._sleeper(delay)

    def _resolve_project(self) -> str:
        known = self._known_project()
        if known:
            return known
        self._needs_me_for_project()
        return self._project_from_me(self._call(self._me_call()))

    def _paginate(self, call: Call) -> Iterator[Any]:
        next_call: Call | None = call
        while next_call is not None:
            page = self._call(next_call)
            yield from _items(page)
            next_call = _next_page(next_call, page)

    def _download(self, artifact_id: str, path: str | os.PathLike) -> Any:
        artifact = self._call(_artifact_call(artifact_id))
        try:
            with self._http.stream("GET", _on_this_server(self.url, artifact.url),
                                   headers=_DOWNLOAD_HEADERS) as answer:
                if not answer.is_success:
                    answer.read()
                    raise self._api_error(answer)
                with open(path, "wb") as handle:
                    handle.writelines(answer.iter_bytes())
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, _artifact_call(artifact_id)) from exc
        return artifact

    def _previous_run(self, run: Run | str, scan: int) -> Run | None:
        if isinstance(run, (str, dict)):
            run = cast("Run", self._call(self._get_run_call(
                run if isinstance(run, str) else run["id"])))
        if not run.branch:
            return None
        for seen, candidate in enumerate(self._paginate(self._branch_runs_call(
                run, min(scan, 100)))):
            if seen >= scan:
                return None
            if is_previous(candidate, run):
                return candidate
        return None

    def _wait(self, run_id: str, timeout: float | None, poll: float | None,
              raise_on_failure: bool, on_poll: Callable[[Run], Any] | None) -> Run:
        timeout = DEFAULT_WAIT_TIMEOUT if timeout is None else timeout
        poll = DEFAULT_POLL if poll is None else poll
        started = time.monotonic()
        while True:
            run = self._call(self._get_run_call(run_id))
            if on_poll is not None:
                on_poll(run)
            if run.is_finished:
                if raise_on_failure and run.outcome != "passed":
                    raise _verdict_error(run)
                return run
            waited = time.monotonic() - started
            if waited >= timeout:
                raise WaitTimeoutError(_wait_message(run_id, run.status, timeout),
                                       run_id=run_id, last_status=run.status, waited=waited,
                                       run=run)
            self._sleeper(min(poll, max(0.0, timeout - waited)))


    def _follow_log(self, run_id: str, offset: int, poll: float | None, follow: bool,
                    timeout: float | None) -> Iterator[str]:
        poll = DEFAULT_LOG_POLL if poll is None else poll
        started = time.monotonic()
        late = 0
        while True:
            try:
                chunk = self._call(log_call(run_id, offset, raw=False))
            except _DROPPED as exc:
                delay = _resume_delay(self, exc, late)
                if delay is None:
                    raise _log_dropped(run_id, offset, exc) from exc
                late += 1
                self._sleeper(delay)
                continue
            late = 0
            offset = chunk.next_offset
            if chunk.text:
                yield chunk.text
            if _log_done(chunk, follow):
                return
            if not chunk.text:
                self._sleeper(_log_pause(started, poll, timeout, run_id, offset))


async def _async_sleep(seconds: float) -> None:
    import asyncio  # here: the blocking client (and the CLI) never imports asyncio

    await asyncio.sleep(seconds)


class AsyncClient(BaseClient):
    """The same API as `Client` for asyncio: every method is awaited, `iter` is an async
    iterator, and `transport=` takes an `httpx.AsyncBaseTransport`."""

    is_async = True

    def __init__(self, url: str | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 http_client: httpx.AsyncClient | None = None, **options: Any):
        super().__init__(url, **options)
        self._http = http_client or httpx.AsyncClient(timeout=self.timeout,
                                                      transport=transport,
                                                      **tls_options(self.url))
        self._owns_http = http_client is None
        self._sleeper = self._sleep or _async_sleep

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:  # noqa: PYI034
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def _call(self, call: Call) -> Any:
        if call.has_project_placeholder():
            call.with_project(await self._resolve_project() if call.needs_project()
                              else self._known_project())
        key = self._idempotency_key_for(call)
        attempts: dict[str, int] = {}
        while True:
            kwargs, handles = self._request_kwargs(call, key)
            try:
                response = await self._http.request(**kwargs)
            except httpx.HTTPError as exc:
                error: RedlineError = self._transport_error(exc, call)
                cause: BaseException | None = exc
            else:
                if response.is_success:
                    return self._decode(call, response)
                error, cause = self._api_error(response), None
            finally:
                for handle in handles:
                    handle.close()
            delay = self._retry_delay(error, attempts.get(error.code, 0), call, key)
            if delay is None:
                raise error from cause
            attempts[error.code] = attempts.get(error.code, 0) + 1
            result = self._sleeper(delay)
            if inspect.isawaitable(result):
                await result

    async def _resolve_project(self) -> str:
        known = self._known_project()
        if known:
            return known
        self._needs_me_for_project()
        return self._project_from_me(await self._call(self._me_call()))

    async def _paginate(self, call: Call) -> AsyncIterator[Any]:
        next_call: Call | None = call
        while next_call is not None:
            page = await self._call(next_call)
            for item in _items(page):
                yield item
            next_call = _next_page(next_call, page)

    async def _download(self, artifact_id: str, path: str | os.PathLike) -> Any:
        artifact = await self._call(_artifact_call(artifact_id))
        try:
            async with self._http.stream("GET", _on_this_server(self.url, artifact.url),
                                         headers=_DOWNLOAD_HEADERS) as answer:
                if not answer.is_success:
                    await answer.aread()
                    raise self._api_error(answer)
                with open(path, "wb") as handle:  # noqa: ASYNC230 - a local file, in chunks
                    async for chunk in answer.aiter_bytes():
                        handle.write(chunk)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, _artifact_call(artifact_id)) from exc
        return artifact

    async def _previous_run(self, run: Run | str, scan: int) -> Run | None:
        if isinstance(run, (str, dict)):
            run = cast("Run", await self._call(self._get_run_call(
                run if isinstance(run, str) else run["id"])))
        if not run.branch:
            return None
        seen = 0
        async for candidate in self._paginate(self._branch_runs_call(run, min(scan, 100))):
            if seen >= scan:
                return None
            seen += 1
            if is_previous(candidate, run):
                return candidate
        return None

    async def _wait(self, run_id: str, timeout: float | None, poll: float | None,
                    raise_on_failure: bool, on_poll: Callable[[Run], Any] | None) -> Run:
        timeout = DEFAULT_WAIT_TIMEOUT if timeout is None else timeout
        poll = DEFAULT_POLL if poll is None else poll
        started = time.monotonic()
        while True:
            run = await self._call(self._get_run_call(run_id))
            if on_poll is not None:
                on_poll(run)
            if run.is_finished:
                if raise_on_failure and run.outcome != "passed":
                    raise _verdict_error(run)
                return run
            waited = time.monotonic() - started
            if waited >= timeout:
                raise WaitTimeoutError(_wait_message(run_id, run.status, timeout),
                                       run_id=run_id, last_status=run.status, waited=waited,
                                       run=run)
            result = self._sleeper(min(poll, max(0.0, timeout - waited)))
            if inspect.isawaitable(result):
                await result

    async def _follow_log(self, run_id: str, offset: int, poll: float | None, follow: bool,
                          timeout: float | None) -> AsyncIterator[str]:
        poll = DEFAULT_LOG_POLL if poll is None else poll
        started = time.monotonic()
        late = 0
        while True:
            try:
                chunk = await self._call(log_call(run_id, offset, raw=False))
            except _DROPPED as exc:
                delay = _resume_delay(self, exc, late)
                if delay is None:
                    raise _log_dropped(run_id, offset, exc) from exc
                late += 1
                result = self._sleeper(delay)
                if inspect.isawaitable(result):
                    await result
                continue
            late = 0
            offset = chunk.next_offset
            if chunk.text:
                yield chunk.text
            if _log_done(chunk, follow):
                return
            if not chunk.text:
                result = self._sleeper(_log_pause(started, poll, timeout, run_id, offset))
                if inspect.isawaitable(result):
                    await result
