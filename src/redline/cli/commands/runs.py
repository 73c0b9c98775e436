"""Runs and results: `runs`, `upload`, `wait`, `exec`, `summary`, `flakiness`, `quarantine`,
`unquarantine`, `tests`, `plans`."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time

import click

from redline.cli.context import (
    Env,
    common_options,
    idempotency_option,
    pagination_options,
    yes_option,
)
from redline.cli.failures import Terminated, UsageError

RUN_COLUMNS = ["id", "status", "verdict", "branch", "commitSha", "totalTests", "failedTests",
               "flakyTests", "createdAt"]
TEST_COLUMNS = ["id", "status", "fullTitle", "filePath", "duration"]
HISTORY_COLUMNS = ["runId", "status", "branch", "commitSha", "duration", "createdAt"]
FLAKY_COLUMNS = ["testCaseId", "testId", "flakinessScore", "flakyRuns", "totalRuns",
                 "isQuarantined", "testTitle"]
FORMATS = click.Choice(["auto", "junit", "playwright-json", "ctrf"])


def _verdict_exit(env: Env, run) -> int:
    """0 when the verdict (quarantine honoured) is passed, else 1; says which on stderr."""
    if run.outcome == "passed":
        env.note(f"Run {run.id}: passed")
        return 0
    env.note(f"Run {run.id}: {run.outcome} ({run.failed_tests or 0} failed, "
             f"{run.flaky_tests or 0} flaky, {run.quarantined_failures or 0} quarantined)")
    return 1


def _upload_progress(env: Env):
    """A byte counter for an upload on a terminal in text mode; nothing otherwise."""
    if env.output == "json" or not sys.stderr.isatty():
        return None

    def show(sent: int, total: int):
        percent = 100 * sent // total if total else 100
        width = 30
        bar = "#" * (width * percent // 100)
        sys.stderr.write(f"\rUploading [{bar:<{width}}] {percent:3d}% of {total / 1e6:.1f} MB")
        if sent >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _progress(env: Env, started: float):
    """A one-line progress display on a terminal in text mode; nothing otherwise."""
    if env.output == "json" or not sys.stderr.isatty():
        return None

    def show(run):
        sys.stderr.write(f"\rWaiting for {run.id}: {run.status} "
                         f"({int(time.monotonic() - started)} s)   ")
        sys.stderr.flush()
        if run.is_finished:
            sys.stderr.write("\n")

    return show


@click.group()
def runs():
    """List, show and delete runs."""


@runs.command("list")
@common_options(project=True)
@click.option("--status", type=click.Choice(["queued", "running", "passed", "failed",
                                              "blocked", "cancelled"]))
@click.option("--branch", metavar="BRANCH")
@pagination_options
def runs_list(env: Env, status, branch, limit, cursor):
    """The project's runs, newest first."""
    env.emit(env.client().runs.list(env.project, status=status, branch=branch, limit=limit,
                                    cursor=cursor), columns=RUN_COLUMNS)


@runs.command("get")
@common_options()
@click.argument("run_id")
def runs_get(env: Env, run_id):
    """Show a run with its counts and verdict."""
    env.emit(env.client().runs.get(run_id))


@runs.command("delete")
@common_options()
@yes_option
@click.argument("run_id")
def runs_delete(env: Env, run_id, yes):
    """Delete a run with its results and artifacts."""
    env.confirm(yes, f"delete run {run_id} with its results and artifacts")
    env.emit(env.client().runs.delete(run_id))


def _import_options(fn):
    fn = click.option("--ci-build-id", metavar="ID", help="CI build id (shards of one build "
                      "share it).")(fn)
    fn = click.option("--commit", "commit_sha", metavar="SHA", envvar="GITHUB_SHA",
                      help="Commit tested (default: GITHUB_SHA).")(fn)
    fn = click.option("--branch", metavar="BRANCH", envvar="GITHUB_REF_NAME",
                      help="Branch tested (default: GITHUB_REF_NAME).")(fn)
    fn = click.option("--format", "report_format", type=FORMATS,
                      help="Report format (default: detected).")(fn)
    return fn


@click.command()
@common_options(project=True)
@_import_options
@click.argument("reports", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--wait/--no-wait", "wait_", default=False,
              help="Wait for the run's verdict before exiting.")
@click.option("--fail-on-failures", is_flag=True,
              help="Exit 1 unless the verdict (quarantine honoured) is passed.")
@click.option("--timeout", type=click.FloatRange(min=1), default=600, show_default=True,
              help="Seconds --wait waits (then WAIT_TIMEOUT, exit 7; the run goes on).")
@idempotency_option
def upload(env: Env, reports, report_format, branch, commit_sha, ci_build_id, wait_,
           fail_on_failures, timeout, idempotency_key):
    """Import test reports (JUnit XML, Playwright JSON, CTRF JSON) as one run."""
    client = env.client()
    run = client.runs.import_report(list(reports), env.project, format=report_format,
                                    branch=branch, commit_sha=commit_sha,
                                    ci_build_id=ci_build_id, source="cli",
                                    idempotency_key=idempotency_key,
                                    on_progress=_upload_progress(env))
    if (wait_ or fail_on_failures) and not run.is_finished:
        run = client.runs.wait(run.id, timeout=timeout,
                               on_poll=_progress(env, time.monotonic()))
    env.emit(run)
    if fail_on_failures:
        return _verdict_exit(env, run)
    return 0


