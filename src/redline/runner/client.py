"""The runner's HTTP client of the server's runner API (`/api/runner/...`)."""

from __future__ import annotations

import time

import httpx


class LeaseLost(Exception):
    """The server says this runner no longer holds the run (it was swept, or cancelled and
    finished elsewhere): stop its processes and drop it."""


class RunnerClient:
    def __init__(self, url: str, token: str, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None):
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}"},
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict, attempts: int = 5) -> httpx.Response:
        """POST with retries on transport errors and 5xx (every runner call is idempotent:
        a log chunk carries its offset, a heartbeat renews, a finish of a finished run is
        refused as lease_lost)."""
        delay = 0.2
        for attempt in range(attempts):
            try:
                response = self._http.post(path, json=body)
            except httpx.TransportError:
                if attempt == attempts - 1:
                    raise
            else:
                if response.status_code < 500 and response.status_code != 429:
                    return response
                if attempt == attempts - 1:
                    return response
            time.sleep(delay)
            delay = min(delay * 2, 3.0)
        raise AssertionError("unreachable")

    def _run_call(self, run_id: str, action: str, body: dict) -> dict:
        response = self._post(f"/api/runner/runs/{run_id}/{action}", body)
        if response.status_code in (404, 409):
            error = _error(response)
            if response.status_code == 404 or error.get("details", {}).get("reason") == \
                    "lease_lost":
                raise LeaseLost(error.get("message", "lease lost"))
        response.raise_for_status()
        return response.json()

    def claim(self, runner_id: str) -> dict | None:
        response = self._post("/api/runner/claim", {"runnerId": runner_id}, attempts=1)
        if response.status_code == 204:
            return None
        response.raise_for_status()
        return response.json()

    def heartbeat(self, run_id: str, lease: str, process_started: bool) -> dict:
        return self._run_call(run_id, "heartbeat", {"leaseToken": lease,
                                                    "processStarted": process_started})

    def append_log(self, run_id: str, lease: str, offset: int, text: str) -> int:
        return self._run_call(run_id, "log", {"leaseToken": lease, "offset": offset,
                                              "text": text})["nextOffset"]

    def upload_report(self, run_id: str, lease: str, file_name: str, content: str) -> dict:
        response = self._post(f"/api/runner/runs/{run_id}/reports",
                              {"leaseToken": lease, "fileName": file_name,
                               "content": content})
        if response.status_code == 409 and \
                _error(response).get("details", {}).get("reason") == "lease_lost":
            raise LeaseLost("lease lost")
        if response.status_code >= 400:
            return {"error": _error(response)}
        return response.json()

    def finish(self, run_id: str, lease: str, outcome: str, exit_code: int | None = None,
               blocked_reason: str | None = None, limit: str | None = None) -> dict:
        return self._run_call(run_id, "finish", {"leaseToken": lease, "outcome": outcome,
                                                 "exitCode": exit_code,
                                                 "blockedReason": blocked_reason,
                                                 "limit": limit})


def _error(response: httpx.Response) -> dict:
    try:
        return response.json().get("error", {})
    except ValueError:
        return {}
