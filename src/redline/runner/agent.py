"""The runner loop: claim a run, execute it, report it, again.

A run is executed under the lease the claim gave: a heartbeat thread renews it and brings
back a cancel request and the signals to deliver; the output is shipped to the server as it
comes (a few times a second, each chunk at its byte offset, so nothing is lost when the
process or the runner dies and nothing is stored twice); the reports the command wrote are
uploaded; the run is finished with the exit code. A run whose lease is lost (the server
swept it) is stopped and dropped.
"""

from __future__ import annotations

import codecs
import logging
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from redline.runner import process
from redline.runner.client import LeaseLost, RunnerClient

log = logging.getLogger("redline.runner")
MAX_REPORT_BYTES = 9 * 1024 * 1024
DEFAULT_OUTPUT_BYTES = 64 * 1024 * 1024  # (a server that sends no limits)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _paths(value: str | None) -> list[Path]:
    return [Path(part) for part in (value or "").split(os.pathsep) if part.strip()]


@dataclass
class RunnerConfig:
    source_paths: list[Path] = field(default_factory=list)
    allow_unsandboxed: bool = False
    require_sandbox: bool = False  # the embedded runner: no sandbox, no run
    hide_paths: list[Path] = field(default_factory=list)
    poll_interval: float = 0.5
    heartbeat_interval: float = 0.5
    work_root: Path | None = None
    # the output kept of a run: the job's limits.outputBytes (the plan's, or the server's
    # default); this runner's own ceiling over it, when set
    max_output_bytes: int | None = None
    limits: process.Limits = field(default_factory=process.Limits)

    @classmethod
    def from_env(cls, **overrides) -> RunnerConfig:
        """`REDLINE_RUNNER_SOURCE_PATHS`, `REDLINE_RUNNER_ALLOW_UNSANDBOXED`,
        `REDLINE_RUNNER_HIDE_PATHS` (and `REDLINE_DATA_DIR`, always hidden)."""
        hidden = _paths(os.environ.get("REDLINE_RUNNER_HIDE_PATHS"))
        if os.environ.get("REDLINE_DATA_DIR"):
            hidden.append(Path(os.environ["REDLINE_DATA_DIR"]))
        values = {"source_paths": _paths(os.environ.get("REDLINE_RUNNER_SOURCE_PATHS")),
                  "allow_unsandboxed": _truthy(os.environ.get(
                      "REDLINE_RUNNER_ALLOW_UNSANDBOXED")),
                  "hide_paths": hidden}
        return cls(**{**values, **overrides})


class LogShipper:
    """Output to the server, in order, at byte offsets the server confirms. The command's
    output is kept up to `cap` bytes (the plan's limits.outputBytes): the rest is cut, with a
    line saying so; Redline's own lines are always kept."""

    TAIL = 16 * 1024

    def __init__(self, client: RunnerClient, run_id: str, lease: str, offset: int,
                 cap: int):
        self.client, self.run_id, self.lease = client, run_id, lease
        self.offset = offset
        self.cap = cap
        self.received = 0  # bytes of the command's output
        self.tail = ""  # the end of the command's output (to tell why it died)
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._loop, name="redline-log", daemon=True)
        self._thread.start()

    def write(self, text: str) -> None:
        with self._lock:
            self.tail = (self.tail + text)[-self.TAIL:]
            if self.received > self.cap:
                return
            data = text.encode("utf-8", "replace")
            room = self.cap - self.received
            self.received += len(data)
            if len(data) > room:
                text = data[:room].decode("utf-8", "ignore")
                text += (f"\n[redline] output cut at {self.cap} bytes (the plan's "
                         "limits.outputBytes): the rest is dropped\n")
                self.received = self.cap + 1
            self._pending.append(text)

    def note(self, line: str) -> None:
        """A line of Redline's own (never a secret)."""
        with self._lock:
            self._pending.append(f"[redline] {line}\n")

    def flush(self) -> None:
        with self._lock:
            text, self._pending = "".join(self._pending), []
        if not text or self.lost:
            return
        try:
            self.offset = self.client.append_log(self.run_id, self.lease, self.offset, text)
        except LeaseLost:
            self.lost = True
        except Exception:  # noqa: BLE001 - unreachable: the text waits for the next flush
            with self._lock:
                self._pending.insert(0, text)

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for _ in range(5):
            self.flush()
            with self._lock:
                if not self._pending:
                    return
            time.sleep(0.5)