@click.command()
@common_options()
@click.argument("run_id")
@click.option("--timeout", type=click.FloatRange(min=0), default=1800, show_default=True,
              help="Seconds to wait (then WAIT_TIMEOUT, exit 7; the run goes on).")
@click.option("--poll", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds between polls.")
def wait(env: Env, run_id, timeout, poll):
    """Wait for a run's verdict: exit 0 when passed, 1 otherwise, 7 at the timeout."""
    run = env.client().runs.wait(run_id, timeout=timeout, poll=poll,
                                 on_poll=_progress(env, time.monotonic()))
    env.emit(run)
    return _verdict_exit(env, run)


def _find_reports(patterns: list[str], since: float) -> list[str]:
    found: list[str] = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern, recursive=True)):
            if os.path.isfile(path) and os.path.getmtime(path) >= since and path not in found:
                found.append(path)
    return found


@click.command("exec", context_settings={"allow_interspersed_args": False})
@common_options(project=True)
@_import_options
@click.option("--report", "report_globs", multiple=True, required=True, metavar="GLOB",
              help="Report file(s) the command writes (repeatable; ** allowed).")
@click.option("--on-outage", type=click.Choice(["command", "fail", "pass"]), default="command",
              show_default=True, help="When Redline cannot be reached: exit with the "
              "command's own status, fail (exit 10), or pass (exit 0).")
@click.option("--timeout", type=click.FloatRange(min=1), default=600, show_default=True,
              help="Seconds to wait for the verdict.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(env: Env, report_globs, on_outage, timeout, command, report_format, branch,
          commit_sha, ci_build_id):
    """Run COMMAND, import the reports it wrote, and exit by the run's verdict with
    quarantine honoured (a quarantined flaky test no longer breaks the build).

    \b
    Example:
      redline exec --report 'reports/*.xml' -- pytest --junitxml reports/junit.xml
    """
    from redline.sdk.exceptions import (
        InternalServerError,
        NetworkError,
        RateLimitedError,
        TimeoutError,
        UnavailableError,
    )

    started = time.time() - 1  # a report written in the same second still counts
    try:
        proc = subprocess.Popen(list(command))
    except OSError as exc:
        raise UsageError(f"Cannot run {command[0]!r}: {exc.strerror or exc}",
                         details={"field": "COMMAND", "reason": "not_executable"}) from exc
    try:
        status = proc.wait()
    except (KeyboardInterrupt, Terminated):
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    reports = _find_reports(list(report_globs), started)
    if not reports:
        raise UsageError(f"The command exited {status} and wrote no report matching "
                         + ", ".join(report_globs),
                         details={"field": "--report", "reason": "no_report",
                                  "commandExitCode": status},
                         next_action="Check that the command writes its report where "
                         "--report points.")
    outage = (NetworkError, UnavailableError, TimeoutError, InternalServerError,
              RateLimitedError)
    try:
        client = env.client()
        run = client.runs.import_report(reports, env.project, format=report_format,
                                        branch=branch, commit_sha=commit_sha,
                                        ci_build_id=ci_build_id, source="cli")
        if not run.is_finished:
            run = client.runs.wait(run.id, timeout=timeout)
    except outage as exc:
        if on_outage == "fail":
            raise
        verdict = 0 if on_outage == "pass" else status
        why = "--on-outage pass" if on_outage == "pass" else "the command's own status"
        sys.stderr.write(f"redline: could not report to {env.url} ([{exc.code}] "
                         f"{exc.message}); exiting {verdict} ({why})\n")
        return verdict
    env.emit(run)
    return _verdict_exit(env, run)


@click.command()
@common_options()
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(["markdown", "text"]), default="markdown",
              show_default=True)
@click.option("--max-failures", type=int, default=20, show_default=True,
              help="Failed tests listed at most.")
def summary(env: Env, run_id, fmt, max_failures):
    """What a pull request needs about a run: verdict, failures, flaky, quarantined, link.

    Append it to a PR comment or to $GITHUB_STEP_SUMMARY:
    `redline summary RUN_ID >> "$GITHUB_STEP_SUMMARY"`.
    """
    client = env.client()
    run = client.runs.get(run_id)
    failed = client.tests.list(run.project_id, run_id=run_id, status="failed",
                               limit=max_failures)
    flaky = client.tests.list(run.project_id, run_id=run_id, status="flaky", limit=max_failures)
    if env.output == "json":
        env.emit({"run": run.to_json(), "failed": [t.to_json() for t in failed.data],
                  "flaky": [t.to_json() for t in flaky.data]})
        return 0
    click.echo(render_summary(run, failed.data, flaky.data, env.url, markdown=fmt == "markdown",
                              failed_total=failed.total))
    return 0


