"""The attachments of a Playwright JSON report (screenshots, videos, traces), uploaded after
its run is imported, each linked to its test.

The files are on this machine, at the paths the report lists or, when the report was moved,
relative to the report's folder. Each is sent with its last folders in its name
(`sample-fails-chromium/test-failed-1.png`): the server links it to the one result of the run
whose reporter listed that attachment. One that matches no test is counted as `unlinked`, and
said, never dropped silently.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

#: what a content type is uploaded as; other attachments (text, JSON, markdown) stay out
TYPE_BY_CONTENT = {"image/png": "screenshot", "image/jpeg": "screenshot",
                   "image/webp": "screenshot", "image/gif": "screenshot",
                   "video/webm": "video", "video/mp4": "video", "application/zip": "trace"}


def has_playwright_report(paths: list[str], report_format: str | None) -> bool:
    if report_format == "playwright-json":
        return True
    if report_format not in (None, "auto"):
        return False
    for path in paths:
        try:
            with open(path, "rb") as handle:
                head = handle.read(4096).lstrip()
        except OSError:
            continue
        if head.startswith(b"{") and b'"config"' in head:
            return True
    return False


def _located(path: str, folders: list[Path]) -> Path | None:
    """The file at `path`, else at its tail under one of `folders` (a moved report)."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    parts = candidate.parts
    for folder in folders:  # the report moved (an artifact of another job): match the tail
        for start in range(1, len(parts)):
            moved = folder.joinpath(*parts[start:])
            if moved.is_file():
                return moved
    return None


def _listed(report: dict) -> list[dict]:
    found: list[dict] = []

    def walk(suite: dict) -> None:
        for spec in suite.get("specs") or []:
            for test in spec.get("tests") or []:
                for result in test.get("results") or []:
                    found.extend(a for a in result.get("attachments") or []
                                 if isinstance(a, dict))
        for child in suite.get("suites") or []:
            walk(child)

    for suite in report.get("suites") or []:
        walk(suite)
    return found


def planned(reports: list[str]) -> tuple[list[tuple], int]:
    """(file, artifact type) of each attachment to send, and how many are missing."""
    import json

    plan, missing, seen = [], 0, set()
    for report_path in reports:
        try:
            with open(report_path, "rb") as handle:
                report = json.load(handle)
        except (OSError, ValueError):
            continue  # not JSON: the import said what it had to
        if not isinstance(report, dict):
            continue
        folder = Path(report_path).resolve().parent
        for item in _listed(report):
            kind = TYPE_BY_CONTENT.get(str(item.get("contentType", "")).split(";")[0])
            if kind is None or not item.get("path"):
                continue
            found = _located(str(item["path"]), [folder])
            if found is None:
                missing += 1
            elif found not in seen:
                seen.add(found)
                plan.append((found, kind))
    return plan, missing


def upload_attachments(env: Any, client: Any, run: Any, reports: list[str]) -> dict:
    """Upload the run's attachments; a progress bar on a terminal in text mode. Answers the
    counts and the artifacts made."""
    from redline.sdk.exceptions import APIError

    plan, missing = planned(reports)
    total = sum(os.path.getsize(path) for path, _ in plan)
    show = env.output != "json" and sys.stderr.isatty() and plan
    done, uploaded, failed, unlinked, artifacts = 0, 0, 0, 0, []
    for path, kind in plan:
        def progress(sent: int, size: int, base: int = done,
                     index: int = uploaded + failed + 1) -> None:
            if show:
                _bar(base + sent, total, index, len(plan))

        try:
            # test_id None: the server links the file to the result that listed it
            artifact = client.artifacts.upload(
                path, type=kind, run_id=run.id, test_id=None,
                filename="/".join(path.parts[-3:]), on_progress=progress)
        except APIError as exc:  # one refused file (too big, a wrong format) is not fatal
            failed += 1
            env.note(f"Attachment {path} not uploaded: [{exc.code}] {exc.message}")
        else:
            uploaded += 1
            if artifact.test_id is None:
                unlinked += 1
                env.note(f"Attachment {path} matches no test of the run: kept on the run")
            artifacts.append({"id": artifact.id, "testId": artifact.test_id, "type": kind,
                              "file": str(path)})
        done += os.path.getsize(path)
    if show:
        sys.stderr.write("\n")
        sys.stderr.flush()
    return {"uploaded": uploaded, "unlinked": unlinked, "missing": missing,
            "failed": failed, "artifacts": artifacts}


def _bar(sent: int, total: int, index: int, count: int) -> None:
    percent = 100 * sent // total if total else 100
    bar = "#" * (30 * percent // 100)
    sys.stderr.write(f"\rAttachments {min(index, count)}/{count} [{bar:<30}] {percent:3d}%")
    sys.stderr.flush()
