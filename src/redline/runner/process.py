"""Running one command: its folder, its source, the sandbox, its process group, limits, and
stopping it so that no process of it survives.

- Each run gets a fresh temporary folder (removed afterwards); the command runs in it, in a
  session and process group of its own (`start_new_session`), with resource limits (CPU time,
  address space, open files, no core files) and a clean environment (none of the runner's
  own variables: its token and the server's settings stay out).
- With bubblewrap (`bwrap`): the host's filesystem read-only (its toolchains work), the run's
  folder and a private `/tmp` writable, the hidden paths (Redline's data directory, its
  database file) covered, every namespace unshared (no network unless the plan allows it),
  and the sandbox dies with the runner (`--die-with-parent`). Without it, the command gets
  SIGKILL when the runner's thread that started it dies (`PR_SET_PDEATHSIG`).
- Stopping: SIGTERM to the whole group, SIGKILL after the grace period, then wait until the
  group is empty.
"""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1
SIGNALS = {name: getattr(signal, f"SIG{name}")
           for name in ("INT", "TERM", "HUP", "KILL", "QUIT", "USR1", "USR2")}


class SourceError(Exception):
    """The run's source could not be fetched (or lies outside the allowed folders)."""


@dataclass
class Limits:
    memory_bytes: int | None = 8 * 1024**3
    open_files: int = 4096
    cpu_seconds: int | None = None  # default: the run's timeout plus a minute

    @classmethod
    def from_job(cls, limits: dict | None, fallback: Limits) -> Limits:
        """The limits the server sent with the job (the plan's, or the server's defaults);
        what it did not send (an older server) is the runner's own."""
        limits = limits or {}
        memory = limits.get("memoryMb")
        return cls(memory_bytes=memory * 1024 * 1024 if memory else fallback.memory_bytes,
                   open_files=limits.get("openFiles") or fallback.open_files,
                   cpu_seconds=limits.get("cpuSeconds") or fallback.cpu_seconds)


# What a command that hit a limit prints as it dies (the kernel only fails its call): Python's
# MemoryError, C's strerror(ENOMEM) and strerror(EMFILE), C++'s std::bad_alloc, Node's
# "heap out of memory".
_MEMORY_SIGNS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc",
                 "out of memory")
_OPEN_FILES_SIGNS = ("Too many open files",)


def limit_hit(returncode: int | None, output_tail: str) -> str | None:
    """Which resource limit stopped a command that exited, if one did: `cpu` (killed by
    SIGXCPU at its CPU-seconds limit, or SIGKILL at the hard limit just above it; through
    bubblewrap, exit status 128 + the signal), `memory` or `open_files` (a failed
    allocation or open, read from the end of its output), else None."""
    if returncode is None or returncode == 0:
        return None
    if returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return "cpu"
    if any(sign in output_tail for sign in _MEMORY_SIGNS):
        return "memory"
    if any(sign in output_tail for sign in _OPEN_FILES_SIGNS):
        return "open_files"
    return None


@dataclass
class Sandbox:
    """How a command is wrapped: `bwrap` args, or none."""

    kind: str  # "bubblewrap" | "none"
    hide_paths: list[Path] = field(default_factory=list)

    def wrap(self, command: list[str], run_dir: Path, work_dir: Path,
             network: bool) -> list[str]:
        if self.kind != "bubblewrap":
            return command
        argv = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                "--tmpfs", "/tmp"]
        for path in _own_toolchain_under_tmp():
            argv += ["--ro-bind", path, path]
        argv += ["--bind", str(run_dir), str(run_dir)]
        for hidden in self.hide_paths:
            hidden = hidden.resolve()
            if run_dir.resolve().is_relative_to(hidden):
                continue  # (the run's own folder stays reachable)
            if hidden.is_dir():
                argv += ["--tmpfs", str(hidden)]
            elif hidden.exists():
                argv += ["--ro-bind", "/dev/null", str(hidden)]
        argv += ["--unshare-all"] + (["--share-net"] if network else [])
        argv += ["--die-with-parent", "--chdir", str(work_dir), "--"]
        return argv + list(command)


def _own_toolchain_under_tmp() -> list[str]:
    """The runner's own interpreter and import path where they lie under /tmp (a checkout or
    a virtualenv there), which the sandbox's private /tmp would hide: plans commonly run the
    same Python (`python -m pytest`). Read-only, outermost first."""
    found: set[str] = set()
    for entry in (sys.prefix, sys.base_prefix, *sys.path):
        if not entry:
            continue
        path = Path(entry).resolve()
        if path.is_relative_to("/tmp") and path != Path("/tmp") and path.exists():
            found.add(str(path))
    kept = sorted(found, key=len)
    return [p for p in kept if not any(Path(p).is_relative_to(q) and p != q for q in kept)]


_bwrap_works: bool | None = None


