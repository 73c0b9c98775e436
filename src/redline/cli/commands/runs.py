"""Runs: `runs`, `upload`, `wait`, `exec`, `summary` (results and test intelligence:
`results.py`; executed runs, plans and the `runs` commands that act on them: `executions.py`)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time

import click

from redline.cli import output as out
from redline.cli.context import (
    Env,
    common_options,
    idempotency_option,
    pagination_options,
    yes_option,
)
from redline.cli.failures import CliError, Terminated, UsageError
from redline.errors import EXIT_VERDICT_NOT_PASSED
from redline.run_display import not_counted, run_label, verdict_note

#: `run` is the run's name for people (`run_display.run_label`: title, else CI build, ...)
RUN_COLUMNS = ["id", "run", "status", "verdict", "branch", "commitSha", "totalTests",
               "failedTests", "flakyTests", "createdAt"]
RUN_FIELDS = ["id", "run", "status", "verdict", "verdictNote", "quarantinedFailures", "source", "branch",
              "commitSha", "commitMessage", "ciBuildId", "ciBuildUrl", "runTitle",
              "totalTests", "passedTests", "failedTests", "flakyTests", "skippedTests",
              "passRate", "duration", "createdAt", "completedAt"]
#: what `runs get` adds for a run of a plan (executed by a runner)
EXECUTED_RUN_FIELDS = ["planId", "exitCode", "blockedReason", "cancelReason", "runnerId",
                       "attempt", "queuedAt", "startedAt", "finishedAt"]
COMPARE_COLUMNS = ["status", "baseStatus", "fullTitle", "filePath", "testId"]
COMPARE_SECTIONS = [("newFailures", "New failures"), ("stillFailing", "Still failing"),
                    ("fixed", "Fixed"), ("newTests", "New tests"),
                    ("removedTests", "Removed tests")]
FORMATS = click.Choice(["auto", "junit", "playwright-json", "ctrf"])


def _verdict_exit(env: Env, run) -> int:
    """0 when the verdict (quarantine honoured) is passed, else RUN_FAILED's exit status (1);
    says which on stderr."""
    if run.outcome == "passed":
        clause = not_counted(run.to_json())
        env.note(f"Run {run.id}: passed" + (f" ({clause})" if clause else ""))
        return 0
    if getattr(run, "plan_id", None):  # an executed run: its exit status and reason too
        env.note(executed_outcome(run))
        return EXIT_VERDICT_NOT_PASSED
    env.note(f"Run {run.id}: {run.outcome} ({run.failed_tests or 0} failed, "
             f"{run.flaky_tests or 0} flaky, {run.quarantined_failures or 0} quarantined)")
    return EXIT_VERDICT_NOT_PASSED


def executed_outcome(run) -> str:
    """How an executed run ended, for people: `Run run_...: failed, exit 1, 3 of 40 tests
    failed` (or the blocked or cancel reason)."""
    parts = [run.outcome]
    if run.exit_code is not None:
        parts.append(f"exit {run.exit_code}")
    if run.blocked_reason or run.cancel_reason:
        parts.append(run.blocked_reason or run.cancel_reason)
    if run.total_tests:
        parts.append(f"{run.failed_tests or 0} of {run.total_tests} tests failed")
    return f"Run {run.id}: " + ", ".join(parts)


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
    """List, show, compare and delete runs; cancel, signal and read the log of executed runs
    (`redline run PLAN` starts one)."""


@runs.command("list")
@common_options(project=True)
@click.option("--status", type=click.Choice(["queued", "running", "passed", "failed", "blocked",
                                           "cancelled"]))
@click.option("--branch", metavar="BRANCH")
@click.option("--plan", "plan_id", metavar="PLAN_ID", help="Only the runs of this plan.")
@pagination_options
def runs_list(env: Env, status, branch, plan_id, limit, cursor):
    """The project's runs, newest first."""
    project = env.project_for()
    page = env.client(printing=True).runs.list(project, status=status, branch=branch,
                                               plan_id=plan_id,
                                               limit=limit, cursor=cursor)
    if env.output == "json":
        env.emit(page)
        return
    out.print_table([_for_people(run) for run in page.data], RUN_COLUMNS)


def _for_people(run) -> dict:
    """A run's JSON with what a person reads beside it: `run` (its name, never the bare id)
    and `verdictNote` (why the verdict differs from the status, when it does)."""
    body = run.to_json()
    note = verdict_note(body)
    return {**body, "run": run_label(body), **({"verdictNote": note} if note else {})}


@runs.command("get")
@common_options()
@click.argument("run_id")
@click.option("--failures", type=click.IntRange(0, 500), default=20, show_default=True,
              help="Failed tests listed after the run (text mode).")
