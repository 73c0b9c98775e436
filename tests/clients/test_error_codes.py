"""Every catalog code, provoked for real, seen through the SDK (its exception class), the CLI
(its exit code, the envelope alone on stderr, nothing on stdout) and the MCP server (a
`[CODE]` error result). How each is provoked: `scenarios.py`."""

from __future__ import annotations

import inspect

import pytest

from redline.errors import CATALOG, CLI_CODES, SDK_CODES, SERVER_CODES, kind_for_status
from redline.sdk import exceptions as exc_module
from redline.sdk.exceptions import (
    API_ERRORS,
    AlreadyStartedError,
    APIError,
    AuthForbiddenError,
    AuthInvalidError,
    AuthRequiredError,
    CommandExitError,
    ConflictError,
    ConnectionClosedError,
    IdempotencyMismatchError,
    InsufficientCreditsError,
    InternalServerError,
    NetworkError,
    NotFoundError,
    NotStartedError,
    PayloadTooLargeError,
    PreconditionFailedError,
    RateLimitedError,
    RedlineError,
    RunFailedError,
    UnavailableError,
    UnsupportedError,
    ValidationError,
    WaitTimeoutError,
    error_from_response,
)
from tests.clients.conftest import Cli
from tests.clients.peers import Reply, error_reply
from tests.clients.scenarios import build

# Stated here independently of the SDK's own table, so a wrong entry there fails.
EXPECTED = {
    "AUTH_REQUIRED": AuthRequiredError, "AUTH_INVALID": AuthInvalidError,
    "AUTH_FORBIDDEN": AuthForbiddenError, "NOT_FOUND": NotFoundError,
    "VALIDATION_ERROR": ValidationError, "PAYLOAD_TOO_LARGE": PayloadTooLargeError,
    "CONFLICT": ConflictError, "PRECONDITION_FAILED": PreconditionFailedError,
    "IDEMPOTENCY_BODY_MISMATCH": IdempotencyMismatchError, "RATE_LIMITED": RateLimitedError,
    "INSUFFICIENT_CREDITS": InsufficientCreditsError, "UNSUPPORTED": UnsupportedError,
    "INTERNAL": InternalServerError, "UNAVAILABLE": UnavailableError,
    "NETWORK_ERROR": NetworkError, "TIMEOUT": exc_module.TimeoutError,
    "WAIT_TIMEOUT": WaitTimeoutError, "RUN_FAILED": RunFailedError,
    "COMMAND_EXIT": CommandExitError, "NOT_STARTED": NotStartedError,
    "ALREADY_STARTED": AlreadyStartedError, "CONNECTION_CLOSED": ConnectionClosedError,
}
#: raised by an executed run's handle alone: provoked for real in test_executions_sdk.py
HANDLE_CODES = ("COMMAND_EXIT", "NOT_STARTED", "ALREADY_STARTED", "CONNECTION_CLOSED")
#: the codes provoked for real through every surface (RUN_FAILED and the CLI's own codes:
#: test_cli_exit_paths.py)
ALL_CODES = [code for code in CATALOG if code not in ("RUN_FAILED", *HANDLE_CODES,
                                                     *CLI_CODES)]


def test_every_catalog_code_has_exactly_its_sdk_class():
    assert set(EXPECTED) == {*SERVER_CODES, *SDK_CODES}, "a code has no SDK exception class"
    assert not set(EXPECTED) & set(CLI_CODES)
    for code, cls in EXPECTED.items():
        assert cls.code == code
        assert issubclass(cls, RedlineError)
        assert (code in SERVER_CODES) == issubclass(cls, APIError)
    assert {c: API_ERRORS[c] for c in SERVER_CODES} == {c: EXPECTED[c] for c in SERVER_CODES}
    classes = [obj for _, obj in inspect.getmembers(exc_module, inspect.isclass)
               if issubclass(obj, RedlineError) and obj.__module__ == exc_module.__name__]
    unmapped = [cls.__name__ for cls in classes if cls.code not in CATALOG
                and cls not in (RedlineError, APIError, exc_module.TransportError)]
    assert unmapped == []


@pytest.mark.parametrize("code", SERVER_CODES)
def test_the_body_code_picks_the_class_and_the_catalog_the_exit_code(code):
    kind = CATALOG[code]
    error = error_from_response(kind.http_status, error_reply(code).body,
                                {"x-request-id": "req_1"})
    assert type(error) is EXPECTED[code]
    assert (error.code, error.status, error.exit_code) == (code, kind.http_status,
                                                           kind.exit_code)
    assert error.request_id == "req_stub0001"
    assert error.retryable is kind.retryable


