"""The pytest plugin: reports a session's results to Redline while the tests run.

Off unless asked: `pytest --redline` or `REDLINE_REPORT=1` (registered by the `pytest11` entry
point, so installing `redline` is enough). It reads `REDLINE_URL` and `REDLINE_API_KEY` (a
project key) like the other clients, and the CI metadata the CLI detects (`redline.cli.ci`).

- The run is created at session start and the results go in batches
  (`POST /api/runs/{id}/tests/batch`) from a background thread: the test's own thread only
  appends a dict to a bounded buffer, and wakes the sender only once a batch is full (a
  thread woken for every result would cost more than the rest of the plugin); a partial batch
  goes after a second without a full one. A full buffer spills to the spool instead of
  waiting.
- One result per test: status, duration, file, line, markers as tags, skip and xfail reasons,
  captured stdout/stderr/log, the error with its traceback. pytest-rerunfailures' attempts
  are one result with its attempts (as steps): flaky when it passed on a retry.
- pytest-xdist: the controller creates the run and reports what the workers send it (pytest
  replays the workers' reports on the controller); the workers only add the markers to them.
- Shards of one CI build (`--redline-shard 2/4`, or the CI's own parallel jobs: GitLab CI's
  `parallel:`, CircleCI's and Buildkite's `parallelism`) join one run by build id.
- Redline unreachable, or answering errors: what was not sent goes to a spool file under
  `.redline/spool/` in pytest's rootdir (`redline upload --spool DIR` sends it), the exit status
  stays pytest's own, and the terminal summary says so.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from redline.outcomes import FLAKY, map_outcome, status_of_attempts

BATCH = 500  # results per request (the endpoint takes up to 1,000)
FLUSH_SECONDS = 1.0  # a partial batch waits at most this long
QUEUE_SIZE = 20_000  # results waiting to be sent, at most
#: markers pytest itself gives meaning to: not tags
BUILTIN_MARKERS = frozenset({"parametrize", "usefixtures", "filterwarnings", "skip", "skipif",
                             "xfail", "flaky", "timeout", "tryfirst", "trylast"})


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("redline", "Redline: report results live")
    group.addoption("--redline", action="store_true", default=False,
                    help="Report results to Redline while the tests run (or REDLINE_REPORT=1; "
                    "server and key: REDLINE_URL, REDLINE_API_KEY).")
    group.addoption("--redline-url", metavar="URL", default=None,
                    help="Redline's URL (default: $REDLINE_URL).")
    group.addoption("--redline-shard", metavar="N/M", default=None,
                    help="This session is shard N of M of one CI build: the shards join one "
                    "run by build id (default: the CI's parallel job, e.g. GitLab's "
                    "CI_NODE_INDEX/CI_NODE_TOTAL).")
    group.addoption("--redline-build-id", metavar="ID", default=None,
                    help="The CI build id shards join on (default: the CI provider's).")
    group.addoption("--redline-spool-dir", metavar="DIR", default=None,
                    help="Where unsent results go (default: .redline/spool in the rootdir).")


def enabled(config: pytest.Config) -> bool:
    if config.getoption("redline", False):
        return True
    # REDLINE_REPORT is read by the client settings, like every REDLINE_* variable; only a
    # session that sets it pays for importing them (the plugin is loaded by every pytest run)
    if "REDLINE_REPORT" not in os.environ:
        return False
    from redline.sdk.settings import ClientSettings

    return ClientSettings.from_env().report


def pytest_configure(config: pytest.Config) -> None:
    if not enabled(config):
        return
    config.pluginmanager.register(Annotator(), "redline-annotator")
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller reports
    config.pluginmanager.register(Reporter(config), "redline-reporter")


class Annotator:
    """Adds the markers to each test's setup report (in a worker too: xdist sends the
    report's attributes to the controller)."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        if call.when == "setup":
            tags = []
            for mark in item.iter_markers():
                if mark.name not in BUILTIN_MARKERS and mark.name not in tags:
                    tags.append(mark.name)
            if tags:  # pytest keeps every report to the end: no empty list on each (see GC)
                report.redline_tags = tuple(tags)
        return report


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        current, total = (int(part) for part in text.split("/"))
    except ValueError:
        raise pytest.UsageError(f"--redline-shard takes N/M, e.g. 2/4 (not {text!r})") from None
    if not 1 <= current <= total:
        raise pytest.UsageError(f"--redline-shard {text}: N must be between 1 and M")
    return current, total


#: the CI's own parallel jobs, when `--redline-shard` is not given: (the job's index, the
#: number of jobs, the first job's index)
CI_SHARD_VARIABLES = (
    ("CI_NODE_INDEX", "CI_NODE_TOTAL", 1),  # GitLab CI, `parallel: N`
    ("CIRCLE_NODE_INDEX", "CIRCLE_NODE_TOTAL", 0),  # CircleCI, `parallelism: N`
    ("BUILDKITE_PARALLEL_JOB", "BUILDKITE_PARALLEL_JOB_COUNT", 0),  # Buildkite, `parallelism`
)


