"""Every way out of the CLI is a catalog entry, and every surface builds the error envelope
with the one function in `redline.errors`."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
from pathlib import Path
from types import SimpleNamespace

import click
import pytest

import redline.cli
from redline import errors
from redline.cli import failures
from redline.errors import CATALOG, CLI_CODES, EXIT_SIGTERM
from redline.sdk import exceptions as sdk_errors

CLI_SOURCE = Path(redline.cli.__file__).parent


def _cli_modules():
    yield redline.cli
    for info in pkgutil.walk_packages(redline.cli.__path__, "redline.cli."):
        yield importlib.import_module(info.name)


def _bad_parameter():
    param = click.Option(["--limit"])
    return click.BadParameter("not a number", param=param)


# (an exception a command may let escape, the code it must become)
EXIT_PATHS = [
    (failures.ConfirmationRequired("Not confirmed"), "CONFIRMATION_REQUIRED"),
    (failures.NotImplementedCommand("`redline db` is not implemented"), "NOT_IMPLEMENTED"),
    (failures.VerdictNotPassed("Run run_1: failed"), "RUN_FAILED"),
    (failures.UsageError("Give --team"), "VALIDATION_ERROR"),
    (KeyboardInterrupt(), "CANCELLED"),
    (click.exceptions.Abort(), "CANCELLED"),
    (failures.Terminated(), "CANCELLED"),
    (click.UsageError("No such option: --bogus"), "VALIDATION_ERROR"),
    (_bad_parameter(), "VALIDATION_ERROR"),
    (click.FileError("report.xml", "no such file"), "VALIDATION_ERROR"),
    (RuntimeError("a bug"), "INTERNAL"),
    (sdk_errors.NetworkError("Cannot reach the Redline server"), "NETWORK_ERROR"),
    (sdk_errors.TimeoutError("no answer", write=True), "TIMEOUT"),
    (sdk_errors.WaitTimeoutError("still running", run_id="run_1"), "WAIT_TIMEOUT"),
    (sdk_errors.RunFailedError("failed", run=SimpleNamespace(id="run_1")), "RUN_FAILED"),
    (sdk_errors.NotFoundError("Run 'x' not found", status=404, request_id="req_1"),
     "NOT_FOUND"),
]


@pytest.mark.parametrize("exc,code", EXIT_PATHS, ids=[type(e).__name__ for e, _ in EXIT_PATHS])
def test_every_exit_path_is_a_catalog_entry_with_its_exit_status(exc, code):
    failure = failures.failure_for(exc, "redline teams list")
    assert failure.error["code"] == code
    assert code in CATALOG
    expected = EXIT_SIGTERM if isinstance(exc, failures.Terminated) else CATALOG[code].exit_code
    assert failure.exit_code == expected
    assert failure.error["exitCode"] == expected
    assert failure.error["nextAction"]


def test_the_cli_only_codes_are_catalog_entries_sent_by_the_client():
    assert set(CLI_CODES) == {"CANCELLED", "CONFIRMATION_REQUIRED", "NOT_IMPLEMENTED"}
    for code in [*CLI_CODES, "RUN_FAILED", "NETWORK_ERROR", "TIMEOUT", "WAIT_TIMEOUT"]:
        kind = CATALOG[code]
        assert kind.side == "client" and kind.http_status is None, code
    assert {kind.side for kind in CATALOG.values()} == {"server", "client"}
    for kind in CATALOG.values():
        assert (kind.side == "server") == (kind.http_status is not None), kind.code


def test_every_cli_error_class_takes_its_exit_status_from_the_catalog():
    classes = {cls for module in _cli_modules()
               for _, cls in inspect.getmembers(module, inspect.isclass)
               if issubclass(cls, failures.CliError)}
    assert len(classes) > 5
    for cls in classes:
        assert cls.code in CATALOG, cls
        assert cls("x").exit_code == CATALOG[cls.code].exit_code, cls


LITERAL_EXIT = re.compile(r"exit_code\s*=\s*\d|return\s+[1-9]\d*\b|(?:SystemExit|sys\.exit|"
                          r"Exit)\(\s*[1-9]")


def test_no_exit_status_but_success_is_a_literal_in_the_cli():
    offenders = []
    for path in CLI_SOURCE.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if LITERAL_EXIT.search(line.split("#")[0]):
                offenders.append(f"{path.relative_to(CLI_SOURCE)}:{number}: {line.strip()}")
    assert offenders == []


def test_a_verdict_not_passed_exits_with_run_failed_s_status():
    from redline.cli.commands.runs import _verdict_exit

    notes: list[str] = []
    env = SimpleNamespace(note=notes.append)
    run = SimpleNamespace(id="run_1", outcome="failed", failed_tests=1, flaky_tests=0,
                          quarantined_failures=0)
    assert _verdict_exit(env, run) == CATALOG["RUN_FAILED"].exit_code == 1
    passed = SimpleNamespace(id="run_1", outcome="passed", to_json=lambda: {
        "verdict": "passed", "quarantinedFailures": 2})
    assert _verdict_exit(env, passed) == 0
    assert notes[-1] == "Run run_1: passed (2 failures of quarantined tests did not count)"


# -- one envelope builder -------------------------------------------------------------------

def _server_envelope(*args):
    from redline.server.http_errors import error_response

    return json.loads(error_response(*args).body)


def test_server_sdk_and_cli_build_the_envelope_with_the_one_function(monkeypatch):
    calls = []
    real = errors.envelope

    def spy(*args, **kwargs):
        body = real(*args, **kwargs)
        calls.append(body["error"]["code"])
        body["error"]["builtBy"] = "errors.envelope"
        return body

    monkeypatch.setattr(errors, "envelope", spy)
    server = _server_envelope("NOT_FOUND", "Run 'x' not found", {"resource": "run"}, "req_1")
    sdk = sdk_errors.error_from_response(404, {"error": {**server["error"]}}, {}).to_envelope()
    cli_api = failures.failure_for(sdk_errors.NotFoundError("gone", status=404)).envelope
    cli_own = failures.failure_for(failures.NotImplementedCommand("later")).envelope
    for body in (server, sdk, cli_api, cli_own):
        assert body["error"]["builtBy"] == "errors.envelope"
    assert calls == ["NOT_FOUND", "NOT_FOUND", "NOT_FOUND", "NOT_IMPLEMENTED"]


def test_the_server_s_envelope_round_trips_through_the_sdk_and_the_cli_unchanged():
    server = _server_envelope("AUTH_FORBIDDEN", "Missing the 'project:admin' scope",
                              {"required": ["project:admin"], "granted": ["runs:write"]},
                              "req_42")
    error = sdk_errors.error_from_response(403, server, {})
    assert error.to_envelope() == server
    cli = failures.failure_for(error).envelope
    assert cli == {"error": {**server["error"], "exitCode": CATALOG["AUTH_FORBIDDEN"].exit_code}}


def test_the_envelope_defaults_come_from_the_catalog():
    body = errors.envelope("RATE_LIMITED", "slow down")["error"]
    assert body == {"code": "RATE_LIMITED", "message": "slow down", "details": {},
                    "retryable": True, "nextAction": CATALOG["RATE_LIMITED"].next_action}
    newer = errors.envelope("SHINY_NEW", "new", request_id="req_1", exit_code=1)["error"]
    assert newer["retryable"] is False and newer["requestId"] == "req_1"
    assert newer["exitCode"] == 1
