"""The Python SDK for Redline: the only HTTP client; the CLI and the MCP server are built on it.

```python
from redline.sdk import Client, exceptions

with Client("http://127.0.0.1:8000", api_key="rl_live_...") as client:
    run = client.runs.import_report("junit.xml", branch="main")
    try:
        client.runs.wait(run.id, timeout=600, raise_on_failure=True)
    except exceptions.RunFailedError as exc:
        print("failed:", exc.run.failed_tests)
```

See `redline.sdk.exceptions` for the exception tree and `docs/sdk.md` for the guide.
"""

from typing import TYPE_CHECKING

from redline.sdk import exceptions
from redline.sdk.exceptions import (
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
    TransportError,
    UnavailableError,
    UnsupportedError,
    ValidationError,
    WaitTimeoutError,
)

# `TimeoutError` is reachable as `exceptions.TimeoutError` (or `redline.sdk.TimeoutError`) but
# is left out of `__all__`, so `from redline.sdk import *` never shadows the builtin.
from redline.sdk.exceptions import TimeoutError as TimeoutError

if TYPE_CHECKING:
    from redline.sdk import models
    from redline.sdk._base import Upload
    from redline.sdk._client import AsyncClient, Client

# Imported on first use (PEP 562): `import redline.sdk` (and the exceptions, which the CLI needs
# for every failure) stays cheap; `models` imports pydantic, the clients import httpx.
_LAZY = {"Client": "redline.sdk._client", "AsyncClient": "redline.sdk._client",
         "Upload": "redline.sdk._base", "models": None}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'redline.sdk' has no attribute {name!r}")
    import importlib

    module = _LAZY[name]
    value = (importlib.import_module("redline.sdk.models") if module is None
             else getattr(importlib.import_module(module), name))
    globals()[name] = value
    return value

__all__ = [
    "APIError",
    "AlreadyStartedError",
    "AsyncClient",
    "AuthForbiddenError",
    "AuthInvalidError",
    "AuthRequiredError",
    "Client",
    "CommandExitError",
    "ConflictError",
    "ConnectionClosedError",
    "IdempotencyMismatchError",
    "InsufficientCreditsError",
    "InternalServerError",
    "NetworkError",
    "NotFoundError",
    "NotStartedError",
    "PayloadTooLargeError",
    "PreconditionFailedError",
    "RateLimitedError",
    "RedlineError",
    "RunFailedError",
    "TransportError",
    "UnavailableError",
    "UnsupportedError",
    "Upload",
    "ValidationError",
    "WaitTimeoutError",
    "exceptions",
    "models",
]
