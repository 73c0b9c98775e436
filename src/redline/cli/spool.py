"""`redline upload --spool DIR`: send what a live reporter spooled (`redline.spool`)."""

from __future__ import annotations

from typing import Any

import click

from redline.cli.failures import UsageError


def upload_spool(env: Any, spool: str | None, reports: tuple) -> int:
    """Replay each spool file at `spool` (a folder or one file) into its run. Idempotent: a
    file already sent is skipped, and every request carries a key derived from the file."""
    from redline import spool as spooled

    if spool is None:
        raise UsageError("Name the reports to upload, or --spool DIR",
                         example="redline upload junit.xml")
    if reports:
        raise UsageError("Pass report files or --spool, not both",
                         example="redline upload --spool .redline/spool")
    files = spooled.spool_files(spool)
    echo = (lambda _text: None) if env.output == "json" else env.note
    if not files:
        raise UsageError(f"No spool files (*.jsonl) in {spool}",
                         next_action="A live reporter writes them under .redline/spool/ "
                         "when Redline is unreachable.")
    client = env.client()
    sent = []
    for path in files:
        try:
            done = spooled.replay(client, path, project_id=env.project, echo=echo)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        sent.append(done)
        if env.output != "json":
            if done["alreadySent"]:
                click.echo(f"{path}: sent already, to run {done['runId']}")
            else:
                attached = (f" with {done['attachments']} attachments"
                            if done["attachments"] else "")
                click.echo(f"{path}: {done['results']} results{attached} sent to run "
                           f"{done['runId']}")
            lost = done["attachmentsMissing"] + done["attachmentsFailed"]
            if lost:
                env.note(f"{path}: {lost} attachments not uploaded (missing from the spool "
                         "folder, or refused): see the lines above")
    if env.output == "json":
        env.emit({"files": sent, "results": sum(d["results"] for d in sent),
                  "attachments": sum(d["attachments"] for d in sent)})
    return 0
