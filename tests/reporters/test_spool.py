"""The spool reader (`redline.spool.replay`), against a real server through the SDK: a spool of
the first format (no attachments, as the pytest plugin and older reporters wrote it) replays
as before; a spool of format 2 uploads its attachments linked to their results, once however
often it is replayed; a spool newer than this reader is refused with what to do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from redline import spool
from redline.sdk import Client
from tests.api.test_artifacts_support import media

SESSION = "0123456789abcdef0123456789abcdef"


def write_spool(folder: Path, *records: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{SESSION}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def run_record(**extra) -> dict:
    return {"type": "run", "session": SESSION, "runId": None,
            "fields": {"branch": "main", "source": "reporter"}, **extra}


TESTS = [{"title": "adds an item", "fullTitle": "cart > adds an item", "status": "passed",
          "duration": 12},
         {"title": "pays", "fullTitle": "cart > pays", "status": "failed", "duration": 30,
          "error": {"message": "expected 2, got 3"}}]


@pytest.fixture
def client(server, tenant):
    with Client(server.url, api_key=tenant.key, from_env=False) as sdk:
        yield sdk


def test_a_spool_of_the_first_format_replays_as_before(client, tmp_path):
    path = write_spool(tmp_path, run_record(),  # no "format": the first one
                       {"type": "tests", "seq": 1, "tests": TESTS},
                       {"type": "finish", "status": "failed", "duration": 1500})

    done = spool.replay(client, path)

    assert done["results"] == 2 and done["attachments"] == 0 and not done["alreadySent"]
    run = client.runs.get(done["runId"])
    assert run.status == "failed" and run.total_tests == 2 and run.failed_tests == 1
    assert list(client.artifacts.iter(run_id=run.id)) == []
    assert json.loads(path.read_text().splitlines()[-1]) == {"type": "sent", "runId": run.id}
    again = spool.replay(client, path)
    assert again["alreadySent"] and again["runId"] == run.id and again["results"] == 0


def test_spooled_attachments_are_uploaded_once_linked_to_their_result(client, tmp_path):
    png = media("png")
    kept = tmp_path / "spool" / SESSION / "attachments" / "1" / "1-0" / "test-failed-1.png"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(png)
    attachments = [
        {"test": 1, "path": f"{SESSION}/attachments/1/1-0/test-failed-1.png",
         "name": "screenshot", "contentType": "image/png", "type": "screenshot"},
        {"test": 1, "path": f"{SESSION}/attachments/1/1-1/trace.zip", "name": "trace",
         "contentType": "application/zip", "type": "trace"},  # deleted from the spool folder
        {"test": 1, "path": "../outside.png", "name": "screenshot",  # never read
         "contentType": "image/png", "type": "screenshot"},
    ]
    (tmp_path / "outside.png").write_bytes(png)
    path = write_spool(tmp_path / "spool", run_record(format=2),
                       {"type": "tests", "seq": 1, "tests": TESTS, "attachments": attachments},
                       {"type": "finish", "status": "failed"})
    before = path.read_text()
    notes: list[str] = []

    done = spool.replay(client, path, echo=notes.append)
    path.write_text(before)  # as if the first replay died before writing its `sent` line
    again = spool.replay(client, path, echo=notes.append)

    assert (done["attachments"], done["attachmentsMissing"]) == (1, 2)
    assert again["runId"] == done["runId"] and again["attachments"] == 1
    assert any("trace.zip: attachment missing from the spool" in note for note in notes)
    assert any("outside the spool folder, skipped: ../outside.png" in n for n in notes), notes
    failed = next(t for t in client.tests.iter(run_id=done["runId"]) if t.status == "failed")
    [artifact] = client.artifacts.iter(run_id=done["runId"])
    assert (artifact.type, artifact.test_id, artifact.file_name) == (
        "screenshot", failed.id, "test-failed-1.png")
    assert artifact.file_size == len(png)


def test_a_refused_attachment_is_counted_and_the_rest_is_sent(client, tmp_path):
    kept = tmp_path / SESSION / "attachments" / "1" / "0-0" / "page.png"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"not a picture at all")
    path = write_spool(tmp_path, run_record(format=2), {
        "type": "tests", "seq": 1, "tests": TESTS[:1], "attachments": [
            {"test": 0, "path": f"{SESSION}/attachments/1/0-0/page.png", "name": "screenshot",
             "contentType": "image/png", "type": "screenshot"}]})
    notes: list[str] = []

    done = spool.replay(client, path, echo=notes.append)

    assert done["results"] == 1 and done["attachmentsFailed"] == 1
    assert any("page.png: attachment not uploaded" in note for note in notes), notes
    assert list(client.artifacts.iter(run_id=done["runId"])) == []


def test_a_spool_newer_than_this_reader_is_refused_and_nothing_is_stored(client, tmp_path):
    path = write_spool(tmp_path, run_record(format=spool.FORMAT + 1),
                       {"type": "tests", "seq": 1, "tests": TESTS})

    with pytest.raises(ValueError, match="upgrade redline"):
        spool.replay(client, path)

    assert list(client.runs.iter()) == []
    assert '"sent"' not in path.read_text()


def test_attachments_of_results_sent_live_name_their_result_by_id(client, tmp_path):
    run = client.runs.create(status="running", branch="main")
    [test_id] = client.runs.add_tests(run.id, TESTS[1:]).ids
    kept = tmp_path / SESSION / "attachments" / "uploads" / "1" / "test-failed-1.png"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(media("png"))
    path = write_spool(tmp_path, run_record(format=2, runId=run.id), {
        "type": "attachments", "seq": 1, "attachments": [
            {"testId": test_id, "path": f"{SESSION}/attachments/uploads/1/test-failed-1.png",
             "name": "screenshot", "contentType": "image/png", "type": "screenshot"}]})

    done = spool.replay(client, path)

    assert (done["runId"], done["results"], done["attachments"]) == (run.id, 0, 1)
    [artifact] = client.artifacts.iter(run_id=run.id)
    assert (artifact.type, artifact.test_id) == ("screenshot", test_id)
