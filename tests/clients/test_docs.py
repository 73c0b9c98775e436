"""The client docs keep up with the code: every command, code and SDK resource is documented,
and the documented statuses and exit codes are the catalog's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from redline import errors
from redline.cli.main import COMMANDS
from redline.errors import CATALOG
from redline.sdk import Client

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def cli_doc() -> str:
    return (DOCS / "cli.md").read_text()


@pytest.fixture(scope="module")
def sdk_doc() -> str:
    return (DOCS / "sdk.md").read_text()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_is_in_the_cli_doc(cli_doc, command):
    assert f"redline {command}" in cli_doc


def test_the_code_table_is_the_catalog(cli_doc):
    rows = {m[0]: (m[1], m[2], int(m[3])) for m in re.findall(
        r"^\| `([A-Z_]+)` \| (server|sdk|cli) \| (\d+|—) \| (\d+) \|", cli_doc, re.MULTILINE)}
    assert rows == {code: (kind.sender, str(kind.http_status or "—"), kind.exit_code)
                    for code, kind in CATALOG.items()}
    assert errors.markdown_table() in cli_doc, "regenerate it: python -m redline.errors"


def test_every_exit_status_of_the_catalog_is_in_the_exit_table(cli_doc):
    exits = dict(re.findall(r"^\| (\d+) \| (.+) \|$", cli_doc, re.MULTILINE))
    for code, kind in CATALOG.items():
        assert f"`{code}`" in exits[str(kind.exit_code)], code


def test_every_code_and_resource_is_in_the_sdk_doc(sdk_doc):
    for code, kind in CATALOG.items():
        if kind.sender != "cli":  # the CLI's own codes are in cli.md
            assert code in sdk_doc
    client = Client("http://127.0.0.1:1", from_env=False)
    resources = [name for name, value in vars(client).items()
                 if not name.startswith("_") and hasattr(value, "_c")]
    for name in resources:
        assert f"client.{name}`" in sdk_doc, name
