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

from redline.sdk import exceptions, models
from redline.sdk._base import Upload
from redline.sdk._client import AsyncClient, Client
from redline.sdk.exceptions import (
    APIError,
    AuthForbiddenError,
    AuthInvalidError,
    AuthRequiredError,
    ConflictError,
    IdempotencyMismatchError,
    InsufficientCreditsError,
    InternalServerError,
    NetworkError,
    NotFoundError,
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

__all__ = [
    "APIError",
    "AsyncClient",
    "AuthForbiddenError",
    "AuthInvalidError",
    "AuthRequiredError",
    "Client",
    "ConflictError",
    "IdempotencyMismatchError",
    "InsufficientCreditsError",
    "InternalServerError",
    "NetworkError",
    "NotFoundError",
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