def render_summary(run, failed, flaky, base_url: str, *, markdown: bool = True,
                   failed_total: int | None = None) -> str:
    outcome = run.outcome
    mark = {"passed": "✅", "failed": "❌"}.get(outcome, "⚠️")
    link = f"{base_url}/runs/{run.id}"
    counts = (f"{run.total_tests or 0} tests: {run.passed_tests or 0} passed, "
              f"{run.failed_tests or 0} failed, {run.flaky_tests or 0} flaky, "
              f"{run.skipped_tests or 0} skipped")
    if run.quarantined_failures:
        counts += f", {run.quarantined_failures} failed in quarantine (not counted)"
    if not markdown:
        lines = [f"Redline run {run.id}: {outcome}", counts, link]
        lines += [f"FAILED {t.full_title or t.title} ({t.file_path or '-'})" for t in failed]
        lines += [f"FLAKY {t.full_title or t.title}" for t in flaky]
        return "\n".join(lines)
    lines = [f"### {mark} Redline: {outcome}", "",
             f"{counts}" + (f" on `{run.branch}`" if run.branch else "")
             + (f" at `{run.commit_sha[:12]}`" if run.commit_sha else ""), ""]
    if failed:
        lines += [f"**Failed ({failed_total or len(failed)})**", ""]
        for test in failed:
            message = (test.error.message if test.error and test.error.message else "")
            message = message.splitlines()[0][:200] if message else ""
            lines.append(f"- `{test.full_title or test.title}` ({test.file_path or '-'})"
                         + (f": {message}" if message else ""))
        lines.append("")
    if flaky:
        lines += ["**Flaky**", ""]
        lines += [f"- `{t.full_title or t.title}`" for t in flaky]
        lines.append("")
    lines.append(f"[View the run in Redline]({link})")
    return "\n".join(lines)


@click.command()
@common_options(project=True)
@click.option("--min-score", type=click.FloatRange(0, 1), help="Only scores at or above.")
@click.option("--quarantined/--not-quarantined", default=None,
              help="Only quarantined (or only not quarantined) tests.")
@click.option("--limit", type=click.IntRange(1, 500), default=None)
def flakiness(env: Env, min_score, quarantined, limit):
    """Flaky tests, highest score first."""
    report = env.client().flakiness.list(env.project, min_score=min_score,
                                         quarantined=quarantined, limit=limit)
    env.emit(report, columns=FLAKY_COLUMNS)


@click.command()
@common_options(project=True)
@click.argument("test_id")
@click.option("--reason", metavar="TEXT", help="Why (shown in the dashboard).")
def quarantine(env: Env, test_id, reason):
    """Quarantine a test case: its failures stop failing verdicts of later runs."""
    env.emit(env.client().flakiness.quarantine(test_id, env.project, reason=reason))


@click.command()
@common_options(project=True)
@click.argument("test_id")
def unquarantine(env: Env, test_id):
    """Take a test case out of quarantine."""
    env.emit(env.client().flakiness.unquarantine(test_id, env.project))


@click.group()
def tests():
    """Test results: list, show, steps, history."""


@tests.command("list")
@common_options(project=True)
@click.option("--run", "run_id", metavar="RUN_ID")
@click.option("--status", type=click.Choice(["passed", "failed", "skipped", "flaky"]))
@click.option("--search", metavar="TEXT")
@pagination_options
def tests_list(env: Env, run_id, status, search, limit, cursor):
    """Test results, filtered by run, status or title."""
    env.emit(env.client().tests.list(env.project, run_id=run_id, status=status, search=search,
                                     limit=limit, cursor=cursor), columns=TEST_COLUMNS)


@tests.command("get")
@common_options()
@click.argument("test_id")
def tests_get(env: Env, test_id):
    """One test result with its error."""
    env.emit(env.client().tests.get(test_id))


@tests.command("steps")
@common_options()
@click.argument("test_id")
def tests_steps(env: Env, test_id):
    """A test result's steps."""
    env.emit(env.client().tests.steps(test_id), columns=["title", "category", "status",
                                                         "duration"])


@tests.command("history")
@common_options()
@click.argument("test_id")
@click.option("--limit", type=click.IntRange(1, 500), default=None)
def tests_history(env: Env, test_id, limit):
    """The test's recent results across runs."""
    env.emit(env.client().tests.history(test_id, limit=limit), columns=HISTORY_COLUMNS)


@click.group()
def plans():
    """Executed runs (plans), on servers that have them."""


@plans.command("list")
@common_options(project=True)
def plans_list(env: Env):
    """The project's plans."""
    env.emit(env.client().plans.list(env.project), columns=["id", "name"])


@plans.command("trigger")
@common_options()
@click.argument("plan_id")
@click.option("--wait/--no-wait", "wait_", default=False, help="Wait for the verdict.")
@click.option("--timeout", type=click.FloatRange(min=1), default=1800, show_default=True)
def plans_trigger(env: Env, plan_id, wait_, timeout):
    """Start a plan's run (queued, then run by a worker)."""
    client = env.client()
    run = client.plans.trigger(plan_id)
    if wait_:
        run = client.runs.wait(run.id, timeout=timeout)
        env.emit(run)
        return _verdict_exit(env, run)
    env.emit(run)
    return 0

