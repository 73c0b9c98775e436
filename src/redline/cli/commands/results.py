"""Results and test intelligence: `tests`, `suites`, `cases`, `flakiness`, `quarantine`,
`unquarantine`, `errors`, `trends`.

JSON mode prints the server's JSON; text mode prints tables (tab-separated rows when piped)
and, for one object, its fields followed by what belongs to it (an error, evidence, history).
"""

from __future__ import annotations

import click

from redline.cli import output as out
from redline.cli.context import Env, When, common_options, pagination_options

TEST_COLUMNS = ["id", "status", "fullTitle", "filePath", "variant", "duration"]
HISTORY_COLUMNS = ["runId", "testId", "status", "branch", "commitSha", "duration", "createdAt"]
CASE_COLUMNS = ["id", "status", "flakinessScore", "failureRate", "totalRuns",
                "isQuarantined", "fullTitle", "filePath"]
FLAKY_COLUMNS = ["testId", "flakinessScore", "flakyRuns", "totalRuns", "status",
                 "isQuarantined", "fullTitle", "filePath"]
ERROR_COLUMNS = ["fingerprint", "occurrences", "affectedTests", "errorType", "lastSeen",
                 "message"]
TREND_COLUMNS = ["key", "runs", "totalTests", "passedTests", "failedTests", "flakyTests",
                 "skippedTests", "passRate", "duration"]
TEST_FIELDS = ["id", "status", "title", "fullTitle", "filePath", "lineNumber", "variant",
               "duration", "retries", "attempt", "isFlaky", "tags", "runId", "testCaseId",
               "suiteId", "createdAt"]
CASE_FIELDS = ["id", "status", "fullTitle", "filePath", "variant", "flakinessScore",
               "totalRuns", "flakyRuns", "failedRuns", "failureRate", "avgDuration",
               "lastStatus", "lastRunAt", "lastFlakyAt", "tags", "isQuarantined"]
STATUS_MARKS = {"passed": "✓", "failed": "✗", "skipped": "-", "flaky": "~"}

CaseStatus = click.Choice(["new", "stable", "flaky", "broken"])
ResultStatus = click.Choice(["passed", "failed", "skipped", "flaky"])


def _error_lines(error) -> None:
    if error is None:
        return
    click.echo("error:")
    for line in (error.message or "").rstrip().splitlines() or ["(no message)"]:
        click.echo(f"  {line}")
    if error.stack and error.stack.strip() != (error.message or "").strip():
        click.echo("stack:")
        for line in error.stack.rstrip().splitlines():
            click.echo(f"  {line}")


# -- tests -----------------------------------------------------------------------------------

@click.group()
def tests():
    """Test results: list, show, steps, history."""


@tests.command("list")
@common_options(project=True)
@click.option("--run", "run_id", metavar="RUN_ID", help="Only this run's results.")
@click.option("--status", type=ResultStatus)
@click.option("--search", metavar="TEXT", help="In the full title or file path.")
@pagination_options
def tests_list(env: Env, run_id, status, search, limit, cursor):
    """Test results, filtered by run, status or title."""
    env.emit(env.client(printing=True).tests.list(env.project, run_id=run_id, status=status, search=search,
                                     limit=limit, cursor=cursor), columns=TEST_COLUMNS)


@tests.command("get")
@common_options()
@click.argument("test_id")
def tests_get(env: Env, test_id):
    """One test result with its error (and, in JSON, its output and attachments)."""
    result = env.client(printing=True).tests.get(test_id)
    if env.output == "json":
        env.emit(result)
        return
    out.print_fields(result, TEST_FIELDS)
    _error_lines(result.error)


@tests.command("steps")
@common_options()
@click.argument("test_id")
def tests_steps(env: Env, test_id):
    """A test result's steps (hooks, actions, assertions), nested."""
    steps = env.client(printing=True).tests.steps(test_id)
    if env.output == "json":
        env.emit(steps)
        return
    rows = []
    for depth, step in steps.walk():
        mark = STATUS_MARKS.get(step.status or "", "·")
        text = f"{mark} {step.title}"
        if step.duration is not None:
            text += f" ({step.duration} ms)"
        if step.error is not None and step.error.message:
            text += f": {out.first_line(step.error.message, 120)}"
        rows.append((depth, text))
    out.print_tree(rows)


@tests.command("history")
@common_options()
@click.argument("test_id")
@click.option("--branch", metavar="BRANCH", help="Only runs of this branch.")
def tests_history(env: Env, test_id, branch):
    """The last 20 results of the test's case across runs, newest first (TEST_ID: a result
    test_... or a case tc_...)."""
    env.emit(env.client(printing=True).tests.history(test_id, branch=branch), columns=HISTORY_COLUMNS)


# -- suites ----------------------------------------------------------------------------------

@click.command()
@common_options(project=True)
@click.argument("run_id")
def suites(env: Env, run_id):
    """A run's suite tree (describe blocks, classes, files)."""
    tree = env.client(printing=True).test_suites.list(run_id, env.project)
    if env.output == "json":
        env.emit(tree)
        return
    out.print_tree([(depth, f"{suite.title}  {suite.id}"
                     + (f"  ({suite.file_path})" if suite.file_path and depth == 0 else ""))
                    for depth, suite in tree.walk()])


# -- test cases ------------------------------------------------------------------------------

@click.group()
def cases():
    """Test cases: each test's identity across runs, with its statistics, flakiness evidence
    and quarantine."""


@cases.command("list")
@common_options(project=True)
@click.option("--status", type=CaseStatus, help="new, stable, flaky, or broken (fails every "
              "time).")
