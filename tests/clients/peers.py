"""Real HTTP peers on loopback for the client tests: a stub server and a fault proxy.

`StubServer` answers with whatever a test sets (an error envelope the real server cannot
produce yet, a run that never finishes). `FaultProxy` stands in front of a real Redline server
and, per request, forwards it or injects a fault (a 503, a 429 with Retry-After, a dropped
connection, a delay), counting requests and the Idempotency-Key each one carried.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from redline.errors import CATALOG, envelope


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass
class Reply:
    status: int
    body: Any = None  # dict -> JSON; bytes -> as is
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(code: str, message: str | None = None, details: dict | None = None,
                headers: dict[str, str] | None = None, status: int | None = None) -> Reply:
    """What the real server sends for `code`: its status, the envelope, X-Request-Id."""
    kind = CATALOG.get(code)
    status = status or (kind.http_status if kind and kind.http_status else 418)
    return Reply(status, envelope(code, message or f"stub says {code}", details,
                                  "req_stub0001"),
                 {"X-Request-Id": "req_stub0001", **(headers or {})})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _handle(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                    body)
        peer = self.server.peer  # type: ignore[attr-defined]
        with peer.lock:
            peer.seen.append(seen)
        action = peer.decide(seen)
        if action == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if isinstance(action, tuple) and action[0] == "delay":
            time.sleep(action[1])
            action = peer.forward(seen)
        reply: Reply = action
        payload = reply.body
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload).encode()
        payload = payload or b""
        try:
            self.send_response(reply.status)
            headers = {"Content-Type": "application/json", **reply.headers}
            for name, value in headers.items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection",
                                        "content-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle


class _Peer:
    def __init__(self):
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.peer = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    def decide(self, seen: Seen):
        raise NotImplementedError

    def forward(self, seen: Seen) -> Reply:
        raise NotImplementedError

    def requests_to(self, path_prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith(path_prefix)]


class StubServer(_Peer):
    """Answers every request with `reply` (or `respond(seen)` when set)."""

    def __init__(self, reply: Reply | None = None):
        super().__init__()
        self.reply = reply or Reply(200, {})
        self.respond: Callable[[Seen], Reply] | None = None

    def decide(self, seen: Seen):
        return self.respond(seen) if self.respond else self.reply


class FaultProxy(_Peer):
    """Forwards to `upstream`; `faults` is consumed one per matching request: a `Reply` to
    answer instead, "drop" to close the connection unanswered, ("delay", seconds) to answer
    late, or None to forward."""

    def __init__(self, upstream: str, path_prefix: str = "/api/"):
        super().__init__()
        self.upstream = upstream
        self.path_prefix = path_prefix
        self.faults: list[Any] = []
        self._http = httpx.Client(base_url=upstream, timeout=30)

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self._http.close()

    def decide(self, seen: Seen):
        fault = None
        if seen.path.startswith(self.path_prefix):
            with self.lock:
                fault = self.faults.pop(0) if self.faults else None
        if fault is None:
            return self.forward(seen)
        return fault

    def forward(self, seen: Seen) -> Reply:
        headers = {k: v for k, v in seen.headers.items()
                   if k not in ("host", "content-length", "connection", "accept-encoding")}
        response = self._http.request(seen.method, seen.path, headers=headers,
                                      content=seen.body)
        return Reply(response.status_code, response.content, dict(response.headers))