def bubblewrap_available() -> bool:
    """Whether `bwrap` is installed and can make a sandbox here (checked once)."""
    global _bwrap_works
    if _bwrap_works is None:
        path = shutil.which("bwrap")
        if path is None:
            _bwrap_works = False
        else:
            try:
                probe = subprocess.run([path, "--ro-bind", "/", "/", "--proc", "/proc",
                                        "--dev", "/dev", "--unshare-all",
                                        "--die-with-parent", "true"],
                                       capture_output=True, timeout=20, check=False)
                _bwrap_works = probe.returncode == 0
            except (OSError, subprocess.SubprocessError):
                _bwrap_works = False
    return _bwrap_works


def fetch_source(source: dict | None, work_dir: Path, allowed: list[Path]) -> str:
    """Fill `work_dir` with the run's source; returns what was done (for the log)."""
    if not source:
        work_dir.mkdir(parents=True)
        return "no source: the command runs in an empty folder"
    if source.get("path"):
        folder = _allowed(Path(source["path"]), allowed)
        if not folder.is_dir():
            raise SourceError(f"source path {folder} is not a folder")
        shutil.copytree(folder, work_dir, symlinks=True)
        return f"copied {folder}"
    url = str(source.get("git"))
    if "://" not in url and not url.startswith("git@"):
        url = _allowed(Path(url), allowed).as_uri()  # file:// so that --depth applies
    elif url.startswith("file://"):
        _allowed(Path(url.removeprefix("file://")), allowed)
    argv = ["git", "clone", "--quiet", "--depth", "1"]
    if source.get("ref"):
        argv += ["--branch", str(source["ref"])]
    argv += ["--", url, str(work_dir)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_TERMINAL_PROMPT": "0",
           "HOME": str(work_dir.parent)}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env,
                              check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SourceError(f"git clone failed: {exc}") from None
    if done.returncode != 0:
        raise SourceError(f"git clone failed: {done.stderr.strip()[-500:]}")
    return f"cloned {source.get('git')}" + (f" at {source['ref']}" if source.get("ref") else "")


def _allowed(path: Path, allowed: list[Path]) -> Path:
    resolved = path.resolve()
    for root in allowed:
        if resolved.is_relative_to(root.resolve()):
            return resolved
    raise SourceError(f"{path} is not inside a folder the runner allows "
                      "(REDLINE_RUNNER_SOURCE_PATHS)")


def _preexec(limits: Limits, timeout: int, die_with_runner: bool):
    cpu = limits.cpu_seconds or timeout + 60

    def apply() -> None:  # in the child, between fork and exec
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        if limits.memory_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        if die_with_runner:
            _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return apply


def spawn(argv: list[str], work_dir: Path, env: dict[str, str], limits: Limits,
          timeout: int, sandboxed: bool) -> subprocess.Popen:
    """Start the command in a new session (its own process group), output on one pipe."""
    return subprocess.Popen(argv, cwd=work_dir, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True,
                            preexec_fn=_preexec(limits, timeout, not sandboxed))  # noqa: PLW1509


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _command_members(pgid: int) -> list[int]:
    """The group's processes other than bubblewrap's own (the sandbox's parent and its init
    in the sandbox's PID namespace), from the process table."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                data = stat.read()
        except OSError:
            continue
        name = data[data.find(b"(") + 1:data.rfind(b")")]
        fields = data[data.rfind(b")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid and name != b"bwrap":
            found.append(int(entry.name))
    return found


def send(pgid: int, name: str, sandboxed: bool = False) -> bool:
    """Deliver a signal to the command's process group. In a sandbox, to the command's
    processes only: bubblewrap's own would die of most signals and take the sandbox down
    (SIGKILL goes to the whole group)."""
    if sandboxed and name != "KILL":
        delivered = False
        for pid in _command_members(pgid):
            try:
                os.kill(pid, SIGNALS[name])
                delivered = True
            except ProcessLookupError:
                continue
        return delivered
    try:
        os.killpg(pgid, SIGNALS[name])
    except ProcessLookupError:
        return False
    return True


def stop_group(process: subprocess.Popen, pgid: int, grace: float,
               sandboxed: bool = False) -> None:
    """SIGTERM to the group, SIGKILL after `grace` seconds, then wait until none is left."""
    if group_alive(pgid):
        send(pgid, "TERM", sandboxed)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        process.poll()  # (a leader that exited is reaped: a zombie counts as alive)
        if not group_alive(pgid):
            return
        time.sleep(0.02)
    kill_group(process, pgid)


def kill_group(process: subprocess.Popen, pgid: int, wait: float = 10.0) -> None:
    """SIGKILL to whatever is left of the group, and wait until it is gone."""
    deadline = time.monotonic() + wait
    while True:
        process.poll()
        if not group_alive(pgid):
            return
        send(pgid, "KILL")
        if time.monotonic() > deadline:
            return
        time.sleep(0.02)
