"""What users read stays true: settings, error codes and endpoints are all documented."""

from __future__ import annotations

import re
from pathlib import Path

from redline.errors import CATALOG
from redline.server.config import Settings

ROOT = Path(__file__).parent.parent
#: the front door; the reference it links to is in docs/ (settings in operations.md, the
#: error table in api-and-errors.md)
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_docs():
    operations = (ROOT / "docs" / "operations.md").read_text()
    for name in Settings.model_fields:
        assert f"`REDLINE_{name.upper()}`" in operations, \
            f"REDLINE_{name.upper()} is not in docs/operations.md"


def test_the_readme_links_every_reference_page_and_names_redline_url():
    for path in sorted((ROOT / "docs").glob("*.md")):
        if path.name != "executions.md":  # reached from executed-runs.md
            assert f"(docs/{path.name})" in README, f"README does not link docs/{path.name}"
    assert "REDLINE_URL" in README and "make lint" in README


def test_the_error_table_matches_the_catalog():
    errors_doc = (ROOT / "docs" / "api-and-errors.md").read_text()
    rows = dict(re.findall(r"^\| ([A-Z_]+) \| (.+?) \|", errors_doc, re.MULTILINE))
    for code, kind in CATALOG.items():
        if kind.http_status is None:
            continue
        assert code in rows, f"{code} missing from docs/api-and-errors.md"
        assert rows[code].startswith(str(kind.http_status)), code
    exits = dict(re.findall(r"^\| ([A-Z_]+) \| [^|]+ \| (\d+) \|", errors_doc,
                            re.MULTILINE))
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