def test_a_code_from_a_newer_server_stays_an_api_error_with_that_code():
    error = error_from_response(422, {"error": {"code": "SHINY_NEW", "message": "new"}}, {})
    assert type(error) is APIError
    assert error.code == "SHINY_NEW"
    assert error.exit_code == kind_for_status(422).exit_code


@pytest.mark.parametrize("status,code", [(502, "UNAVAILABLE"), (504, "UNAVAILABLE"),
                                         (500, "INTERNAL"), (401, "AUTH_REQUIRED"),
                                         (418, "VALIDATION_ERROR")])
def test_a_body_without_envelope_falls_back_to_the_status_class(status, code):
    error = error_from_response(status, None, {"retry-after": "5"})
    assert type(error) is EXPECTED[code]
    assert error.status == status
    assert error.retry_after == 5


def test_retry_after_prefers_the_body_then_the_header():
    body = error_reply("RATE_LIMITED", details={"retryAfter": 7}).body
    assert error_from_response(429, body, {"retry-after": "3"}).retry_after == 7
    body = error_reply("RATE_LIMITED").body
    assert error_from_response(429, body, {"retry-after": "3"}).retry_after == 3
    assert error_from_response(429, body, {}).retry_after is None


# -- each code for real, through each surface -----------------------------------------------

@pytest.mark.parametrize("code", ALL_CODES)
def test_sdk_raises_the_class_of_the_code(code, request):
    scenario = build(code, request)
    with scenario.client() as client, pytest.raises(RedlineError) as info:
        scenario.sdk(client)
    error = info.value
    assert type(error) is EXPECTED[code], (scenario.how, repr(error))
    assert error.code == code
    assert error.exit_code == CATALOG[code].exit_code
    if isinstance(error, APIError):
        assert error.status == CATALOG[code].http_status
        assert error.request_id and error.request_id.startswith("req_")
        assert error.retryable is CATALOG[code].retryable
    if code == "AUTH_FORBIDDEN":
        assert error.required_scopes == ["project:admin"]
        assert "runs:write" in error.granted_scopes
    if code == "RATE_LIMITED":
        assert error.retry_after == 300  # the server's lockout, from details.retryAfter
    if code == "TIMEOUT":
        assert "verify" in error.message and error.write


@pytest.mark.parametrize("code", ALL_CODES)
def test_cli_exits_with_the_catalog_code_and_prints_the_envelope_on_stderr(code, request,
                                                                          tmp_path):
    scenario = build(code, request)
    result = Cli(tmp_path / "config")(*scenario.cli, "--output", "json", **scenario.env())
    assert result.code == CATALOG[code].exit_code, (scenario.how, result)
    assert result.stdout == ""
    error = result.envelope["error"]
    assert error["code"] == code
    assert error["exitCode"] == CATALOG[code].exit_code
    assert error["message"] and error["nextAction"]
    assert set(error) >= {"code", "message", "details", "retryable", "nextAction", "exitCode"}


def test_cli_text_mode_prints_code_message_next_and_the_scopes(request, tmp_path):
    scenario = build("AUTH_FORBIDDEN", request)
    result = Cli(tmp_path / "config")(*scenario.cli, **scenario.env())
    assert result.code == 3 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == "Error [AUTH_FORBIDDEN]: Missing the 'project:admin' scope for this action"
    assert lines[1] == "required: project:admin"
    assert lines[2].startswith("granted: ") and "runs:write" in lines[2]
    assert lines[3] == f"Next: {CATALOG['AUTH_FORBIDDEN'].next_action}"


def test_cli_text_mode_for_a_network_error(request, tmp_path):
    scenario = build("NETWORK_ERROR", request)
    result = Cli(tmp_path / "config")(*scenario.cli, **scenario.env())
    assert result.code == 10 and result.stdout == ""
    assert result.stderr.startswith("Error [NETWORK_ERROR]: Cannot reach the Redline server")
    assert f"Next: {CATALOG['NETWORK_ERROR'].next_action}" in result.stderr


def test_cli_keeps_an_unknown_code_and_exits_by_its_status(stub, tmp_path):
    stub.reply = Reply(422, {"error": {"code": "SHINY_NEW", "message": "from the future",
                                       "details": {}}})
    result = Cli(tmp_path / "config")("whoami", "-o", "json", REDLINE_URL=stub.url,
                                      REDLINE_API_KEY="rl_live_stub")
    assert result.code == 5
    assert result.envelope["error"]["code"] == "SHINY_NEW"