def ci_shard(environ: Any) -> tuple[int, int] | None:
    """(N, M) when this job is one of M > 1 parallel jobs of the CI build, else None."""
    for index_name, total_name, first in CI_SHARD_VARIABLES:
        try:
            index, total = int(environ[index_name]), int(environ[total_name])
        except (KeyError, ValueError):
            continue
        if total > 1 and 1 <= index - first + 1 <= total:
            return index - first + 1, total
    return None


def run_fields(config: pytest.Config) -> dict[str, Any]:
    """The run's metadata: the CI provider's and git's (as `redline upload` detects them),
    the shard, and the source."""
    try:
        ci = importlib.import_module("redline.cli.ci")
    except ImportError:  # a CLI without CI detection: the flags' values only
        fields: dict[str, Any] = {}
    else:
        fields = ci.detect({}, os.environ, cwd=str(config.rootpath))
    fields["source"] = "reporter"
    build_id = config.getoption("redline_build_id")
    if build_id:
        fields["ci_build_id"] = build_id
    shard = parse_shard(config.getoption("redline_shard")) or ci_shard(os.environ)
    if shard:
        fields["shard_current"], fields["shard_total"] = shard
        if not fields.get("ci_build_id"):
            raise pytest.UsageError("--redline-shard needs a CI build id to join the shards "
                                    "on: run in CI or pass --redline-build-id")
    workers = getattr(config.option, "numprocesses", None)
    if isinstance(workers, int) and workers > 0:
        fields["workers"] = workers
    return fields


# -- one test's reports into one result ------------------------------------------------------

def _sections(report: Any) -> tuple[str, str]:
    out, err, log = [], [], []
    for name, content in getattr(report, "sections", ()):
        if name.startswith("Captured stdout"):
            out.append(content)
        elif name.startswith("Captured stderr"):
            err.append(content)
        elif name.startswith("Captured log"):
            log.append(f"----- {name} -----\n{content}")
    return "".join(out), "".join(err) + ("\n" if err and log else "") + "\n".join(log)


def _error(report: Any, when: str) -> dict[str, Any]:
    longrepr = report.longrepr
    crash = getattr(longrepr, "reprcrash", None)
    message = getattr(crash, "message", None) or (str(longrepr).strip().splitlines() or [""])[-1]
    error: dict[str, Any] = {"message": (message or "failed")[:100_000],
                             "stack": report.longreprtext[:1_000_000]}
    # the exception's class: pytest's last traceback line is `path:line: ClassName`
    lines = error["stack"].rstrip().splitlines()
    head = lines[-1].rsplit(": ", 1)[-1].strip() if lines else ""
    if not _is_name(head):
        head = message.split(":", 1)[0].strip() if message else ""
    if _is_name(head):
        error["type"] = head[:255]
    if crash is not None and getattr(crash, "lineno", None):
        error["location"] = {"file": str(crash.path), "line": crash.lineno}
    if when != "call":
        error["message"] = f"error in {when}: {error['message']}"[:100_000]
    return error


def _is_name(text: str) -> bool:
    return bool(text) and text.replace(".", "").replace("_", "").isalnum()


def _skip_reason(report: Any) -> str | None:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return None


def _identity(nodeid: str, location: tuple) -> dict[str, Any]:
    """title, suite path and file as the JUnit import names the same test (one case)."""
    path, _, rest = nodeid.partition("::")
    parts = rest.split("::") if rest else [path]
    line = location[1] if len(location) > 1 else None
    identity: dict[str, Any] = {
        "title": parts[-1], "fullTitle": " > ".join(parts), "filePath": path,
        "lineNumber": line + 1 if isinstance(line, int) else None}
    if len(parts) > 1:
        identity["suitePath"] = tuple(parts[:-1])
    return identity


class _Test:
    __slots__ = ("attempts", "location", "phases", "rerun", "tags")

    def __init__(self, location: tuple) -> None:
        self.location = location
        self.phases: dict[str, Any] = {}
        self.attempts: list[dict[str, Any]] = []
        self.tags: tuple[str, ...] = ()
        self.rerun = False


def _not_run(report: Any) -> tuple[str, dict[str, Any]] | None:
    """pytest's word and the annotation for a skipped phase (a skip, or an xfail: pytest
    reports an expected failure as skipped, with `wasxfail`), else None."""
    if not report.skipped:
        return None
    if hasattr(report, "wasxfail"):
        return "xfailed", {"type": "xfail", "description": report.wasxfail or None}
    return "skipped", {"type": "skip", "description": _skip_reason(report)}