def runs_get(env: Env, run_id, failures):
    """Show a run with its counts and verdict (and, in text mode, its failed tests)."""
    client = env.client(printing=True)
    run = client.runs.get(run_id)
    if env.output == "json":
        env.emit(run)
        return
    executed = EXECUTED_RUN_FIELDS if run.plan_id else []  # a run of a plan: how it ran
    # a sharded run the shard timeout completed: which shards never reported
    missing = ["shardTotal", "missingShards"] if run.missing_shards else []
    out.print_fields(_for_people(run), [*RUN_FIELDS, *executed, *missing])
    if failures and run.failed_tests:
        failed = client.tests.list(run.project_id, run_id=run.id, status="failed",
                                   limit=failures)
        click.echo(f"\nFailed tests ({failed.total}):")
        out.print_table([{**t.to_json(), "error": out.first_line(
            t.error.message if t.error else None, 100)} for t in failed],
            ["id", "fullTitle", "filePath", "error"])


class NoBaseRun(CliError):
    code = "NOT_FOUND"
    next_action = "Name the run to compare with: --base RUN_ID."


def base_description(diff) -> str:
    """Which run a comparison used and why, for people: "the previous run on feature/x",
    "the latest run on main (feature/x has no earlier run)" or "the run asked for"."""
    if diff.base_reason == "previousOnBranch":
        return f"the previous run on {diff.base_branch}"
    if diff.base_reason == "defaultBranch":
        return f"the latest run on {diff.base_branch}, the default branch (this branch has " \
               "no earlier run)"
    return "the run asked for"


@runs.command("compare")
@common_options()
@click.argument("run_id")
@click.option("--base", metavar="RUN_ID", help="The run to compare with (default: the "
              "previous finished run of the same branch; for a branch without one, the "
              "default branch's latest run).")
def runs_compare(env: Env, run_id, base):
    """What changed since a base run: new failures, still failing, fixed, new and removed
    tests."""
    client = env.client()
    diff = client.runs.compare(run_id, base)
    if diff.base_run_id is None:
        run = client.runs.get(run_id)
        raise NoBaseRun(f"Run {run_id} has no earlier finished run on its branch "
                        f"({run.branch or 'no branch'}) or the default branch to compare "
                        "with", details={"field": "--base", "reason": "no_previous_run",
                                         "branch": run.branch})
    if env.output == "json":
        env.emit(diff)
        return
    counts = ", ".join(f"{diff.summary.get(key, 0)} {title.lower()}"
                       for key, title in COMPARE_SECTIONS)
    click.echo(f"{diff.run_id} against {diff.base_run_id}: {counts}")
    click.echo(f"Base: {base_description(diff)}.")
    for key, title in COMPARE_SECTIONS:
        rows = getattr(diff, _snake(key))
        if rows:
            click.echo(f"\n{title}:")
            out.print_table(rows, COMPARE_COLUMNS)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


@runs.command("delete")
@common_options()
@yes_option
@click.argument("run_id")
def runs_delete(env: Env, run_id, yes):
    """Delete a run with its results and artifacts."""
    env.confirm(yes, f"delete run {run_id} with its results and artifacts")
    env.emit(env.client(printing=True).runs.delete(run_id))


def _import_options(fn):
    fn = click.option("--no-detect", is_flag=True, help="Send only the values given by flags "
                      "(no CI or git detection).")(fn)
    fn = click.option("--title", "run_title", metavar="TITLE", help="Run title (default: "
                      "the CI workflow or job).")(fn)
    fn = click.option("--ci-provider", metavar="NAME", help="CI provider (default: "
                      "detected: github, gitlab, circleci, jenkins, buildkite, azure).")(fn)
    fn = click.option("--ci-build-url", metavar="URL", help="Link to the CI build "
                      "(default: detected).")(fn)
    fn = click.option("--ci-build-id", metavar="ID", help="CI build id; shards of one build "
                      "share it (default: detected).")(fn)
    fn = click.option("--commit-author", metavar="NAME", help="Commit author (default: "
                      "detected, or git's).")(fn)
    fn = click.option("--commit-message", metavar="TEXT", help="Commit message (default: "
                      "detected, or git's).")(fn)
    fn = click.option("--commit", "commit_sha", metavar="SHA", help="Commit tested (default: "
                      "the CI's, e.g. GITHUB_SHA, else the checkout's HEAD).")(fn)
    fn = click.option("--branch", metavar="BRANCH", help="Branch tested (default: the CI's, "
                      "e.g. a pull request's GITHUB_HEAD_REF, else the checkout's).")(fn)
    fn = click.option("--format", "report_format", type=FORMATS,
                      help="Report format (default: detected).")(fn)
    return fn


