"""What the benchmarks share: uvicorn processes, scratch databases, a load generator, tables.

Not a benchmark itself (`make bench` runs it too; it does nothing as a script). Benchmarks
print figures beside their goals and never fail on a missed goal: the figures are the result.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
PG_ADMIN_URL = os.environ.get("REDLINE_BENCH_PG_URL",
                              os.environ.get("REDLINE_TEST_PG_URL",
                                             "postgresql+psycopg://postgres@127.0.0.1:5432/test"))

# The same flags for every server a benchmark compares (what `redline serve` passes too).
UVICORN_FLAGS = ["--host", "127.0.0.1", "--log-level", "warning", "--no-access-log",
                 "--no-proxy-headers", "--no-server-header"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- databases -----------------------------------------------------------------------------

def scratch_database(kind: str, workdir: Path) -> tuple[str, callable]:
    """A fresh, migrated database: (url, drop). SQLite in `workdir`, or a new PostgreSQL
    database next to REDLINE_BENCH_PG_URL's."""
    from redline.server.db import migrate

    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
        migrate(url)
        return url, lambda: None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"redline_bench_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT",
                          connect_args={"connect_timeout": 3})
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()

    try:
        migrate(url)
    except BaseException:
        drop()
        raise
    return url, drop


# -- servers -------------------------------------------------------------------------------

