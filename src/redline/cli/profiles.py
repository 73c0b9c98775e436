"""Saved sign-ins: `profiles.json` in `$REDLINE_CONFIG_DIR` (default `~/.config/redline`).

The file holds personal tokens, so it is written with mode 0600 (and its folder 0700), through
a temporary file renamed into place so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FILE_NAME = "profiles.json"
DEFAULT_PROFILE = "default"


def config_dir() -> Path:
    explicit = os.environ.get("REDLINE_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "redline"


def config_path() -> Path:
    return config_dir() / FILE_NAME


@dataclass
class Profile:
    url: str | None = None
    token: str | None = None
    api_key: str | None = None
    email: str | None = None
    expires_at: str | None = None
    project: str | None = None
    team: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Profile:
        names = {"url": "url", "token": "token", "apiKey": "api_key", "email": "email",
                 "expiresAt": "expires_at", "project": "project", "team": "team"}
        return cls(**{attr: data.get(key) for key, attr in names.items()})

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {"url": data["url"], "token": data["token"], "apiKey": data["api_key"],
                "email": data["email"], "expiresAt": data["expires_at"],
                "project": data["project"], "team": data["team"]}


@dataclass
class Store:
    current: str = DEFAULT_PROFILE
    profiles: dict[str, Profile] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Store:
        path = config_path()
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError):
            return cls()  # an unreadable file is treated as no profiles, not a crash
        profiles = {name: Profile.from_json(p) for name, p in (raw.get("profiles") or {}).items()
                    if isinstance(p, dict)}
        return cls(current=raw.get("current") or DEFAULT_PROFILE, profiles=profiles)

    def get(self, name: str | None) -> Profile | None:
        return self.profiles.get(name or self.current)

    def save(self) -> Path:
        directory = config_dir()
        directory.mkdir(parents=True, exist_ok=True)
        try:
            directory.chmod(0o700)
        except OSError:
            pass
        path = directory / FILE_NAME
        tmp = directory / f".{FILE_NAME}.{os.getpid()}.tmp"
        body = json.dumps({"current": self.current,
                           "profiles": {n: p.to_json() for n, p in self.profiles.items()}},
                          indent=2) + "\n"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(body)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path


@dataclass
class Connection:
    """Where and as whom a client connects, resolved from flags, environment and profile."""

    url: str
    api_key: str | None = None
    token: str | None = None
    project: str | None = None
    team: str | None = None
    profile_name: str = DEFAULT_PROFILE
    #: REDLINE_TIMEOUT (seconds per request) and REDLINE_MAX_RETRIES (0: never retry)
    timeout: float | None = None
    max_retries: int | None = None

    def client_options(self) -> dict:
        """Keyword arguments for the SDK's `Client`/`AsyncClient`."""
        options: dict = {"project_id": self.project, "from_env": False}
        if self.api_key:
            options["api_key"] = self.api_key
        elif self.token:
            options["token"] = self.token
        if self.timeout is not None:
            options["timeout"] = self.timeout
        if self.max_retries is not None:
            options["max_retries"] = self.max_retries
        return options


def _number(name: str, kind):
    value = os.environ.get(name)
    if not value:
        return None
    try:
        number = kind(value)
    except ValueError:
        return None
    return number if number >= 0 else None


def resolve_connection(store: Store | None = None, *, url: str | None = None,
                       profile: str | None = None, project: str | None = None) -> Connection:
    """First found wins: the flag, then `REDLINE_URL`/`REDLINE_API_KEY`/`REDLINE_TOKEN`/
    `REDLINE_PROJECT`/`REDLINE_TEAM`, then the profile (`--profile`, `REDLINE_PROFILE`, or the
    current one). An API key in the environment beats a token saved in the profile."""
    from redline.sdk._base import DEFAULT_URL

    store = store if store is not None else Store.load()
    name = profile or os.environ.get("REDLINE_PROFILE") or store.current
    saved = store.profiles.get(name) or Profile()
    api_key = os.environ.get("REDLINE_API_KEY") or None
    token = None if api_key else (os.environ.get("REDLINE_TOKEN") or None)
    if not api_key and not token:
        token, api_key = saved.token, (None if saved.token else saved.api_key)
    return Connection(
        url=(url or os.environ.get("REDLINE_URL") or saved.url or DEFAULT_URL).rstrip("/"),
        api_key=api_key, token=token,
        project=project or os.environ.get("REDLINE_PROJECT") or saved.project,
        team=os.environ.get("REDLINE_TEAM") or saved.team, profile_name=name,
        timeout=_number("REDLINE_TIMEOUT", float), max_retries=_number("REDLINE_MAX_RETRIES", int))
