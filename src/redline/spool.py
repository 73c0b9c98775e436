"""Spool files: the results a live reporter could not send, kept to be sent later.

A reporter (the pytest plugin) writes one JSON-lines file per session under
`.redline/spool/` when Redline is unreachable or answers errors; `redline upload --spool DIR`
replays them. Lines, in order of writing:

- `{"type": "run", "session": ID, "runId": ID or null, "fields": {...}}`: the run (its id when
  it was created before the outage, else the fields to create it with);
- `{"type": "tests", "seq": N, "tests": [...]}`: one batch of results (the batch endpoint's);
- `{"type": "finish", "status": ..., "shardCurrent": ..., "duration": ...}`: the session ended;
- `{"type": "sent", "runId": ID}`: appended by a replay that sent everything.

Every request carries an Idempotency-Key derived from the session id (`key`), the same the
reporter used live: a batch that reached the server before the outage, or a spool replayed
twice, stores each result once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

SPOOL_DIR = Path(".redline") / "spool"
SUFFIX = ".jsonl"


def key(session: str, what: str) -> str:
    """The Idempotency-Key of one request of a session (`run`, `tests:N`, `finish`)."""
    return f"redline-spool:{session}:{what}"


class SpoolWriter:
    """Appends a session's records to its file (thread-safe; the file is made when first
    written)."""

    def __init__(self, directory: Path, session: str, run_fields: dict[str, Any]):
        self.path = Path(directory) / f"{session}{SUFFIX}"
        self.session = session
        self.run_fields = run_fields
        self.run_id: str | None = None
        self.results = 0
        self._lock = threading.Lock()
        self._started = False

    @property
    def used(self) -> bool:
        return self._started

    def _write(self, record: dict[str, Any]) -> None:
        with self._lock:
            if not self._started:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                head = {"type": "run", "session": self.session, "runId": self.run_id,
                        "fields": self.run_fields}
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(head) + "\n")
                self._started = True
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def tests(self, seq: int, tests: list[dict[str, Any]]) -> None:
        self._write({"type": "tests", "seq": seq, "tests": tests})
        self.results += len(tests)

    def finish(self, **fields: Any) -> None:
        self._write({"type": "finish", **{k: v for k, v in fields.items() if v is not None}})


def spool_files(path: str | Path) -> list[Path]:
    """The spool files at `path`: the file itself, or a folder's `*.jsonl`."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(path.glob(f"*{SUFFIX}"))


def read(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by a crash: the rest is still worth sending
    return records


def replay(client: Any, path: Path, *, project_id: str | None = None,
           echo: Callable[[str], Any] = lambda _text: None) -> dict[str, Any]:
    """Send one spool file; returns `{"file", "runId", "results", "alreadySent"}`. Raises the
    SDK's error when the server refuses (the file is left as it was: replaying it again is
    safe)."""
    records = read(path)
    head = next((r for r in records if r.get("type") == "run"), None)
    if head is None:
        raise ValueError(f"{path} is not a Redline spool file (no run record)")
    sent = next((r for r in records if r.get("type") == "sent"), None)
    if sent is not None:
        return {"file": str(path), "runId": sent.get("runId"), "results": 0,
                "alreadySent": True}
    session = head["session"]
    run_id = head.get("runId")
    if not run_id:
        fields = dict(head.get("fields") or {})
        run = client.runs.create(project_id, status="running", idempotency_key=key(
            session, "run"), **fields)
        run_id = run.id
    results = 0
    for record in records:
        if record.get("type") == "tests" and record.get("tests"):
            client.runs.add_tests(run_id, record["tests"],
                                  idempotency_key=key(session, f"tests:{record['seq']}"))
            results += len(record["tests"])
    finish = next((r for r in records if r.get("type") == "finish"), None)
    if finish is not None:
        changes = {"status": finish.get("status", "passed"),
                   "shard_current": finish.get("shardCurrent"),
                   "duration": finish.get("duration")}
        # a finished run takes a second PATCH of a final status as a no-op
        client.runs.update(run_id, **{k: v for k, v in changes.items() if v is not None})
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"type": "sent", "runId": run_id}) + "\n")
    echo(f"{path}: {results} results sent to run {run_id}")
    return {"file": str(path), "runId": run_id, "results": results, "alreadySent": False}