def _run_metadata(options: dict) -> dict:
    """The run's metadata: the flags' values, then the CI provider's, then git's."""
    from redline.cli import ci

    given = {name: options.get(name) for name in ci.FIELDS}
    if options.get("no_detect"):
        return {**{k: v for k, v in given.items() if v is not None}, "source": "cli"}
    return ci.detect(given, os.environ)


def _summary_line(env: Env, run) -> None:
    """What an upload did, in a few lines: counts, verdict, the dashboard link."""
    counts = (f"{run.total_tests or 0} tests: {run.passed_tests or 0} passed, "
              f"{run.failed_tests or 0} failed, {run.flaky_tests or 0} flaky, "
              f"{run.skipped_tests or 0} skipped")
    where = " ".join(x for x in (f"on {run.branch}" if run.branch else "",
                                 f"at {run.commit_sha[:12]}" if run.commit_sha else "") if x)
    state = run.outcome if run.is_finished else run.status
    # The id (to act on the run) and, when the run has one, its title or CI build; the
    # branch and commit follow the counts.
    named = f" “{run_label(run.to_json())}”" if run.run_title or run.ci_build_id else ""
    click.echo(f"Run {run.id}{named} ({state}): {counts}" + (f" {where}" if where else ""))
    note = verdict_note(run.to_json())
    if note:
        click.echo(note)
    click.echo(f"{env.url}/runs/{run.id}")


@click.command()
@common_options(project=True)
@_import_options
@click.argument("reports", nargs=-1, required=False,
                type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--wait/--no-wait", "wait_", default=False,
              help="Wait for the run's verdict before exiting.")
@click.option("--fail-on-failures", is_flag=True,
              help="Exit 1 unless the verdict (quarantine honoured) is passed.")
@click.option("--timeout", type=click.FloatRange(min=1), default=600, show_default=True,
              help="Seconds --wait waits (then WAIT_TIMEOUT, exit 7; the run goes on).")
@idempotency_option
@click.option("--spool", type=click.Path(exists=True), metavar="DIR",
              help="Instead of reports: send what the pytest plugin or the Playwright "
              "reporter spooled when Redline was unreachable (.redline/spool), with the "
              "screenshots, videos and traces kept beside them; sending a spool twice "
              "stores each result and attachment once.")
@click.option("--attachments/--no-attachments", default=True, show_default=True,
              help="Upload the screenshots, videos and traces a Playwright JSON report "
              "lists, linked to their tests.")
def upload(env: Env, reports, report_format, wait_, fail_on_failures, timeout,
           idempotency_key, attachments, **metadata):
    """Import test reports (JUnit XML, Playwright JSON, CTRF JSON) as one run.

    Branch, commit, build and title are detected from the CI provider (GitHub Actions,
    GitLab CI, CircleCI, Jenkins, Buildkite, Azure Pipelines), else from the git checkout;
    each flag overrides its value. The screenshots, videos and traces a Playwright JSON
    report lists are uploaded too, linked to their tests (--no-attachments: not).
    """
    from redline.cli import attachments as attached

    spool = metadata.pop("spool", None)
    if spool is not None or not reports:
        from redline.cli.spool import upload_spool

        return upload_spool(env, spool, reports)
    client = env.client()
    run = client.runs.import_report(list(reports), env.project, format=report_format,
                                    **_run_metadata(metadata),
                                    idempotency_key=idempotency_key,
                                    on_progress=_upload_progress(env))
    sent = None
    if attachments and attached.has_playwright_report(list(reports), report_format):
        sent = attached.upload_attachments(env, client, run, list(reports))
    if (wait_ or fail_on_failures) and not run.is_finished:
        run = client.runs.wait(run.id, timeout=timeout,
                               on_poll=_progress(env, time.monotonic()))
    if env.output == "json":
        env.emit(run if sent is None else {**run.to_json(), "attachments": sent})
    else:
        _summary_line(env, run)
        if sent is not None and (sent["uploaded"] or sent["missing"] or sent["failed"]):
            click.echo(f"Attachments: {sent['uploaded']} uploaded"
                       + (f", {sent['missing']} not found" if sent["missing"] else "")
                       + (f", {sent['failed']} refused" if sent["failed"] else ""))
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
def exec_(env: Env, report_globs, on_outage, timeout, command, report_format,
          **metadata):
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
        # JSON mode: stdout is the run's JSON alone, so the command's own output goes to stderr
        proc = subprocess.Popen(list(command),
                                stdout=sys.stderr if env.output == "json" else None)
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
                                        **_run_metadata(metadata))
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
@click.option("--base", metavar="RUN_ID", help="The run new failures are counted against "
              "(default: the previous finished run of the same branch; for a new branch, the "
              "default branch's latest run).")
