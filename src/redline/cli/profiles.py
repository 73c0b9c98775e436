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
