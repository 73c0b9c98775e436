"""`redline serve` as a real process: how it stops, and how it fails to start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support import live

REPO = Path(__file__).resolve().parents[2]
GRACE = 2


def _serve(tmp_path: Path, port: int, **env: str) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("REDLINE_")}
    environment.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "redline.cli.main", "serve", "--port", str(port),
         "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env=environment, cwd=REPO)


def _wait_healthy(proc: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.1)


def test_sigterm_stops_the_server_within_its_grace_period_with_a_request_in_flight(tmp_path):
    """A sign-in whose body stops arriving halfway (a client that hangs) and an idle
    keep-alive connection: SIGTERM still ends the process (exit 143) within the grace period
    (the requests', then the background work's), where uvicorn alone would wait for that
    request for ever. (On a database of its own: its embedded worker and runner must not take
    the session's jobs.)"""
    port = live.free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(tmp_path, port, REDLINE_SHUTDOWN_GRACE_SECONDS=str(GRACE))
    hanging = None
    try:
        _wait_healthy(proc, url)
        hanging = socket.create_connection(("127.0.0.1", port))
        hanging.sendall(b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\n"
                        b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                        b'{"email": ')
        idle = httpx.Client(base_url=url)
        idle.get("/api/health")  # kept alive
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=GRACE + 8)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise AssertionError("SIGTERM did not stop the server") from None
        elapsed = time.monotonic() - started
        idle.close()
    finally:
        if hanging is not None:
            hanging.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, stderr
    assert elapsed < 2 * GRACE + 3, elapsed
    assert "Error [" not in stderr


def test_serve_with_an_unreachable_database_exits_10_naming_the_url(tmp_path):
    port = live.free_port()
    url = f"postgresql+psycopg://redline:hunter2@127.0.0.1:{live.free_port()}/redline"
    proc = _serve(tmp_path, port, REDLINE_DATABASE_URL=url)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 10, stderr
    assert "Error [UNAVAILABLE]" in stderr
    assert "postgresql+psycopg://redline:***@127.0.0.1:" in stderr
    assert "hunter2" not in stderr
    assert "Next: " in stderr


def test_links_follow_the_port_really_served_without_a_public_url(tmp_path):
    """`redline serve --port P` with no REDLINE_PUBLIC_URL: artifact links and invitation
    links point at port P, not 8000, the start-up log says so, and the data dir remembers it
    for the commands run beside the server (`redline demo`'s sign-in line)."""
    from redline.server.config import Settings
    from tests.api.test_artifacts_support import media

    port = live.free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(tmp_path, port, REDLINE_COOKIE_SECURE="false")
    try:
        _wait_healthy(proc, url)
        with httpx.Client(base_url=url, timeout=30) as client:
            setup = client.post("/api/setup", json={"email": "port@example.com",
                                                    "password": "correct horse battery"})
            assert setup.status_code == 201, setup.text
            key = setup.json()["apiKey"]["key"]
            client.headers["X-API-Key"] = key
            run = client.post("/api/runs", json={"status": "running"}).json()
            uploaded = client.post("/api/upload", params={"type": "screenshot",
                                                          "runId": run["id"]},
                                   files={"file": ("a.png", media("png"), "image/png")})
            assert uploaded.status_code == 201, uploaded.text
        link = uploaded.json()["url"]
        remembered = Settings(data_dir=tmp_path / "data").resolved_public_url
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert link.startswith(f"{url}/"), link
    assert remembered == url
    assert f"Links use {url}" in stderr