def build_result(nodeid: str, test: _Test) -> tuple[dict[str, Any], str]:
    """The batch endpoint's result, and pytest's own word for it (passed, failed, error,
    skipped, xfailed, xpassed); the status is that word's in the one outcome table."""
    phases = test.phases
    setup, call, teardown = phases.get("setup"), phases.get("call"), phases.get("teardown")
    annotations: list[dict[str, Any]] = []
    error = None
    word = "passed"
    for when, report in (("setup", setup), ("call", call)):
        if report is None:
            continue
        if report.failed:
            word, error = ("error" if when == "setup" else "failed"), _error(report, when)
            break
        skipped = _not_run(report)
        if skipped is not None:
            word, annotation = skipped
            annotations.append(annotation)
            break
    else:
        if call is not None and hasattr(call, "wasxfail"):
            word = "xpassed"
            annotations.append({"type": "xpass", "description": call.wasxfail or None})
    if teardown is not None and teardown.failed and error is None:
        word, error = "error", _error(teardown, "teardown")
    status = map_outcome(word)
    last = teardown or call or setup
    stdout, stderr = _sections(last)
    duration = max(0, round(sum(r.duration for r in phases.values()) * 1000))
    result = _identity(nodeid, test.location)
    result.update(status=status, duration=duration)
    # Empty fields are left out (the server's defaults): a passed test's result then holds
    # strings and numbers only, which Python's garbage collector does not track. Results
    # waiting in the buffer outlive young collections; as tracked containers they would
    # bring the session's full collections (each a walk over every object pytest holds)
    # sooner (bench/README.md, reporters).
    if test.tags:
        result["tags"] = test.tags
    if annotations:
        result["annotations"] = annotations
    if stdout:
        result["stdout"] = stdout[:5_000_000]
    if stderr:
        result["stderr"] = stderr[:5_000_000]
    if error is not None:
        result["error"] = error
    if test.attempts:  # pytest-rerunfailures: the failed attempts, then this one
        result["retries"] = len(test.attempts)
        result["attempt"] = len(test.attempts) + 1
        result["steps"] = [*test.attempts, {
            "title": f"attempt {len(test.attempts) + 1}", "category": "attempt",
            "status": status, "duration": duration}]
        result["status"] = status_of_attempts([a["status"] for a in result["steps"]])
        result["isFlaky"] = result["status"] == FLAKY
        result["duration"] += sum(a["duration"] for a in test.attempts)
    return result, word


def _attempt(number: int, test: _Test, report: Any) -> dict[str, Any]:
    duration = sum(r.duration for r in test.phases.values()) + report.duration
    step: dict[str, Any] = {"title": f"attempt {number}", "category": "attempt",
                            "status": "failed", "duration": max(0, round(duration * 1000))}
    if report.longrepr is not None:
        step["error"] = _error(report, report.when)
    return step


