"""Spool files: the results a live reporter could not send, kept to be sent later.

A reporter (the pytest plugin, the Playwright reporter) writes one JSON-lines file per session
under `.redline/spool/` when Redline is unreachable or answers errors; `redline upload --spool
DIR` replays them. Lines, in order of writing:

- `{"type": "run", "session": ID, "runId": ID or null, "fields": {...}, "format": 2}`: the run
  (its id when it was created before the outage, else the fields to create it with);
  `format` is absent from the first format (read the same: it had no attachments);
- `{"type": "tests", "seq": N, "tests": [...], "attachments": [...]}`: one batch of results
  (the batch endpoint's), and the files attached to them (format 2, optional): each
  `{"test": INDEX in tests, "path": relative to the spool file's folder, "name",
  "contentType", "type": screenshot|video|trace|report}`. Other attachments (text, JSON) are
  not kept: a live reporter does not upload them either. The reporter copies each file into
  the spool folder (`<session>/attachments/...`) before writing the line, so a cleaned
  `test-results/` loses nothing and a spool folder moved elsewhere (a CI artifact) still
  finds its files;
- `{"type": "attachments", "seq": N, "attachments": [...]}` (format 2): files of results that
  were sent live, whose upload found Redline away; each entry names its result by `testId`
  (`test_...`) instead of `test`;
- `{"type": "finish", "status": ..., "shardCurrent": ..., "duration": ...}`: the session ended;
- `{"type": "sent", "runId": ID}`: appended by a replay that sent everything.

Every request carries an Idempotency-Key derived from the session id (`key`), the same the
reporter used live: a batch that reached the server before the outage, or a spool replayed
twice, stores each result once; each attachment's upload has its own key
(`artifact:<seq>:<index>`, `upload:<seq>:<index>`), so it is stored once too, linked to the result the batch answered.
The server keeps a key 24 hours: within them any replay is safe; after them the `sent` line is
what keeps a replayed file from being stored twice.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

SPOOL_DIR = Path(".redline") / "spool"
SUFFIX = ".jsonl"
#: the newest format this module reads (and the one it writes)
FORMAT = 2
#: the artifact types the server stores; a reporter keeps no other attachment (text, JSON), as
#: it uploads none live
ARTIFACT_TYPES = ("screenshot", "video", "trace", "report")


def key(session: str, what: str) -> str:
    """The Idempotency-Key of one request of a session (`run`, `tests:N`,
    `artifact:N:I`, `finish`)."""
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
                        "fields": self.run_fields, "format": FORMAT}
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
    """Send one spool file; returns `{"file", "runId", "results", "attachments",
    "attachmentsMissing", "attachmentsFailed", "alreadySent"}`. Raises the SDK's error when
    the server refuses a result, or cannot be reached (the file is left as it was: replaying
    it again is safe); an attachment the server refuses (too big, say) is counted, not fatal,
    and `echo` is told why."""
    records = read(path)
    head = next((r for r in records if r.get("type") == "run"), None)
    if head is None:
        raise ValueError(f"{path} is not a Redline spool file (no run record)")
    version = head.get("format", 1)
    if not isinstance(version, int) or version > FORMAT:
        raise ValueError(f"{path} is a spool of format {version}, newer than this redline "
                         f"reads ({FORMAT}): upgrade redline (pip install -U redline)")
    sent = next((r for r in records if r.get("type") == "sent"), None)
    if sent is not None:
        return {"file": str(path), "runId": sent.get("runId"), "results": 0, "attachments": 0,
                "attachmentsMissing": 0, "attachmentsFailed": 0, "alreadySent": True}
    session = head["session"]
    run_id = head.get("runId")
    if not run_id:
        fields = dict(head.get("fields") or {})
        run = client.runs.create(project_id, status="running", idempotency_key=key(
            session, "run"), **fields)
        run_id = run.id
    results = 0
    files = {"uploaded": 0, "missing": 0, "failed": 0}
    for record in records:
        if record.get("type") == "tests" and record.get("tests"):
            batch = client.runs.add_tests(run_id, record["tests"],
                                          idempotency_key=key(session, f"tests:{record['seq']}"))
            results += len(record["tests"])
            for index, attachment in enumerate(record.get("attachments") or []):
                test_id = _test_of(attachment, batch.ids)
                outcome = _upload(client, path.parent, run_id, test_id, attachment,
                                  key(session, f"artifact:{record['seq']}:{index}"), echo)
                files[outcome] += 1
        elif record.get("type") == "attachments":
            for index, attachment in enumerate(record.get("attachments") or []):
                test_id = attachment.get("testId")
                outcome = _upload(client, path.parent, run_id,
                                  test_id if isinstance(test_id, str) else None, attachment,
                                  key(session, f"upload:{record.get('seq')}:{index}"), echo)
                files[outcome] += 1
    finish = next((r for r in records if r.get("type") == "finish"), None)
    if finish is not None:
        changes = {"status": finish.get("status", "passed"),
                   "shard_current": finish.get("shardCurrent"),
                   "duration": finish.get("duration")}
        # a finished run takes a second PATCH of a final status as a no-op
        client.runs.update(run_id, **{k: v for k, v in changes.items() if v is not None})
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"type": "sent", "runId": run_id}) + "\n")
    return {"file": str(path), "runId": run_id, "results": results,
            "attachments": files["uploaded"], "attachmentsMissing": files["missing"],
            "attachmentsFailed": files["failed"], "alreadySent": False}


def _test_of(attachment: dict[str, Any], test_ids: list[str]) -> str | None:
    """The id of the result an attachment of a batch belongs to (`test`: its index)."""
    index = attachment.get("test")
    return test_ids[index] if isinstance(index, int) and 0 <= index < len(test_ids) else None


def _upload(client: Any, folder: Path, run_id: str, test_id: str | None,
            attachment: dict[str, Any], idempotency_key: str,
            echo: Callable[[str], Any]) -> str:
    """Upload one spooled attachment linked to its result: `uploaded`, `missing` (the file is
    gone, or the line is not one this reader understands) or `failed` (the server refused
    it)."""
    from redline.sdk.exceptions import APIError

    relative, kind = attachment.get("path"), attachment.get("type")
    if test_id is None or not isinstance(relative, str) or kind not in ARTIFACT_TYPES:
        echo(f"{folder}: an attachment line is not understood, skipped: {attachment}")
        return "missing"
    file = folder / relative
    if not file.resolve().is_relative_to(folder.resolve()):
        # a spool names files in its own folder only: a spool from elsewhere (a CI artifact)
        # never makes the replay upload another file of this machine
        echo(f"{folder}: an attachment outside the spool folder, skipped: {relative}")
        return "missing"
    if not file.is_file():
        echo(f"{file}: attachment missing from the spool, not uploaded")
        return "missing"
    try:
        client.artifacts.upload(file, type=kind, run_id=run_id, test_id=test_id,
                                filename=file.name, content_type=attachment.get("contentType"),
                                idempotency_key=idempotency_key)
    except APIError as exc:
        if exc.status in (408, 429) or not 400 <= (exc.status or 500) < 500:
            raise  # the server is busy or failing: leave the spool to be replayed later
        # one refused file (too big, a wrong format) is not fatal: another replay would not
        # change the answer
        echo(f"{file}: attachment not uploaded: [{exc.code}] {exc.message}")
        return "failed"
    return "uploaded"