class _Lease:
    """The heartbeat thread of one run, and what it brought back."""

    def __init__(self, client: RunnerClient, run_id: str, lease: str, interval: float):
        self.client, self.run_id, self.lease = client, run_id, lease
        self.interval = interval
        self.cancel = threading.Event()
        self.lost = threading.Event()
        self.signals: queue.Queue[str] = queue.Queue()
        self.process_started = False
        self._poke = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="redline-heartbeat",
                                        daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._poke.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                answer = self.client.heartbeat(self.run_id, self.lease, self.process_started)
            except LeaseLost:
                self.lost.set()
                return
            except Exception:  # unreachable for now: the lease outlasts a few misses
                log.debug("heartbeat failed", exc_info=True)
            else:
                if answer.get("cancel"):
                    self.cancel.set()
                for name in answer.get("signals", []):
                    self.signals.put(name)
            self._poke.wait(self.interval)
            self._poke.clear()

    def stop(self) -> None:
        self._stop.set()
        self._poke.set()
        self._thread.join(timeout=5)


class Runner:
    def __init__(self, client: RunnerClient, config: RunnerConfig | None = None,
                 name: str | None = None):
        self.client = client
        self.config = config or RunnerConfig()
        self.runner_id = name or f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = threading.Event()
        self.executed = 0
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Runner:
        self._thread = threading.Thread(target=self.run_forever, name="redline-runner",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        """Claim nothing more; wait (up to `timeout`) for the run in hand."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def run_forever(self) -> None:
        log.info("runner %s started", self.runner_id)
        while not self.stopping.is_set():
            try:
                worked = self.run_once()
            except Exception:  # the server is unreachable, say: wait and try again
                log.warning("runner %s: claiming failed", self.runner_id, exc_info=True)
                worked = False
            if not worked:
                self.stopping.wait(self.config.poll_interval)
        log.info("runner %s stopped", self.runner_id)

    def run_once(self) -> bool:
        job = self.client.claim(self.runner_id)
        if job is None:
            return False
        self.execute(job)
        self.executed += 1
        return True

    # -- one run -----------------------------------------------------------------------

    def execute(self, job: dict) -> None:
        run_id, lease_token = job["runId"], job["leaseToken"]
        lease = _Lease(self.client, run_id, lease_token, self.config.heartbeat_interval)
        cap = (job.get("limits") or {}).get("outputBytes") or DEFAULT_OUTPUT_BYTES
        if self.config.max_output_bytes is not None:
            cap = min(cap, self.config.max_output_bytes)
        shipper = LogShipper(self.client, run_id, lease_token, job.get("logOffset", 0), cap)
        run_dir = Path(tempfile.mkdtemp(prefix="redline-run-", dir=self.config.work_root))
        outcome: dict = {"outcome": "blocked", "blocked_reason": "command_not_started"}
        try:
            outcome = self._execute(job, run_dir, lease, shipper)
        except Exception as exc:  # a runner bug must still end the run
            log.exception("run %s failed in the runner", run_id)
            shipper.note(f"the runner failed: {type(exc).__name__}")
        finally:
            lease.stop()
            shipper.close()
            shutil.rmtree(run_dir, ignore_errors=True)
        if lease.lost.is_set() or shipper.lost:
            log.warning("run %s: lease lost; dropped", run_id)
            return
        try:
            self.client.finish(run_id, lease_token, **outcome)
        except LeaseLost:
            log.warning("run %s: lease lost before it finished", run_id)

    def _execute(self, job: dict, run_dir: Path, lease: _Lease, shipper: LogShipper) -> dict:
        work_dir = run_dir / "work"
        limits = process.Limits.from_job(job.get("limits"), self.config.limits)
        (run_dir / "home").mkdir()
        shipper.note(f"run {job['runId']} (attempt {job.get('attempt', 1)}) on runner "
                     f"{self.runner_id}")
        try:
            shipper.note(process.fetch_source(job.get("source"), work_dir,
                                              self.config.source_paths))
        except (process.SourceError, OSError) as exc:
            shipper.note(f"the source could not be fetched: {exc}")
            return {"outcome": "blocked", "blocked_reason": "source_unavailable"}
        sandbox = self._sandbox(job, shipper)
        if sandbox is None:
            return {"outcome": "blocked", "blocked_reason": "sandbox_unavailable"}
        if lease.cancel.is_set():
            return {"outcome": "cancelled"}
        env = self._env(job, run_dir, work_dir, sandbox)
        argv = sandbox.wrap(job["command"], run_dir, work_dir, bool(job.get("network")))
        timeout = int(job["timeoutSeconds"])
        memory = f"{limits.memory_bytes // 2**20} MiB" if limits.memory_bytes else "none"
        shipper.note(f"limits: CPU {limits.cpu_seconds or timeout + 60} s, memory {memory}, "
                     f"{limits.open_files} open files, output {shipper.cap} bytes")
        try:
            child = process.spawn(argv, work_dir, env, limits, timeout,
                                  sandboxed=sandbox.kind == "bubblewrap")
        except OSError as exc:
            shipper.note(f"the command could not start: {exc.strerror or exc}")
            return {"outcome": "blocked", "blocked_reason": "command_not_started"}
        lease.process_started = True
        lease.poke()
        reader = threading.Thread(target=_pump, args=(child, shipper), daemon=True)
        reader.start()
        end = self._watch(child, job, lease, shipper, timeout,
                          sandbox.kind == "bubblewrap")
        reader.join(timeout=10)
        if lease.lost.is_set():
            return {"outcome": "cancelled"}
        found = self._upload_reports(job, run_dir, work_dir, shipper)
        hit = process.limit_hit(child.returncode, shipper.tail) if end == "exited" else None
        if hit is not None:
            what = {"cpu": f"its CPU-time limit ({limits.cpu_seconds or timeout + 60} s, "
                           "limits.cpuSeconds)",
                    "memory": f"its memory limit ({memory}, limits.memoryMb)",
                    "open_files": f"its open-files limit ({limits.open_files}, "
                                  "limits.openFiles)"}[hit]
            shipper.note(f"the command was stopped by {what}: exit status "
                         f"{child.returncode}; the run fails")
            return {"outcome": "limit", "limit": hit, "exit_code": child.returncode}
        if end == "exited":
            shipper.note(f"the command exited with {child.returncode}")
            return {"outcome": "exited", "exit_code": child.returncode,
                    "blocked_reason": None if found else "no_report"}
        return {"outcome": end, "exit_code": child.returncode}

    def _sandbox(self, job: dict, shipper: LogShipper) -> process.Sandbox | None:
        wanted = job.get("sandbox", "auto")
        available = process.bubblewrap_available()
        if wanted != "none" and available:
            shipper.note("sandbox: bubblewrap (host read-only, network "
                         f"{'on' if job.get('network') else 'off'})")
            return process.Sandbox("bubblewrap", list(self.config.hide_paths))
        if wanted == "bubblewrap":
            shipper.note("the plan asks for the bubblewrap sandbox, which is not installed "
                         "on this runner (apt-get install bubblewrap)")
            return None
        if self.config.require_sandbox and not self.config.allow_unsandboxed:
            shipper.note("this runner runs plans only in a sandbox: bubblewrap is "
                         + ("not installed" if not available else "turned off by the plan")
                         + " (REDLINE_RUNNER_ALLOW_UNSANDBOXED allows it)")
            return None
        shipper.note("no sandbox: " + ("bubblewrap is not installed on this runner"
                                       if not available else "the plan turned it off"))
        return process.Sandbox("none")

    def _env(self, job: dict, run_dir: Path, work_dir: Path,
             sandbox: process.Sandbox) -> dict[str, str]:
        tmp = "/tmp" if sandbox.kind == "bubblewrap" else str(run_dir / "tmp")
        Path(run_dir / "tmp").mkdir(exist_ok=True)
        base = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
                "HOME": str(run_dir / "home"), "LANG": "C.UTF-8", "TMPDIR": tmp,
                "CI": "true", "REDLINE_RUN_ID": job["runId"],
                "REDLINE_RUN_DIR": str(work_dir)}
        return {**base, **{k: str(v) for k, v in (job.get("env") or {}).items()}}

    def _watch(self, child, job: dict, lease: _Lease, shipper: LogShipper,
               timeout: int, sandboxed: bool) -> str:
        """Wait for the command; stop it on cancel, timeout or a lost lease; deliver
        signals. Returns "exited", "cancelled" or "timeout"."""
        pgid = child.pid  # the leader of its own session and group
        grace = float(job.get("cancelGraceSeconds", 10))
        deadline = time.monotonic() + timeout
        while True:
            if child.poll() is not None:
                process.kill_group(child, pgid)  # what it left behind goes with it
                return "exited"
            while not lease.signals.empty():
                name = lease.signals.get()
                shipper.note(f"signal {name} sent to the command's process group")
                process.send(pgid, name, sandboxed)
            if lease.cancel.is_set() or lease.lost.is_set():
                shipper.note(f"cancelled: SIGTERM, then SIGKILL after {grace:g} s")
                process.stop_group(child, pgid, grace, sandboxed)
                return "cancelled"
            if time.monotonic() > deadline:
                shipper.note(f"timeout after {timeout} s: the command's processes are "
                             "killed")
                process.stop_group(child, pgid, min(grace, 5.0), sandboxed)
                return "timeout"
            try:
                child.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass

    def _upload_reports(self, job: dict, run_dir: Path, work_dir: Path,
                        shipper: LogShipper) -> int:
        found = 0
        seen: set[Path] = set()
        for pattern in job.get("reportPaths") or []:
            for path in sorted(work_dir.glob(pattern)):
                resolved = path.resolve()
                if resolved in seen or not path.is_file() \
                        or not resolved.is_relative_to(run_dir.resolve()):
                    continue
                seen.add(resolved)
                if path.stat().st_size > MAX_REPORT_BYTES:
                    shipper.note(f"report {path.relative_to(work_dir)} is over "
                                 f"{MAX_REPORT_BYTES} bytes: not imported")
                    continue
                content = path.read_text(errors="replace")
                answer = self.client.upload_report(job["runId"], job["leaseToken"],
                                                   str(path.relative_to(work_dir)), content)
                if "error" in answer:
                    shipper.note(f"report {path.relative_to(work_dir)} was refused: "
                                 f"{answer['error'].get('message', '')}")
                    continue
                shipper.note(f"report {path.relative_to(work_dir)}: "
                             f"{answer.get('imported', 0)} results")
                found += 1
        if not found:
            shipper.note("no report matched reportPaths: the run is blocked (a run without "
                         "results is never passed)")
        return found


def _pump(child, shipper: LogShipper) -> None:
    """The command's output, as it comes, to the shipper (a UTF-8 character cut by a
    chunk's end waits for the next chunk)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    fd = child.stdout.fileno()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        shipper.write(decoder.decode(chunk))
    shipper.write(decoder.decode(b"", final=True))
    child.stdout.close()