@click.option("--file", metavar="PATH", help="Only this file (exact path).")
@click.option("--tag", metavar="TAG")
@click.option("--search", metavar="TEXT", help="In the full title or file path.")
@click.option("--sort", type=click.Choice(["flakiness", "failure-rate", "duration", "title"]),
              help="Order (default: flakiness, highest first).")
@pagination_options
def cases_list(env: Env, status, file, tag, search, sort, limit, cursor):
    """The project's test cases with their flakiness score and failure rate."""
    env.emit(env.client(printing=True).test_cases.list(env.project, status=status, file=file, tag=tag,
                                          search=search, sort=sort, limit=limit,
                                          cursor=cursor), columns=CASE_COLUMNS)


@cases.command("get")
@common_options()
@click.argument("test_id")
def cases_get(env: Env, test_id):
    """A test case (tc_..., or one of its results test_...) with the evidence behind its
    flakiness score, the runs it failed in, and its quarantine history."""
    case = env.client(printing=True).test_cases.get(test_id)
    if env.output == "json":
        env.emit(case)
        return
    out.print_fields(case, CASE_FIELDS)
    if case.quarantine is not None:
        q = case.quarantine
        click.echo(f"quarantine: since {q.at or '-'} by {q.by or 'auto'}; owner "
                   f"{q.owner or '-'}; expires {q.expires_at or 'never'}; reason "
                   f"{q.reason or '-'}")
    sections = [("Evidence (flaky)", case.evidence, ["runId", "commitSha", "status", "kind",
                                                     "at"]),
                ("Failed in", case.failed_in, ["runId", "commitSha", "at"]),
                ("Quarantine history", case.quarantine_history,
                 ["action", "automatic", "by", "owner", "expiresAt", "reason", "at"])]
    for title, rows, columns in sections:
        if rows:
            click.echo(f"\n{title}:")
            out.print_table(rows, columns)
    if case.score_formula:
        click.echo(f"\n{case.score_formula}")


# -- flakiness and quarantine ----------------------------------------------------------------

@click.group()
def flakiness():
    """Flaky test cases by score."""


@flakiness.command("list")
@common_options(project=True)
@click.option("--min-score", type=click.FloatRange(0, 1), help="Only scores at or above "
              "(default: every case with flaky evidence or in quarantine).")
@click.option("--quarantined/--not-quarantined", default=None,
              help="Only quarantined (or only not quarantined) cases.")
@pagination_options
def flakiness_list(env: Env, min_score, quarantined, limit, cursor):
    """Flaky test cases, highest score first (testId is the case's id, tc_...)."""
    report = env.client(printing=True).flakiness.list(env.project, min_score=min_score,
                                         quarantined=quarantined, limit=limit, cursor=cursor)
    env.emit(report, columns=FLAKY_COLUMNS)
    if env.output != "json" and report.summary is not None:
        s = report.summary
        env.note(f"{s.total_flaky_tests} flaky at or above the threshold {s.threshold}, "
                 f"{s.quarantined_tests} quarantined, average score "
                 f"{s.average_flakiness_score}")


@click.command()
@common_options(project=True)
@click.argument("test_id")
@click.option("--reason", metavar="TEXT", help="Why (kept in the quarantine history).")
@click.option("--owner", metavar="WHO", help="Who is fixing it.")
@click.option("--expires", type=When(future=True), metavar="WHEN",
              help="When it lifts by itself: a time (2026-12-01T00:00:00Z) or a duration "
              "(12h, 7d, 2w).")
def quarantine(env: Env, test_id, reason, owner, expires):
    """Quarantine a test case (tc_..., or one of its results test_...): its failures stop
    failing the verdict of runs started from now on."""
    env.emit(env.client(printing=True).flakiness.quarantine(test_id, env.project, reason=reason,
                                               owner=owner, expires_at=expires))


@click.command()
@common_options(project=True)
@click.argument("test_id")
@click.option("--reason", metavar="TEXT", help="Why (kept in the quarantine history).")
def unquarantine(env: Env, test_id, reason):
    """Take a test case out of quarantine: its failures fail verdicts again."""
    env.emit(env.client(printing=True).flakiness.unquarantine(test_id, env.project, reason=reason))


# -- errors and trends -----------------------------------------------------------------------

@click.group()
def errors():
    """Failures grouped by their normalised error."""


@errors.command("list")
@common_options(project=True)
@click.option("--since", type=When(future=False), metavar="WHEN",
              help="Only failures since: a time or a duration back (24h, 7d; default 30d).")
@pagination_options
def errors_list(env: Env, since, limit, cursor):
    """Error groups, most frequent first: one line per distinct error, with how many
    failures and tests it hit."""
    page = env.client(printing=True).errors.list(env.project, since=since, limit=limit, cursor=cursor)
    if env.output == "json":
        env.emit(page)
        return
    rows = [{**group.to_json(), "fingerprint": group.fingerprint[:12],
             "message": out.first_line(group.message, 120)} for group in page]
    out.print_table(rows, ERROR_COLUMNS)


@click.command()
@common_options(project=True)
@click.option("--group-by", type=click.Choice(["day", "run"]), default="day",
              show_default=True)
@click.option("--branch", metavar="BRANCH", help="Only runs of this branch.")
@click.option("--days", type=click.IntRange(1, 365), default=30, show_default=True)
def trends(env: Env, group_by, branch, days):
    """Pass rate, counts, duration and flaky tests over time, and the slowest tests."""
    result = env.client(printing=True).trends.get(env.project, group_by=group_by, branch=branch, days=days)
    if env.output == "json":
        env.emit(result)
        return
    out.print_table(result.points, TREND_COLUMNS)
    if out.is_terminal() and result.slowest_tests:
        click.echo("\nSlowest tests (average ms):")
        out.print_table(result.slowest_tests, ["avgDuration", "fullTitle", "filePath",
                                               "testId"])
