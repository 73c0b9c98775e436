"""pyproject.toml lists what the code uses, no more, with version ranges as wide as the code
allows (DESIGN.md section 4): a dependency nothing imports, or a framework pinned to one minor
version, fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

#: distribution -> the module the code imports, where the names differ
MODULES = {"pydantic-settings": "pydantic_settings", "argon2-cffi": "argon2",
           "pytest-playwright": "playwright", "pytest-timeout": "pytest"}
#: used without an import of our own, and why
INDIRECT = {
    "python-multipart": "FastAPI parses the dashboard's forms with it",
    "hypothesis": "schemathesis generates its cases with it (listed for its version floor)",
    "ruff": "the linter, run by make lint",
    "import-linter": "checks the layer contracts ([tool.importlinter]), run by make lint",
    "mypy": "the type checker, run by make lint",
    "pytest-xdist": "the pytest plugin's test runs a child pytest with -n 2 (tests/reporters)",
    "pytest-rerunfailures": "the pytest plugin's test reruns a flaky test (tests/reporters)",
}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()


def _requirements() -> dict[str, str]:
    found = list(PROJECT["project"]["dependencies"])
    for extra in PROJECT["project"]["optional-dependencies"].values():
        found += extra
    for group in PROJECT["dependency-groups"].values():
        found += group
    return {_name(r): r for r in found}


def _sources() -> str:
    files = [*(ROOT / "src").rglob("*.py"), *(ROOT / "tests").rglob("*.py"),
             *(ROOT / "bench").rglob("*.py")]
    return "\n".join(path.read_text() for path in files if path != Path(__file__))


def test_every_dependency_is_used():
    sources = _sources()
    unused = []
    for name in _requirements():
        if name in INDIRECT:
            continue
        module = MODULES.get(name, name.replace("-", "_"))
        pattern = rf"^\s*(?:import|from)\s+{re.escape(module)}\b"
        if not re.search(pattern, sources, re.MULTILINE):
            unused.append(name)
    assert unused == []


def test_no_dependency_the_suite_does_not_use():
    requirements = _requirements()
    for name in ("ijson", "freezegun", "flask", "flask-cors"):
        assert name not in requirements, f"{name}: nothing uses it (moto[server] brings flask)"
    assert "server" in requirements["moto"]


def test_the_frameworks_are_not_pinned_to_one_minor_version():
    requirements = _requirements()
    assert PROJECT["project"]["requires-python"] == ">=3.11"
    for name, upper in {"fastapi": "<1", "sqlalchemy": "<3", "pydantic": "<3", "httpx": "<1",
                        "click": "<9", "uvicorn": "<1", "alembic": "<2"}.items():
        assert upper in requirements[name], requirements[name]
    assert "starlette" not in requirements  # FastAPI's own range decides
