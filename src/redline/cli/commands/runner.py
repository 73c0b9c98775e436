"""`redline runner`: execute plans' runs for a server, reaching it over HTTP with a runner
token (never the database)."""

from __future__ import annotations

import logging
import os

import click

from redline.cli.failures import CliError, Terminated
from redline.errors import EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM


class RunnerTokenMissing(CliError):
    code = "AUTH_REQUIRED"
    next_action = ("Make a runner token (POST /api/runner-tokens, team admins) and pass it "
                   "with --token or REDLINE_RUNNER_TOKEN.")


@click.command()
@click.option("--url", metavar="URL", envvar="REDLINE_URL", help="Server URL (REDLINE_URL).")
@click.option("--token", metavar="TOKEN", envvar="REDLINE_RUNNER_TOKEN",
              help="Runner token, rlr_... (REDLINE_RUNNER_TOKEN).")
@click.option("--name", metavar="NAME", help="How the runner is named in runs (runnerId); "
              "default host:pid.")
@click.option("--poll-interval", default=0.5, show_default=True, type=click.FloatRange(0.05),
              help="Seconds between two looks at an empty queue.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def runner(url, token, name, poll_interval, log_level):
    """Execute queued runs of the plans the token serves, one at a time, until stopped.

    Each run gets a fresh folder, its own process group, resource limits and, where
    bubblewrap is installed, a sandbox (host read-only, no network unless the plan allows
    it). REDLINE_RUNNER_SOURCE_PATHS lists the folders a plan's path or local git source may
    lie in (none by default); REDLINE_RUNNER_HIDE_PATHS, folders the sandbox hides.
    SIGTERM or Ctrl-C: no new runs are taken and the one in hand finishes; a second signal
    exits at once (the server gives its run to another runner after the lease).
    """
    from redline.runner.agent import Runner, RunnerConfig
    from redline.runner.client import RunnerClient

    if not token:
        raise RunnerTokenMissing("No runner token: pass --token or set REDLINE_RUNNER_TOKEN")
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = RunnerConfig.from_env(poll_interval=poll_interval)
    agent = Runner(RunnerClient(url or "http://127.0.0.1:8000", token), config,
                   name=name).start()
    exit_code = EXIT_OK
    while agent._thread is not None and agent._thread.is_alive():
        try:
            agent._thread.join(0.5)
        except (Terminated, KeyboardInterrupt) as exc:
            if agent.stopping.is_set():
                os._exit(EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT)
            exit_code = EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT
            agent.stopping.set()
    agent.client.close()
    raise SystemExit(exit_code)
