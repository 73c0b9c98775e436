"""`artifacts`: upload (linked to a test by id, or by its file and title), list, download,
delete."""

from __future__ import annotations

import os
import sys

import click

from redline.cli.context import Env, common_options, pagination_options, yes_option
from redline.cli.failures import UsageError

ARTIFACT_COLUMNS = ["id", "type", "fileName", "fileSize", "testId", "createdAt"]
ARTIFACT_FIELDS = ["id", "type", "fileName", "fileSize", "mimeType", "runId", "testId",
                   "testStatus", "sha256", "url", "expiresAt", "createdAt"]
TYPES = click.Choice(["screenshot", "video", "trace", "report"])
#: the type of a file by its extension, when --type is left out
TYPE_BY_EXTENSION = {".png": "screenshot", ".jpg": "screenshot", ".jpeg": "screenshot",
                     ".webp": "screenshot", ".gif": "screenshot", ".webm": "video",
                     ".mp4": "video", ".avi": "video", ".mov": "video", ".zip": "trace"}


def type_of(path: str, given: str | None) -> str:
    """`given`, else the type the file's extension says."""
    if given:
        return given
    found = TYPE_BY_EXTENSION.get(os.path.splitext(path)[1].lower())
    if found is None:
        raise UsageError(f"Cannot tell the type of {path}: give --type (screenshot, video, "
                         "trace or report)", details={"field": "--type", "reason": "required"})
    return found


def byte_progress(env: Env, label: str):
    """A progress bar on stderr for one upload, on a terminal in text mode; else None."""
    if env.output == "json" or not sys.stderr.isatty():
        return None

    def show(sent: int, total: int):
        percent = 100 * sent // total if total else 100
        bar = "#" * (30 * percent // 100)
        sys.stderr.write(f"\r{label} [{bar:<30}] {percent:3d}%")
        if sent >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


@click.group()
def artifacts():
    """Upload, list, download and delete artifacts (screenshots, videos, traces, reports)."""


@artifacts.command("upload")
@common_options(project=True)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--run", "run_id", required=True, metavar="RUN_ID", help="The run it belongs "
              "to.")
@click.option("--test", "test_id", metavar="TEST_ID", help="The test result (test_...) it "
              "belongs to.")
@click.option("--test-file", metavar="PATH", help="Or the test's file (with --test-title).")
@click.option("--test-title", metavar="TITLE", help="The test's full title (with "
              "--test-file).")
@click.option("--variant", metavar="NAME", help="The test's variant (a Playwright project), "
              "when the file and title name several.")
@click.option("--run-level", is_flag=True, help="An artifact of the whole run (no test).")
@click.option("--type", "artifact_type", type=TYPES, help="Default: from the extension "
              "(.png screenshot, .webm video, .zip trace).")
def artifacts_upload(env: Env, file, run_id, test_id, test_file, test_title, variant,
                     run_level, artifact_type):
    """Upload FILE as an artifact of a run, linked to one of its tests: --test TEST_ID, or
    --test-file and --test-title; --run-level for the run as a whole."""
    by_name = bool(test_file or test_title)
    if by_name and not (test_file and test_title):
        raise UsageError("--test-file and --test-title go together",
                         details={"field": "--test-title" if test_file else "--test-file",
                                  "reason": "required"})
    if sum([bool(test_id), by_name, run_level]) != 1:
        raise UsageError("Say which test the artifact belongs to: --test TEST_ID, or "
                         "--test-file and --test-title, or --run-level for the whole run",
                         details={"field": "--test", "reason": "required"})
    kind = type_of(file, artifact_type)
    client = env.client()
    if by_name:
        test_id = client.tests.find(run_id, file_path=test_file, full_title=test_title,
                                    variant=variant).id
    artifact = client.artifacts.upload(file, type=kind, run_id=run_id,
                                       test_id=test_id or None, project_id=env.project,
                                       on_progress=byte_progress(env, "Uploading"))
    env.emit(artifact, fields=ARTIFACT_FIELDS)


@artifacts.command("list")
@common_options()
@click.option("--run", "run_id", metavar="RUN_ID", help="A run's artifacts.")
@click.option("--test", "test_id", metavar="TEST_ID", help="A test's artifacts.")
@click.option("--type", "artifact_type", type=TYPES, help="Only this type.")
@pagination_options
def artifacts_list(env: Env, run_id, test_id, artifact_type, limit, cursor):
    """The artifacts of a run or of a test, oldest first."""
    if not (run_id or test_id):
        raise UsageError("Give --run RUN_ID or --test TEST_ID",
                         details={"field": "--run", "reason": "required"})
    env.emit(env.client(printing=True).artifacts.list(run_id=run_id, test_id=test_id,
                                                      type=artifact_type, limit=limit,
                                                      cursor=cursor),
             columns=ARTIFACT_COLUMNS)


@artifacts.command("get")
@common_options()
@click.argument("artifact_id")
def artifacts_get(env: Env, artifact_id):
    """Show an artifact with a fresh signed link."""
    env.emit(env.client(printing=True).artifacts.get(artifact_id), fields=ARTIFACT_FIELDS)


@artifacts.command("download")
@common_options()
@click.argument("artifact_id")
@click.option("--dest", "-O", "dest", metavar="PATH", help="File or folder to write to "
              "(default: the artifact's name in the current folder).")
@click.option("--force", "-f", is_flag=True, help="Overwrite an existing file.")
def artifacts_download(env: Env, artifact_id, dest, force):
    """Download an artifact's file."""
    client = env.client()
    artifact = client.artifacts.get(artifact_id)
    name = os.path.basename(artifact.file_name or artifact.id) or artifact.id
    target = os.path.join(dest, name) if dest and os.path.isdir(dest) else (dest or name)
    if os.path.exists(target) and not force:
        raise UsageError(f"{target} exists: pass --force to overwrite it",
                         details={"field": "--dest", "reason": "exists"})
    client.artifacts.download(artifact_id, target)
    if env.output == "json":
        env.emit({**artifact.to_json(), "path": os.path.abspath(target)})
    else:
        click.echo(target)


@artifacts.command("delete")
@common_options()
@yes_option
@click.argument("artifact_id")
def artifacts_delete(env: Env, artifact_id, yes):
    """Delete an artifact (its links stop working at once)."""
    env.confirm(yes, f"delete artifact {artifact_id}")
    env.emit(env.client(printing=True).artifacts.delete(artifact_id))