@click.option("--max-failures", type=click.IntRange(1, 500), default=20, show_default=True,
              help="Tests listed at most per section.")
def summary(env: Env, run_id, fmt, base, max_failures):
    """What a pull request needs about a run: the verdict, new failures against the branch's
    previous run, failures that were failing before, fixed, flaky and quarantined tests, and
    links to the dashboard.

    Append it to a PR comment or to $GITHUB_STEP_SUMMARY:
    `redline summary RUN_ID >> "$GITHUB_STEP_SUMMARY"`.
    """
    data = collect_summary(env.client(), run_id, base, max_failures, env.url)
    if env.output == "json":
        env.emit(data)
        return 0
    click.echo(render_summary(data, markdown=fmt == "markdown"))
    return 0


#: failed results read to tell quarantined failures from the others
MAX_FAILED_READ = 1000


def collect_summary(client, run_id: str, base: str | None, limit: int, url: str) -> dict:
    """Everything the summary shows, as JSON: the run, its base, and the tests by section."""
    from itertools import islice

    run = client.runs.get(run_id)
    compared = client.runs.compare(run.id, base)
    diff = compared if compared.base_run_id is not None else None
    base_id = compared.base_run_id
    failed = list(islice(client.tests.iter(run.project_id, run_id=run.id, status="failed",
                                           limit=min(MAX_FAILED_READ, 500)), MAX_FAILED_READ))
    flaky = client.tests.list(run.project_id, run_id=run.id, status="flaky", limit=limit)
    quarantined_cases: set[str] = set()
    if run.quarantined_failures:
        quarantined_cases = {t.test_id for t in client.flakiness.iter(
            run.project_id, quarantined=True, limit=500)}
    by_id = {t.id: t for t in failed}

    def result_json(test) -> dict:
        error = test.error.message if test.error else None
        return {"testId": test.id, "testCaseId": test.test_case_id,
                "fullTitle": test.full_title or test.title, "filePath": test.file_path,
                "variant": test.variant, "status": test.status,
                "error": out.first_line(error, 300) or None,
                "url": f"{url}/tests/{test.id}"}

    def item_json(item) -> dict:
        found = by_id.get(item.test_id)
        body = result_json(found) if found else {
            "testId": item.test_id, "testCaseId": item.test_case_id,
            "fullTitle": item.full_title, "filePath": item.file_path, "status": item.status,
            "url": f"{url}/tests/{item.test_id}"}
        return {**body, "baseStatus": item.base_status}

    counted = [t for t in failed if t.test_case_id not in quarantined_cases]
    quarantined = []
    for test in [t for t in failed if t.test_case_id in quarantined_cases][:limit]:
        info = client.test_cases.get(test.test_case_id).quarantine
        quarantined.append({**result_json(test), "caseUrl": f"{url}/cases/{test.test_case_id}",
                            "quarantine": info.to_json() if info else None})
    sections: dict = {"failed": [result_json(t) for t in counted[:limit]],
                      "failedTotal": len(counted)}
    if diff is not None:
        for key in ("new_failures", "still_failing", "fixed"):
            items = [i for i in getattr(diff, key)
                     if key == "fixed" or i.test_case_id not in quarantined_cases]
            name = "".join(w.title() if n else w for n, w in enumerate(key.split("_")))
            sections[name] = [item_json(i) for i in items[:limit]]
            sections[name + "Total"] = len(items)
    return {"run": run.to_json(), "runLabel": run_label(run.to_json()), "verdict": run.outcome,
            "verdictNote": verdict_note(run.to_json()), "baseRunId": base_id,
            "baseLabel": compared.base_title,
            "baseBranch": compared.base_branch, "baseReason": compared.base_reason,
            "baseDescription": base_description(compared) if diff is not None else None,
            "comparison": diff.summary if diff is not None else None, **sections,
            "flaky": [result_json(t) for t in flaky.data], "flakyTotal": flaky.total,
            "quarantined": quarantined,
            "quarantinedTotal": run.quarantined_failures or 0,
            "links": {"run": f"{url}/runs/{run.id}",
                      "base": f"{url}/runs/{base_id}" if base_id else None}}


def _title(test: dict) -> str:
    """The full title, with the variant (a Playwright project) when there is one."""
    return test["fullTitle"] + (f" [{test['variant']}]" if test.get("variant") else "")