class Reporter:
    """The controller's (or a single process's) half: results onto the queue, and the thread
    that sends them."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.session = uuid.uuid4().hex
        self.fields = run_fields(config)
        self.url = config.getoption("redline_url") or None
        spool_dir = config.getoption("redline_spool_dir")
        self.spool_dir = Path(spool_dir) if spool_dir else config.rootpath / ".redline" / "spool"
        #: results waiting for the sender (deque's append and popleft are thread-safe)
        self.buffer: deque[dict[str, Any]] = deque()
        self.wake = threading.Event()
        self.finish: dict[str, Any] | None = None
        self.tests: dict[str, _Test] = {}
        self.counts: dict[str, int] = {}
        self.failed = False
        self.sent = 0
        self.run_id: str | None = None
        self.problem: str | None = None
        self.seq = 0
        self._seq_lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.started = time.monotonic()
        from redline.spool import SpoolWriter

        self.spool = SpoolWriter(self.spool_dir, self.session, self.fields)

    # -- the test's thread: only the queue ----------------------------------------------------
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._send_loop, name="redline-reporter",
                                       daemon=True)
        self.thread.start()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        test = self.tests.get(report.nodeid)
        if test is None:
            test = self.tests[report.nodeid] = _Test(report.location)
        tags = getattr(report, "redline_tags", None)
        if tags is not None:
            test.tags = tuple(tags)
        if report.outcome == "rerun":
            test.attempts.append(_attempt(len(test.attempts) + 1, test, report))
            test.phases = {}
            test.rerun = True
            return
        if test.rerun and report.when == "teardown":  # the retried attempt's teardown
            test.rerun = False
            test.attempts[-1]["duration"] += max(0, round(report.duration * 1000))
            return
        test.phases[report.when] = report
        if report.when == "teardown":
            del self.tests[report.nodeid]
            self._put(*build_result(report.nodeid, test))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if not report.failed:
            return
        path = report.nodeid.split("::")[0] or str(report.fspath)
        result = {"title": report.nodeid or path, "fullTitle": report.nodeid or path,
                  "filePath": path, "status": "failed", "duration": 0,
                  "error": _error(report, "collection"),
                  "annotations": [{"type": "collection-error"}]}
        self._put(result, "error")

    def _put(self, result: dict[str, Any], word: str) -> None:
        self.counts[word] = self.counts.get(word, 0) + 1
        if result["status"] == "failed":
            self.failed = True
        waiting = len(self.buffer)
        if waiting >= QUEUE_SIZE:  # the sender is behind: never wait, spool it instead
            self.spool.tests(self._next_seq(), [result])
            return
        self.buffer.append(result)
        if waiting + 1 >= BATCH and not self.wake.is_set():
            self.wake.set()

    def _next_seq(self) -> int:
        with self._seq_lock:
            self.seq += 1
            return self.seq

    # -- the end ------------------------------------------------------------------------------
    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        for nodeid, test in list(self.tests.items()):  # interrupted before their teardown
            if test.phases:
                self._put(*build_result(nodeid, test))
        self.tests.clear()
        duration = round((time.monotonic() - self.started) * 1000)
        self.finish = {"status": "failed" if self.failed else "passed", "duration": duration}
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=max(30.0, self._timeout() * 4))
            if self.thread.is_alive():  # Redline hangs: what is still here goes to the spool
                self.problem = self.problem or "Redline did not answer in time"
                left = [self.buffer.popleft() for _ in range(len(self.buffer))]
                if left:
                    self.spool.tests(self._next_seq(), left)
                self.spool.finish(status=self.finish["status"],
                                  shardCurrent=self.fields.get("shard_current"),
                                  duration=duration)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write = terminalreporter.write_line
        if self.run_id and not self.spool.used:
            write(f"Redline: {self.sent} results sent to run {self.run_id}")
            return
        if self.spool.used:
            where = self.spool.path.parent
            write(f"Redline: {self.spool.results} results spooled to {self.spool.path}"
                  + (f" ({self.problem})" if self.problem else ""), yellow=True)
            write(f"Redline: send them with `redline upload --spool {where}`", yellow=True)

    # -- the sender thread --------------------------------------------------------------------
    def _timeout(self) -> float:
        from redline.sdk.settings import ClientSettings

        return ClientSettings.from_env().timeout or 10.0

    def _client(self):
        from redline.sdk import Client

        return Client(self.url, timeout=self._timeout(), max_retries=1)

    def _send_loop(self) -> None:
        client = None
        try:
            client = self._client()
            run = client.runs.create(idempotency_key=self._key("run"), **self.fields)
            self.run_id = self.spool.run_id = run.id
        except Exception as exc:  # noqa: BLE001 - whatever fails, the results go to the spool
            self.problem = _describe(exc)
        while True:
            full = self.wake.wait(FLUSH_SECONDS)
            self.wake.clear()
            finish = self.finish  # read before draining: nothing is added after it is set
            # Woken by a full batch: the full batches. After FLUSH_SECONDS without one: what
            # is waiting now, once (draining until the buffer is empty would send the few
            # results that arrive during each request, one tiny request after another, for
            # as long as the tests run). At the end: everything.
            waiting = len(self.buffer)
            if finish is None and full:
                waiting -= waiting % BATCH
            while waiting > 0:
                batch = [self.buffer.popleft() for _ in range(min(BATCH, waiting))]
                waiting -= len(batch)
                self._send(client, batch)
            if finish is not None:
                break
        self._finish(client, finish)
        if client is not None:
            client.close()

    def _key(self, what: str) -> str:
        from redline.spool import key

        return key(self.session, what)

    def _send(self, client: Any, batch: list[dict[str, Any]]) -> None:
        seq = self._next_seq()
        if self.run_id is None or self.problem is not None:
            self.spool.tests(seq, batch)
            return
        try:
            client.runs.add_tests(self.run_id, batch, idempotency_key=self._key(f"tests:{seq}"))
            self.sent += len(batch)
        except Exception as exc:  # noqa: BLE001 - never break the run: spool instead
            self.problem = _describe(exc)
            self.spool.tests(seq, batch)

    def _finish(self, client: Any, finish: dict[str, Any]) -> None:
        shard = self.fields.get("shard_current")
        if self.run_id is None or self.problem is not None or self.spool.used:
            self.spool.finish(status=finish["status"], shardCurrent=shard,
                              duration=finish["duration"])
            return
        try:
            client.runs.update(self.run_id, status=finish["status"], shard_current=shard,
                               duration=None if self.fields.get("shard_total")
                               else finish["duration"])
        except Exception as exc:  # noqa: BLE001 - never break the run: spool instead
            self.problem = _describe(exc)
            self.spool.finish(status=finish["status"], shardCurrent=shard,
                              duration=finish["duration"])


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{code}: {text}" if code else text
