"""What users read stays true: settings, error codes and endpoints are all documented."""

from __future__ import annotations

import re
from pathlib import Path

from redline.errors import CATALOG
from redline.server.config import Settings

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_readme():
    for name in Settings.model_fields:
        assert f"`REDLINE_{name.upper()}`" in README, f"REDLINE_{name.upper()} is undocumented"


def test_the_readme_error_table_matches_the_catalog():
    rows = dict(re.findall(r"^\| ([A-Z_]+) \| (.+?) \|", README, re.MULTILINE))
    for code, kind in CATALOG.items():
        if kind.http_status is None:
            continue
        assert code in rows, f"{code} missing from README"
        assert rows[code].startswith(str(kind.http_status)), code
    exits = dict(re.findall(r"^\| ([A-Z_]+) \| [^|]+ \| (\d+) \|", README, re.MULTILINE))
    for code, kind in CATALOG.items():
        if kind.http_status is not None:
            assert int(exits[code]) == kind.exit_code, code


def test_every_endpoint_has_a_summary_and_is_on_the_docs_page(server):
    with server.client() as client:
        schema = client.get("/api/openapi.json").json()
        page = client.get("/api/docs")
    assert page.status_code == 200 and "<script" not in page.text
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"
            assert f"<code>{path}</code>" in page.text
            assert "400" in operation["responses"], f"{method} {path}: errors undocumented"