def render_summary(data: dict, *, markdown: bool = True) -> str:
    run, verdict, links = data["run"], data["verdict"], data["links"]
    counts = (f"{run.get('totalTests') or 0} tests: {run.get('passedTests') or 0} passed, "
              f"{run.get('failedTests') or 0} failed, {run.get('flakyTests') or 0} flaky, "
              f"{run.get('skippedTests') or 0} skipped")
    counts += "".join([f" on `{run['branch']}`" if run.get("branch") else "",
                       f" at `{run['commitSha'][:12]}`" if run.get("commitSha") else ""])
    if data["quarantinedTotal"]:
        counts += (f"; {data['quarantinedTotal']} failure(s) in quarantine, not counted in "
                   "the verdict")
    base = data["baseRunId"]
    if not markdown:
        lines = [f"Redline run {run['id']}: {verdict}", f"Run: {data['runLabel']}",
                 counts.replace("`", ""), links["run"]]
        if base:
            lines.append(f"Compared with {data['baseLabel']}: {data['baseDescription']}")
        sections = [("NEW FAILURE", "newFailures"), ("STILL FAILING", "stillFailing"),
                    ("FIXED", "fixed")] if base else [("FAILED", "failed")]
        for label, key in [*sections, ("FLAKY", "flaky"), ("QUARANTINED", "quarantined")]:
            for test in data.get(key) or []:
                lines.append(f"{label} {_title(test)} ({test.get('filePath') or '-'})"
                             + (f": {test['error']}" if test.get("error") else ""))
        return "\n".join(lines)

    mark = {"passed": "✅", "failed": "❌"}.get(verdict, "⚠️")
    lines = [f"### {mark} Redline: {verdict}", "", f"[{data['runLabel']}]({links['run']}): "
             + counts, ""]

    def bullets(tests: list[dict], total: int, *, errors: bool = True) -> None:
        for test in tests:
            line = f"- [`{_title(test)}`]({test['url']})"
            if test.get("filePath"):
                line += f" (`{test['filePath']}`)"
            if errors and test.get("error"):
                line += f": {test['error']}"
            lines.append(line)
        if total > len(tests):
            lines.append(f"- … and {total - len(tests)} more")
        lines.append("")

    if base:
        previous = f"[{data['baseLabel']}]({links['base']})"
        new = data["newFailuresTotal"]
        if data["baseReason"] == "defaultBranch":
            since = (f"the latest run on `{data['baseBranch']}`, the default branch "
                     f"(`{run.get('branch')}` has no earlier run)")
        elif data["baseReason"] == "previousOnBranch":
            since = f"the previous run on `{data['baseBranch']}`"
        else:
            since = "the run asked for"
        lines.append(f"**New failures ({new})** since {previous}, {since}")
        lines.append("")
        if new:
            bullets(data["newFailures"], new)
        for key, title in (("stillFailing", "Still failing"), ("fixed", "Fixed")):
            if data[key + "Total"]:
                lines += [f"**{title} ({data[key + 'Total']})**", ""]
                bullets(data[key], data[key + "Total"], errors=key != "fixed")
    else:
        if data["failedTotal"]:
            lines += [f"**Failed ({data['failedTotal']})**", ""]
            bullets(data["failed"], data["failedTotal"])
        lines += [("No earlier run of this branch to compare with, nor of the default "
                   "branch."), ""]
    if data["flakyTotal"]:
        lines += [f"**Flaky ({data['flakyTotal']})**: passed on a retry", ""]
        bullets(data["flaky"], data["flakyTotal"], errors=False)
    if data["quarantinedTotal"]:
        lines += [(f"**Quarantined ({data['quarantinedTotal']})**: failed, not counted in "
                   "the verdict"), ""]
        for test in data["quarantined"]:
            info = test.get("quarantine") or {}
            about = [f"owner {info['owner']}" if info.get("owner") else "",
                     f"until {info['expiresAt'][:10]}" if info.get("expiresAt") else "",
                     f"“{info['reason']}”" if info.get("reason") else ""]
            about_text = ", ".join(a for a in about if a)
            lines.append(f"- [`{_title(test)}`]({test['caseUrl']})"
                         + (f" (`{test['filePath']}`)" if test.get("filePath") else "")
                         + (f": {about_text}" if about_text else ""))
        if data["quarantinedTotal"] > len(data["quarantined"]):
            lines.append(f"- … and {data['quarantinedTotal'] - len(data['quarantined'])} "
                         "more")
        lines.append("")
    lines.append(f"[View the run in Redline]({links['run']})")
    return "\n".join(lines)

