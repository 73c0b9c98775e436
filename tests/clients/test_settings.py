"""Client settings (`REDLINE_*` for the SDK, the CLI and the MCP server) are resolved in one
place, `redline.sdk.settings`, and every one is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import redline
from redline.sdk import Client
from redline.sdk.settings import (
    VARIABLES,
    ClientSettings,
    Profile,
    Store,
    resolve_connection,
)

SRC = Path(redline.__file__).parent
DOCS = Path(__file__).resolve().parents[2] / "docs"
ENV_READ = re.compile(r"\b(?:environ|getenv)\b")
ENV_WRITE = re.compile(r"environ\[[^\]]+\]\s*=[^=]")


def test_only_the_settings_module_reads_redline_variables_on_the_client_side():
    readers = []
    for part in ("sdk", "cli", "mcp"):
        for path in (SRC / part).rglob("*.py"):
            if path == SRC / "sdk" / "settings.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if "REDLINE_" in line and ENV_READ.search(line) and not ENV_WRITE.search(line):
                    readers.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert readers == []
    source = (SRC / "sdk" / "settings.py").read_text()
    for name in VARIABLES:
        assert f'"{name}")' in source or f'"{name}", ' in source, name


def test_the_variables_are_parsed_once_and_bad_values_fall_back_to_the_defaults():
    settings = ClientSettings.from_env({
        "REDLINE_URL": "http://x:1", "REDLINE_API_KEY": "rl_live_a", "REDLINE_TOKEN": "",
        "REDLINE_OUTPUT": "yaml", "REDLINE_TIMEOUT": "2.5", "REDLINE_MAX_RETRIES": "-1",
        "REDLINE_CONFIG_DIR": "/tmp/cfg", "REDLINE_PROFILE": "ci"})
    assert (settings.url, settings.api_key, settings.token) == ("http://x:1", "rl_live_a", None)
    assert settings.output is None and settings.timeout == 2.5 and settings.max_retries is None
    assert settings.config_dir == Path("/tmp/cfg") and settings.profile == "ci"
    assert ClientSettings.from_env({"XDG_CONFIG_HOME": "/x"}).config_dir == Path("/x/redline")


def test_flags_beat_the_environment_which_beats_the_profile():
    store = Store(current="work", profiles={"work": Profile(url="http://saved", token="rlu_t",
                                                            project="proj_saved",
                                                            team="team_saved")})
    env = ClientSettings(url="http://env", project="proj_env", timeout=3.0, max_retries=0)
    conn = resolve_connection(store, settings=env)
    assert (conn.url, conn.token, conn.project, conn.team) == \
        ("http://env", "rlu_t", "proj_env", "team_saved")
    assert conn.client_options()["timeout"] == 3.0
    assert conn.client_options()["max_retries"] == 0
    conn = resolve_connection(store, url="http://flag/", project="proj_flag", settings=env)
    assert (conn.url, conn.project) == ("http://flag", "proj_flag")
    # an API key in the environment beats the token saved in the profile
    conn = resolve_connection(store, settings=ClientSettings(api_key="rl_live_env"))
    assert (conn.api_key, conn.token, conn.url) == ("rl_live_env", None, "http://saved")


def test_the_sdk_reads_the_same_settings(monkeypatch):
    monkeypatch.setenv("REDLINE_URL", "http://from-env:9/")
    monkeypatch.setenv("REDLINE_API_KEY", "rl_live_env")
    with Client() as client:
        assert client.url == "http://from-env:9"
        assert client.credentials.api_key == "rl_live_env"
    with Client(from_env=False) as client:
        assert client.url == "http://127.0.0.1:8000" and client.credentials.api_key is None


@pytest.mark.parametrize("name", list(VARIABLES))
def test_every_variable_is_documented_and_in_the_help(cli_doc, name, root_help):
    assert f"`{name}`" in cli_doc or f"${name}" in cli_doc
    assert name in root_help


@pytest.fixture(scope="module")
def cli_doc() -> str:
    return (DOCS / "cli.md").read_text()


@pytest.fixture(scope="module")
def root_help() -> str:
    from redline.cli.app import ROOT_EPILOG

    return ROOT_EPILOG
