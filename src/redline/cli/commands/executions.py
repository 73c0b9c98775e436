"""Executed runs: `redline plans ...`, `redline run PLAN`, `redline runs cancel|signal|log`
and `redline usage`. Everything goes through the SDK (`client.plans.command` is the handle
`run` drives); exit statuses come from the catalog through the failure gate."""

from __future__ import annotations

import os
import sys
import time

import click

from redline.cli import output as out
from redline.cli.commands.runs import executed_outcome, runs
from redline.cli.context import Env, common_options, idempotency_option, yes_option
from redline.cli.failures import CliError, Terminated, UsageError
from redline.errors import EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, EXIT_VERDICT_NOT_PASSED

__all__ = ["plans", "run", "runs", "usage"]

PLAN_COLUMNS = ["id", "name", "status", "codeVersion", "schedule", "nextRunAt", "updatedAt"]
PLAN_FIELDS = ["id", "name", "projectId", "status", "codeVersion", "command", "source", "env",
               "reportPaths", "timeoutSeconds", "queueTimeoutSeconds", "maxConcurrentRuns",
               "schedule", "nextRunAt", "sandbox", "network", "createdAt", "updatedAt"]
EXECUTED_FIELDS = ["id", "planId", "status", "verdict", "exitCode", "blockedReason",
                   "cancelReason", "source", "branch", "commitSha", "runnerId", "attempt",
                   "queuedAt", "startedAt", "finishedAt", "totalTests", "passedTests",
                   "failedTests", "skippedTests"]
SIGNALS = ["INT", "TERM", "HUP", "KILL", "QUIT", "USR1", "USR2"]


class Interrupted(CliError):
    """Ctrl-C (SIGINT, exit 130) or SIGTERM (exit 143) while following a run."""

    code = "CANCELLED"

    def __init__(self, message: str, *, sigterm: bool = False, **kwargs):
        super().__init__(message, **kwargs)
        self._exit_code = EXIT_SIGTERM if sigterm else EXIT_SIGINT

    @property
    def exit_code(self) -> int:
        return self._exit_code


# -- plans -------------------------------------------------------------------------------------

def _env_pairs(values: tuple[str, ...], flag: str, *, secret: bool = False) -> dict:
    pairs: dict = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"{flag} takes NAME=VALUE, not {item!r}",
                             details={"field": flag, "reason": "format"})
        pairs[name] = {"value": value, "secret": True} if secret else value
    return pairs


