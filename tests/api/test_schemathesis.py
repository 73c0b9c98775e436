"""Schemathesis against the app's own OpenAPI (RELIABILITY.md section 9): examples, coverage,
fuzzing and stateful phases with every check, as an owner and as a viewer.

One check is left out, with its reason: `positive_data_acceptance` expects every schema-valid
request to be accepted, but a `cursor` is a token signed by the server and an `If-Match` must
name the current version; no generator can make valid ones, and refusing forged ones is the
point (tested by hand in test_error_contract.py and test_tenant_isolation.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import live

ST = Path(sys.executable).parent / "st"
EXCLUDED_PATHS = ["--exclude-path", "/api/setup", "--exclude-path", "/api/auth/logout",
                  # executed runs are not in this version: 501 UNSUPPORTED by design
                  "--exclude-path-regex", "^/api/plans"]


def run_schemathesis(server, token: str, tmp_path: Path, max_examples: int = 25):
    command = [str(ST), "run", f"{server.url}/api/openapi.json", "--url", server.url,
               "-H", f"Authorization: Bearer {token}", "--checks", "all",
               "--exclude-checks", "positive_data_acceptance",
               # one worker: hypothesis hit a SystemError in its AST cache with two threads
               "--max-examples", str(max_examples), "--seed", "42", "--workers", "1",
               "--report", "junit", "--report-dir", str(tmp_path), *EXCLUDED_PATHS]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False,
                            env={**os.environ, "NO_COLOR": "1"})
    return result


@pytest.mark.slow
def test_schemathesis_finds_no_failure_as_an_owner(server, tmp_path):
    tenant = live.make_tenant(server)
    result = run_schemathesis(server, tenant.token, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "Server error" not in output
    generated = re.search(r"(\d+) generated", output)
    assert generated and int(generated.group(1)) > 500, output[-2000:]
    print(output[-1500:])  # the summary, for the record (-s shows it)


@pytest.mark.slow
def test_schemathesis_finds_no_failure_as_a_viewer(server, tmp_path):
    tenant = live.make_tenant(server)
    viewer_token, _ = live.add_member(tenant, "viewer")
    result = run_schemathesis(server, viewer_token, tmp_path, max_examples=15)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
