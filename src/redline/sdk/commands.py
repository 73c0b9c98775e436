"""A handle on one executed run, like Go's `exec.Cmd`: `client.plans.command(plan_id, ...)`.

```python
cmd = client.plans.command("plan_...", branch="main")
try:
    run = cmd.run(timeout=900)           # start, then wait for the end
except exceptions.CommandExitError as exc:
    print("the suite exited", exc.exit_code, "; failed tests:", exc.run.failed_tests)
except exceptions.WaitTimeoutError as exc:
    print("still", exc.last_status, "; wait again on", exc.run_id)   # never trigger again
```

A handle is used once: `start()` twice is `AlreadyStartedError`; `wait()`, `signal()`,
`cancel()` and `log()` before `start()` are `NotStartedError`. `start()` sends one
Idempotency-Key made with the handle, so calling it again after a `TimeoutError` (the trigger
may have landed) replays the first answer instead of queueing a second run.

`wait()` ends like `exec.Cmd.Wait`: the run when it passed; `CommandExitError` when the command
ran and exited non-zero (`.exit_code`, `.run`); with `raise_on_failure=True`, `RunFailedError`
for any other verdict than `passed` (`blocked`, `cancelled`), else that run is returned;
`WaitTimeoutError` at `timeout` (the run goes on). Interrupting a wait (Ctrl-C, or cancelling
the awaiting task on an `AsyncClient`) leaves the run going unless `cancel_on_interrupt=True`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from redline.sdk._base import new_idempotency_key
from redline.sdk.exceptions import (
    AlreadyStartedError,
    CommandExitError,
    NotStartedError,
    RunFailedError,
    WaitTimeoutError,
)
from redline.sdk.resources import cancel_call, log_call, signal_call, trigger_call

if TYPE_CHECKING:
    from redline.sdk.models import LogChunk, Run, SignalSent

#: seconds between polls of a handle's run (the server answers a poll from its index)
DEFAULT_COMMAND_POLL = 1.0


def _exit_text(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class _Handle:
    """What the sync and async handles share: the run seen last and the verdict rules."""

    def __init__(self, client: Any, plan_id: str, *, branch: str | None = None,
                 ref: str | None = None, commit_sha: str | None = None,
                 env: dict[str, Any] | None = None, source: str = "api",
                 idempotency_key: str | None = None):
        self._c = client
        self.plan_id = plan_id
        self.branch = branch
        self.ref = ref
        self.commit_sha = commit_sha
        self.env = dict(env or {})
        self.source = source
        #: sent by every `start()` of this handle: a retried trigger replays, never re-runs
        self.idempotency_key = idempotency_key or new_idempotency_key()
        #: the run as last seen, like Go's `ProcessState` (None before `start()`)
        self.state: Run | None = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(plan_id={self.plan_id!r}, run_id={self.run_id!r}, "
                f"status={self.status!r})")

    @property
    def run_id(self) -> str | None:
        return self.state.id if self.state is not None else None

    @property
    def status(self) -> str | None:
        return self.state.status if self.state is not None else None

    @property
    def exit_code(self) -> int | None:
        """The command's exit status once it has ended (None before, or when it never ran:
        a `blocked` run, one cancelled while queued)."""
        return self.state.exit_code if self.state is not None else None

    def _trigger_kwargs(self) -> dict[str, Any]:
        if self.state is not None:
            raise AlreadyStartedError(
                f"This handle already started run {self.state.id}: a handle is not reusable; "
                "make a new one with client.plans.command(...)", run_id=self.state.id)
        return {"branch": self.branch, "ref": self.ref, "commit_sha": self.commit_sha,
                "env": self.env or None, "source": self.source,
                "idempotency_key": self.idempotency_key, "raw": False}

    def _started_id(self, what: str) -> str:
        if self.state is None:
            raise NotStartedError(f"{what} before start(): call start() (or run()) first")
        return self.state.id

    def _seen(self, on_poll: Callable[[Run], Any] | None) -> Callable[[Run], Any]:
        def seen(run: Run) -> None:
            self.state = run
            if on_poll is not None:
                on_poll(run)
        return seen

    def _wait_args(self, timeout: float | None, poll: float | None,
                   on_poll: Callable[[Run], Any] | None) -> tuple:
        return (self._started_id("wait()"), math.inf if timeout is None else timeout,
                DEFAULT_COMMAND_POLL if poll is None else poll, False, self._seen(on_poll))

    def _timed_out(self, exc: WaitTimeoutError) -> None:
        if exc.run is not None:
            self.state = exc.run

    def _verdict(self, run: Run, raise_on_failure: bool) -> Run:
        self.state = run
        if run.status == "failed" and run.exit_code not in (None, 0):
            why = f" ({run.cancel_reason})" if run.cancel_reason else ""
            raise CommandExitError(
                f"Run {run.id}: the command {_exit_text(run.exit_code)}{why}; "
                f"{run.failed_tests or 0} of {run.total_tests or 0} tests failed",
                run=run, exit_code=run.exit_code)
        if raise_on_failure and run.outcome != "passed":
            reason = run.blocked_reason or run.cancel_reason
            raise RunFailedError(f"Run {run.id} finished {run.outcome}"
                                 + (f" ({reason})" if reason else ""),
                                 run=run, status=run.outcome)
        return run


class Command(_Handle):
    """One run of a plan on a blocking `Client` (see the module's documentation)."""

    def start(self) -> Run:
        """Queue the run (`POST /api/plans/{id}/runs`) and return it (`queued`).
        `ConflictError` when the plan has `maxConcurrentRuns` runs in flight (its
        `details["runId"]`), `InsufficientCreditsError` with the team's budget spent."""
        self.state = self._c._call(trigger_call(self.plan_id, **self._trigger_kwargs()))
        return self.state

    def wait(self, timeout: float | None = None, *, poll: float | None = None,
             raise_on_failure: bool = False, cancel_on_interrupt: bool = False,
             on_poll: Callable[[Run], Any] | None = None) -> Run:
        """Poll until the run ends (`timeout` seconds at most; None: until the plan's own
        timeouts end it). `KeyboardInterrupt` leaves the run going unless
        `cancel_on_interrupt`."""
        args = self._wait_args(timeout, poll, on_poll)
        try:
            run = self._c._wait(*args)
        except WaitTimeoutError as exc:
            self._timed_out(exc)
            raise
        except KeyboardInterrupt:
            if cancel_on_interrupt:
                self.cancel()
            raise
        return self._verdict(run, raise_on_failure)

    def run(self, timeout: float | None = None, **wait_options: Any) -> Run:
        """`start()`, then `wait(timeout, ...)`."""
        self.start()
        return self.wait(timeout, **wait_options)

    def signal(self, signal: str) -> SignalSent:
        """Deliver a signal (`INT`, `TERM`, `HUP`, `KILL`, `QUIT`, `USR1`, `USR2`) to the
        command's process group. `ConflictError` before its process started
        (`details["reason"] == "not_started"`) or after it finished (`"finished"`)."""
        return self._c._call(signal_call(self._started_id("signal()"), signal, raw=False))

    def cancel(self) -> Run:
        """Stop the run (idempotent): SIGTERM to its process group, SIGKILL after the grace
        period; a queued run is cancelled at once. Then `wait()` to see it `cancelled`."""
        self.state = self._c._call(cancel_call(self._started_id("cancel()"), raw=False))
        return self.state

    def log(self, *, offset: int = 0, poll: float | None = None, follow: bool = True,
            timeout: float | None = None) -> Iterator[str]:
        """The output as it arrives, until the run has ended (`follow=False`: what is there
        now). A dropped connection resumes from the offset reached; `ConnectionClosedError`
        (`.offset`) when it cannot; `WaitTimeoutError` after `timeout` seconds."""
        return self._c.runs.follow_log(self._started_id("log()"), offset=offset, poll=poll,
                                       follow=follow, timeout=timeout)

    def log_window(self, offset: int = 0) -> LogChunk:
        """One window of the output from `offset` (`text`, `next_offset`, `complete`)."""
        return self._c._call(log_call(self._started_id("log_window()"), offset, raw=False))


class AsyncCommand(_Handle):
    """One run of a plan on an `AsyncClient`: the same methods, awaited; `log()` is an async
    iterator. Cancelling the task awaiting `wait()` leaves the run going unless
    `cancel_on_interrupt=True`, which cancels the run before the task ends."""

    async def start(self) -> Run:
        self.state = await self._c._call(trigger_call(self.plan_id, **self._trigger_kwargs()))
        return self.state

    async def wait(self, timeout: float | None = None, *, poll: float | None = None,
                   raise_on_failure: bool = False, cancel_on_interrupt: bool = False,
                   on_poll: Callable[[Run], Any] | None = None) -> Run:
        import asyncio

        args = self._wait_args(timeout, poll, on_poll)
        try:
            run = await self._c._wait(*args)
        except WaitTimeoutError as exc:
            self._timed_out(exc)
            raise
        except (asyncio.CancelledError, KeyboardInterrupt):
            if cancel_on_interrupt:
                # shielded: a second cancellation of the task must not lose the cancel request
                await asyncio.shield(self.cancel())
            raise
        return self._verdict(run, raise_on_failure)

    async def run(self, timeout: float | None = None, **wait_options: Any) -> Run:
        await self.start()
        return await self.wait(timeout, **wait_options)

    async def signal(self, signal: str) -> SignalSent:
        return await self._c._call(signal_call(self._started_id("signal()"), signal,
                                               raw=False))

    async def cancel(self) -> Run:
        self.state = await self._c._call(cancel_call(self._started_id("cancel()"),
                                                     raw=False))
        return self.state

    def log(self, *, offset: int = 0, poll: float | None = None, follow: bool = True,
            timeout: float | None = None) -> AsyncIterator[str]:
        return self._c.runs.follow_log(self._started_id("log()"), offset=offset, poll=poll,
                                       follow=follow, timeout=timeout)

    async def log_window(self, offset: int = 0) -> LogChunk:
        return await self._c._call(log_call(self._started_id("log_window()"), offset,
                                            raw=False))