def _plan_options(fn):
    """The fields of a plan, shared by `create` and `edit` (unset: not sent)."""
    options = [
        click.option("--name", metavar="NAME", help="The plan's name (edit only; create "
                     "takes it as NAME)."),
        click.option("--path", "source_path", metavar="DIR", help="Source: a folder copied "
                     "into each run's folder (it must lie in the runner's "
                     "REDLINE_RUNNER_SOURCE_PATHS)."),
        click.option("--git", "source_git", metavar="URL", help="Source: a repository URL or "
                     "local path, cloned shallowly."),
        click.option("--ref", "source_ref", metavar="REF", help="Branch or tag of --git."),
        click.option("--env", "env_values", multiple=True, metavar="NAME=VALUE",
                     help="An environment variable of the command (repeatable)."),
        click.option("--secret-env", "secret_values", multiple=True, metavar="NAME=VALUE",
                     help="A secret one: stored encrypted, never shown again (repeatable)."),
        click.option("--report", "report_paths", multiple=True, metavar="GLOB",
                     help="Report files the command writes: JUnit XML, Playwright JSON or "
                     "CTRF (repeatable; a run without one is blocked)."),
        click.option("--timeout", "timeout_seconds", type=click.IntRange(1, 21600),
                     help="Seconds the command may run (default 1800)."),
        click.option("--queue-timeout", "queue_timeout_seconds", type=click.IntRange(1),
                     help="Seconds a run may wait for a runner (default 3600)."),
        click.option("--max-concurrent", "max_concurrent_runs", type=click.IntRange(1, 100),
                     help="Runs of the plan in flight at once (default 1; one more is "
                     "CONFLICT)."),
        click.option("--schedule", metavar="CRON", help="Run it on a cron schedule (5 "
                     "fields, UTC); \"\" removes it."),
        click.option("--sandbox", type=click.Choice(["auto", "bubblewrap", "none"]),
                     help="auto (default): bubblewrap where installed."),
        click.option("--network/--no-network", default=None,
                     help="Let the command reach the network (default: no)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _plan_fields(options: dict) -> dict:
    """The SDK's keyword arguments for the flags that were given."""
    if options["source_path"] and options["source_git"]:
        raise UsageError("Give one source: --path DIR or --git URL",
                         details={"field": "--path", "reason": "conflict"})
    if options["source_ref"] and not options["source_git"]:
        raise UsageError("--ref goes with --git URL", details={"field": "--ref",
                                                               "reason": "requires --git"})
    fields = {key: options[key] for key in ("timeout_seconds", "queue_timeout_seconds",
                                            "max_concurrent_runs", "schedule", "sandbox",
                                            "network", "name")
              if options.get(key) is not None}
    if options["source_path"]:
        fields["source"] = {"path": os.path.abspath(options["source_path"])}
    elif options["source_git"]:
        fields["source"] = {"git": options["source_git"],
                            **({"ref": options["source_ref"]} if options["source_ref"] else {})}
    env = {**_env_pairs(options["env_values"], "--env"),
           **_env_pairs(options["secret_values"], "--secret-env", secret=True)}
    if env:
        fields["env"] = env
    if options["report_paths"]:
        fields["report_paths"] = list(options["report_paths"])
    return fields


@click.group()
def plans():
    """Plans: how Redline's runners run a project's suite (executed runs).

    \b
    Examples:
      redline plans create unit --git https://github.com/acme/app.git --ref main \\
          --report report.xml -- python -m pytest --junitxml=report.xml
      redline run PLAN_ID --wait --follow
    """


@plans.command("list")
@common_options(project=True)
def plans_list(env: Env):
    """The project's plans with their status (draft, ready, queued, running, passed, failed,
    blocked, cancelled, unknown)."""
    project = env.project_for()
    env.emit(env.client(printing=True).plans.list(project), columns=PLAN_COLUMNS)


@plans.command("show")
@common_options()
@click.argument("plan_id")
def plans_show(env: Env, plan_id):
    """A plan: its command, source, env (secrets never shown), reports, timeouts, schedule,
    and `codeVersion` (what `plans edit --code-version` checks against)."""
    env.emit(env.client(printing=True).plans.get(plan_id), fields=PLAN_FIELDS)


@plans.command("create")
@common_options(project=True)
@click.argument("name")
@_plan_options
@idempotency_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def plans_create(env: Env, name, command, idempotency_key, **options):
    """Create a plan NAME that runs COMMAND (after `--`; an argv list, never a shell string;
    without one the plan is a draft). Needs project:admin.

    \b
    Example:
      redline plans create unit --path ./ --report report.xml \\
          -- python -m pytest --junitxml=report.xml
    """
    if options.get("name"):
        raise UsageError("The name is the NAME argument here; --name is for `plans edit`",
                         details={"field": "--name", "reason": "create takes NAME"})
    project = env.project_for()
    plan = env.client().plans.create(name, list(command) or None, project,
                                     idempotency_key=idempotency_key,
                                     **_plan_fields(options))
    env.emit(plan, fields=PLAN_FIELDS)
    env.note(f"Run it: redline run {plan.id} --wait")


@plans.command("edit")
@common_options()
@click.argument("plan_id")
@_plan_options
@click.option("--code-version", type=click.IntRange(1), metavar="N",
              help="The codeVersion your change is made against (from `plans show`); "
              "default: the one read just before the change.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def plans_edit(env: Env, plan_id, command, code_version, **options):
    """Change a plan: the flags given, and COMMAND after `--`. The change is sent with the
    codeVersion read (If-Match): if someone changed the plan since, it is refused with
    PRECONDITION_FAILED (exit 6); show the plan again and redo the edit.

    \b
    Example:
      redline plans edit PLAN_ID --timeout 600 -- python -m pytest -x --junitxml=report.xml
    """
    fields = _plan_fields(options)
    if command:
        fields["command"] = list(command)
    if not fields:
        raise UsageError("Nothing to change: give a flag or a command after --",
                         details={"reason": "no_change"},
                         next_action=f"See `redline plans edit --help`; the plan is "
                         f"`redline plans show {plan_id}`.")
    client = env.client()
    if code_version is None:
        code_version = client.plans.get(plan_id).code_version
    plan = client.plans.update(plan_id, if_match=code_version, **fields)
    env.emit(plan, fields=PLAN_FIELDS)


@plans.command("delete")
@common_options()
@yes_option
@click.argument("plan_id")
def plans_delete(env: Env, plan_id, yes):
    """Delete a plan: its queued runs are cancelled, its running ones stopped; its runs
    stay."""
    env.confirm(yes, f"delete plan {plan_id} (its queued and running runs are cancelled)")
    env.emit(env.client(printing=True).plans.delete(plan_id))


# -- run ---------------------------------------------------------------------------------------

def _trigger_source() -> str:
    return "github_action" if os.environ.get("GITHUB_ACTIONS") == "true" else "cli"


def _detach(env: Env, client, run_id: str, *, cancel: bool, sigterm: bool) -> Interrupted:
    """What a Ctrl-C (or SIGTERM) during a wait does: leave the run going, or cancel it."""
    name = "SIGTERM" if sigterm else "SIGINT"
    if cancel:
        client.runs.cancel(run_id)
        return Interrupted(f"Interrupted ({name}): cancelled run {run_id} "
                           "(--cancel-on-interrupt)",
                           sigterm=sigterm,
                           details={"signal": name, "runId": run_id, "cancelled": True},
                           next_action=f"See how it ended: redline wait {run_id}")
    return Interrupted(f"Interrupted ({name}): run {run_id} keeps going on its runner",
                       sigterm=sigterm, details={"signal": name, "runId": run_id, "cancelled": False},
                       next_action=f"Wait for it again with `redline wait {run_id}`, or "
                       f"stop it with `redline runs cancel {run_id}`.")


def _start(cmd):
    """Queue the run; a run of the plan already in flight says which, and what to do."""
    from redline.sdk.exceptions import ConflictError

    try:
        return cmd.start()
    except ConflictError as exc:
        in_flight = exc.details.get("runId")
        if exc.details.get("reason") != "run_in_flight" or not in_flight:
            raise
        raise ConflictError(f"{exc.message}: run {in_flight}", code=exc.code,
                            status=exc.status, details=exc.details,
                            request_id=exc.request_id, retryable=False,
                            next_action=f"Wait for it with `redline wait {in_flight}`, or "
                            f"stop it with `redline runs cancel {in_flight}`; then run the "
                            "plan again.") from exc


def _follow(env: Env, cmd, deadline: float) -> None:
    """Print the output as it arrives until the run has ended (to stderr in JSON mode, where
    stdout is the run's JSON)."""
    stream = sys.stderr if env.output == "json" else sys.stdout
    for text in cmd.log(timeout=max(0.0, deadline - time.monotonic())):
        stream.write(text)
        stream.flush()


@click.command("run")
@common_options()
@click.argument("plan_id", metavar="PLAN")
@click.option("--branch", metavar="BRANCH", help="Branch the run is for (default: the CI's, "
              "e.g. GITHUB_HEAD_REF or GITHUB_REF_NAME).")
@click.option("--ref", metavar="REF", help="Clone this ref instead of the plan's --ref.")
@click.option("--commit", "commit_sha", metavar="SHA", help="Commit the run is for "
              "(default: the CI's).")
@click.option("--env", "env_values", multiple=True, metavar="NAME=VALUE",
              help="Override or add an environment variable for this run (repeatable).")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the run to end; exit 0 when it "
              "passed, 1 when not.")
@click.option("--wait-timeout", type=click.FloatRange(min=0), default=1800, show_default=True,
              metavar="SECONDS", help="Seconds --wait/--follow wait; then WAIT_TIMEOUT "
              "(exit 7), and the run goes on: `redline wait RUN` resumes.")
@click.option("--follow", is_flag=True, help="Print the run's output as it arrives (implies "
              "--wait).")
@click.option("--cancel-on-interrupt", is_flag=True, help="Ctrl-C or SIGTERM while waiting "
              "cancels the run (default: the run keeps going).")
@click.option("--poll", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              help="Seconds between looks at the run while waiting.")
@idempotency_option
def run(env: Env, plan_id, branch, ref, commit_sha, env_values, wait_, wait_timeout, follow,
        cancel_on_interrupt, poll, idempotency_key):
    """Run a plan on Redline's runners (source `cli`, or `github_action` inside GitHub
    Actions).

    Without --wait it prints the queued run and exits 0. With --wait (or --follow) it exits
    0 when the run passed, 1 when it did not (failed, blocked, cancelled), 6 when a run of
    the plan is already in flight (CONFLICT), 7 at --wait-timeout (WAIT_TIMEOUT), 12 when the
    team's execution budget is spent (INSUFFICIENT_CREDITS). Ctrl-C while waiting leaves the
    run going (exit 130; SIGTERM: 143) unless --cancel-on-interrupt.

    \b
    Example (a CI job):
      redline run PLAN_ID --branch "$GITHUB_REF_NAME" --follow --wait-timeout 1800
    """
    from redline.cli import ci
    from redline.sdk.exceptions import CommandExitError

    found = ci.provider_values(os.environ)
    client = env.client()
    cmd = client.plans.command(plan_id, branch=branch or found.get("branch"), ref=ref,
                               commit_sha=commit_sha or found.get("commit_sha"),
                               env=_env_pairs(env_values, "--env") or None,
                               source=_trigger_source(), idempotency_key=idempotency_key)
    queued = _start(cmd)
    env.note(f"Run {queued.id} queued: {env.url}/runs/{queued.id}")
    if not (wait_ or follow):
        env.emit(queued, fields=EXECUTED_FIELDS)
        env.note(f"Follow it: redline runs log {queued.id} --follow; its verdict: "
                 f"redline wait {queued.id}")
        return EXIT_OK
    deadline = time.monotonic() + wait_timeout
    try:
        if follow:
            _follow(env, cmd, deadline)
        try:
            finished = cmd.wait(max(0.0, deadline - time.monotonic()), poll=poll)
        except CommandExitError as exc:
            finished = exc.run
    except (KeyboardInterrupt, Terminated) as exc:
        raise _detach(env, client, queued.id, cancel=cancel_on_interrupt,
                      sigterm=isinstance(exc, Terminated)) from None
    env.emit(finished, fields=EXECUTED_FIELDS)
    env.note(executed_outcome(finished))
    return EXIT_OK if finished.outcome == "passed" else EXIT_VERDICT_NOT_PASSED


# -- runs cancel | signal | log ------------------------------------------------------------

@runs.command("cancel")
@common_options()
@yes_option
@click.argument("run_id")
def runs_cancel(env: Env, run_id, yes):
    """Cancel an executed run: a queued one at once; a running one gets SIGTERM (its whole
    process group), SIGKILL after the grace period. Cancelling a finished run changes
    nothing."""
    env.confirm(yes, f"cancel run {run_id}")
    cancelled = env.client().runs.cancel(run_id)
    env.emit(cancelled, fields=EXECUTED_FIELDS)
    if not cancelled.is_finished:
        env.note(f"Stopping run {run_id}; see it end with: redline wait {run_id}")


@runs.command("signal")
@common_options()
@click.argument("run_id")
@click.argument("signal_name", metavar="SIGNAL",
                type=click.Choice(SIGNALS, case_sensitive=False))
def runs_signal(env: Env, run_id, signal_name):
    """Send SIGNAL (INT, TERM, HUP, KILL, QUIT, USR1, USR2) to a running command's process
    group. Before its process started or after it finished: CONFLICT (exit 6)."""
    env.emit(env.client(printing=True).runs.signal(run_id, signal_name.upper()))


@runs.command("log")
@common_options()
@click.argument("run_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing as the output arrives, "
              "until the run ends.")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True,
              help="Start at this byte (what an interrupted read reached).")
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="Seconds --follow waits at most (then WAIT_TIMEOUT, exit 7).")
def runs_log(env: Env, run_id, follow, offset, timeout):
    """An executed run's output (its command's stdout and stderr, and what the runner says).
    With --output json: one object with the text and the offset to read on from."""
    client = env.client()
    if env.output == "json":
        text = "".join(client.runs.follow_log(run_id, offset=offset, follow=follow,
                                              timeout=timeout))
        end = offset + len(text.encode())
        env.emit({"runId": run_id, "offset": offset, "text": text, "nextOffset": end})
        return
    for text in client.runs.follow_log(run_id, offset=offset, follow=follow, timeout=timeout):
        sys.stdout.write(text)
        sys.stdout.flush()


# -- usage -------------------------------------------------------------------------------------

@click.command("usage")
@common_options()
@click.option("--team", metavar="TEAM_ID", help="The team (default: REDLINE_TEAM, the "
              "profile's, or your only one).")
def usage(env: Env, team):
    """A team's executed-run time this calendar month (UTC): runner-seconds used, the budget
    and what is left (none: no limit), and each project's share."""
    client = env.client()
    used = client.teams.usage(env.team(client, team))
    if env.output == "json":
        env.emit(used)
        return
    out.print_fields(used, ["teamId", "month", "budgetSeconds", "usedSeconds", "leftSeconds"])
    if used.projects:
        click.echo("")
        out.print_table(used.projects, ["projectId", "usedSeconds"])