@dataclass
class Server:
    """One uvicorn worker process serving `target` (module:attribute)."""

    name: str
    target: str
    factory: bool = False
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, cwd: Path) -> Server:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDLINE_")}
        env.update(self.env)
        command = [sys.executable, "-m", "uvicorn", self.target, *UVICORN_FLAGS,
                   "--port", str(self.port), "--app-dir", str(BENCH_DIR)]
        if self.factory:
            command.append("--factory")
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL)
        return self

    def wait_ready(self, path: str, timeout: float = 30) -> None:
        import httpx

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start within {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- load generation -----------------------------------------------------------------------

@dataclass
class Request:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int  # responses with a status outside 2xx/3xx
    socket_errors: int  # connect, read, write errors and timeouts

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


_WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,'
    .. '"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
"""


def _lua_string(value: str | bytes) -> str:
    if isinstance(value, bytes):
        value = value.decode()
    return " [==[" + value + "]==] "  # spaced: "[[" would open a long string


class Wrk:
    """wrk (one thread: on a small machine the server gets the other cores)."""

    def __init__(self, workdir: Path, threads: int = 1):
        self.workdir = workdir
        self.threads = threads
        out = subprocess.run(["wrk", "-v"], check=False, capture_output=True, text=True)
        self.description = (out.stdout + out.stderr).splitlines()[0].split(" Copyright")[0]
        self.description += f", {threads} thread"

    @staticmethod
    def available() -> bool:
        return shutil.which("wrk") is not None

    def run(self, request: Request, connections: int, seconds: float) -> Result:
        script = self.workdir / f"wrk-{secrets.token_hex(4)}.lua"
        lines = [f"wrk.method = {_lua_string(request.method)}"]
        for name, value in request.headers.items():
            lines.append(f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}")
        if request.body:
            lines.append(f"wrk.body = {_lua_string(request.body)}")
        script.write_text("\n".join(lines) + _WRK_DONE)
        out = subprocess.run(
            ["wrk", "-t", str(self.threads), "-c", str(connections),
             "-d", f"{max(1, round(seconds))}s",  # wrk takes whole seconds
             "--timeout", "10s", "-s", str(script), request.url],
            check=False, capture_output=True, text=True, timeout=seconds + 30)
        line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
        data = json.loads(line.removeprefix("BENCH_JSON "))
        return Result(data["requests"], data["duration_us"] / 1e6, data["p50_us"] / 1000,
                      data["p99_us"] / 1000, data["status"],
                      data["connect"] + data["read"] + data["write"] + data["timeout"])


class PythonLoad:
    """A keep-alive HTTP/1.1 generator on raw asyncio sockets, for machines without wrk.
    One Python process: above ~10k req/s it measures itself more than the server."""

    description = "Python asyncio raw-socket generator (keep-alive HTTP/1.1), 1 process"

    def run(self, request: Request, connections: int, seconds: float) -> Result:
        return asyncio.run(self._run(request, connections, seconds))

    async def _run(self, request: Request, connections: int, seconds: float) -> Result:
        from urllib.parse import urlsplit

        parts = urlsplit(request.url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        head = [f"{request.method} {path} HTTP/1.1", f"Host: {parts.netloc}"]
        head += [f"{k}: {v}" for k, v in request.headers.items()]
        head.append(f"Content-Length: {len(request.body)}")
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + request.body
        latencies: list[float] = []
        counts = {"non_2xx": 0, "errors": 0}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds

        async def one_connection() -> None:
            reader = writer = None
            while loop.time() < deadline:
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(parts.hostname,
                                                                       parts.port)
                    started = time.perf_counter()
                    writer.write(raw)
                    status = int((await reader.readline()).split(b" ", 2)[1])
                    length, chunked = 0, False
                    while (line := await reader.readline()) not in (b"\r\n", b""):
                        name, _, value = line.partition(b":")
                        name = name.strip().lower()
                        if name == b"content-length":
                            length = int(value)
                        elif name == b"transfer-encoding" and b"chunked" in value.lower():
                            chunked = True
                    if chunked:
                        while (size := int((await reader.readline()).strip(), 16)):
                            await reader.readexactly(size + 2)
                        await reader.readline()
                    else:
                        await reader.readexactly(length)
                    latencies.append(time.perf_counter() - started)
                    if not 200 <= status < 400:
                        counts["non_2xx"] += 1
                except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                    counts["errors"] += 1
                    if writer is not None:
                        writer.close()
                    reader = writer = None
            if writer is not None:
                writer.close()

        started = loop.time()
        await asyncio.gather(*(one_connection() for _ in range(connections)))
        elapsed = loop.time() - started
        latencies.sort()

        def percentile(p: float) -> float:
            if not latencies:
                return float("nan")
            return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

        return Result(len(latencies), elapsed, percentile(50), percentile(99),
                      counts["non_2xx"], counts["errors"])


def load_generator(choice: str, workdir: Path):
    if choice == "wrk" or (choice == "auto" and Wrk.available()):
        if not Wrk.available():
            raise SystemExit("wrk is not installed (apt-get install -y wrk), or use "
                             "--generator python")
        return Wrk(workdir)
    return PythonLoad()


def median_result(results: list[Result]) -> dict[str, float]:
    """Medians of the repeated measurements; error counts are summed, not medianed."""
    return {"rps": statistics.median(r.rps for r in results),
            "p50_ms": statistics.median(r.p50_ms for r in results),
            "p99_ms": statistics.median(r.p99_ms for r in results),
            "non_2xx": sum(r.non_2xx for r in results),
            "errors": sum(r.socket_errors for r in results),
            "requests": sum(r.requests for r in results)}


def machine_description() -> str:
    import platform

    return (f"{os.cpu_count()} CPUs, {platform.machine()}, Python "
            f"{platform.python_version()}, {platform.system()} {platform.release()}")


def temporary_directory(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def run_timed(argv: list[str], cwd: Path, env: dict[str, str],
              what: str) -> tuple[float, str, float]:
    """Run a child to its end: (wall seconds, its output, the CPU seconds of it and its own
    children: user + system). A non-zero exit stops the benchmark, saying `what` failed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}"
                         f"\n{done.stderr[-2000:]}")
    return elapsed, done.stdout, cpu


def first_line(output: str, prefix: str) -> str:
    """The first line of `output` that starts with `prefix`, or "(none)"."""
    lines = [line for line in output.splitlines() if line.startswith(prefix)]
    return lines[0] if lines else "(none)"
