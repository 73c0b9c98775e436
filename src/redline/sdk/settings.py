"""Client settings, resolved in this one place for the SDK, the CLI and the MCP server.

`ClientSettings.from_env()` reads every `REDLINE_*` variable a client honours (`VARIABLES`
lists them, with their help text); nothing else in the clients reads the environment.
`resolve_connection` merges, first found wins, the flags, the environment and the saved
sign-in (profile) into a `Connection`, whose `client_options()` configure `Client` and
`AsyncClient`.

Saved sign-ins: `profiles.json` in `$REDLINE_CONFIG_DIR` (default `~/.config/redline`). The
file holds personal tokens, so it is written with mode 0600 (and its folder 0700), through a
temporary file renamed into place so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FILE_NAME = "profiles.json"
DEFAULT_PROFILE = "default"
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 30.0
OUTPUT_CHOICES = ("text", "json")
TRUE_WORDS = ("1", "true", "yes", "on")

#: every variable a client reads, with what it means (the CLI's help and docs list these)
VARIABLES = {
    "REDLINE_URL": f"server URL (default {DEFAULT_URL})",
    "REDLINE_API_KEY": "a project API key (rl_live_...): the project is implied",
    "REDLINE_TOKEN": "a personal token (rlu_...), instead of `redline login`",
    "REDLINE_PROJECT": "default project for commands that take --project",
    "REDLINE_TEAM": "default team for commands that take --team",
    "REDLINE_PROFILE": "saved sign-in to use (see `redline login --profile`)",
    "REDLINE_CONFIG_DIR": "where profiles.json lives (default ~/.config/redline)",
    "REDLINE_OUTPUT": "text or json, when --output is not given",
    "REDLINE_TIMEOUT": f"seconds to wait for each answer (default {DEFAULT_TIMEOUT:g})",
    "REDLINE_MAX_RETRIES": "cap on automatic retries (0: none; default: the catalog's)",
    "REDLINE_REPORT": "1 turns on the pytest plugin's live reporting, as `pytest --redline`",
}


def _text(environ: Mapping[str, str], name: str) -> str | None:
    return environ.get(name) or None


def _number(environ: Mapping[str, str], name: str, kind):
    """A non-negative number, or None when unset or not one (the default applies)."""
    value = environ.get(name)
    if not value:
        return None
    try:
        number = kind(value)
    except ValueError:
        return None
    return number if number >= 0 else None


@dataclass(frozen=True)
class ClientSettings:
    """The `REDLINE_*` variables a client reads, parsed (None: not set)."""

    url: str | None = None
    api_key: str | None = None
    token: str | None = None
    project: str | None = None
    team: str | None = None
    profile: str | None = None
    config_dir: Path | None = None
    #: `text` or `json`; a value that is neither is None (the default, text, applies)
    output: str | None = None
    timeout: float | None = None
    max_retries: int | None = None
    #: REDLINE_REPORT: the pytest plugin reports without `--redline` (1, true, yes or on)
    report: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientSettings:
        env = os.environ if environ is None else environ
        config = _text(env, "REDLINE_CONFIG_DIR")
        if config is None:
            base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
            config_path = Path(base) / "redline"
        else:
            config_path = Path(config)
        output = env.get("REDLINE_OUTPUT")
        return cls(url=_text(env, "REDLINE_URL"), api_key=_text(env, "REDLINE_API_KEY"),
                   token=_text(env, "REDLINE_TOKEN"), project=_text(env, "REDLINE_PROJECT"),
                   team=_text(env, "REDLINE_TEAM"), profile=_text(env, "REDLINE_PROFILE"),
                   config_dir=config_path,
                   output=output if output in OUTPUT_CHOICES else None,
                   timeout=_number(env, "REDLINE_TIMEOUT", float),
                   max_retries=_number(env, "REDLINE_MAX_RETRIES", int),
                   report=(env.get("REDLINE_REPORT") or "").strip().lower() in TRUE_WORDS)


def config_dir() -> Path:
    return ClientSettings.from_env().config_dir  # type: ignore[return-value]


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


def profile_name(store: Store, flag: str | None = None,
                 settings: ClientSettings | None = None) -> str:
    """The profile in use: `--profile`, then `REDLINE_PROFILE`, then the store's current one."""
    settings = settings or ClientSettings.from_env()
    return flag or settings.profile or store.current


def resolve_connection(store: Store | None = None, *, url: str | None = None,
                       profile: str | None = None, project: str | None = None,
                       settings: ClientSettings | None = None) -> Connection:
    """First found wins: the flag, then `REDLINE_URL`/`REDLINE_API_KEY`/`REDLINE_TOKEN`/
    `REDLINE_PROJECT`/`REDLINE_TEAM`, then the profile (`--profile`, `REDLINE_PROFILE`, or the
    current one). An API key in the environment beats a token saved in the profile, and with
    an API key the profile's default project is left out (the key implies its own)."""
    settings = settings or ClientSettings.from_env()
    store = store if store is not None else Store.load()
    name = profile_name(store, profile, settings)
    saved = store.profiles.get(name) or Profile()
    api_key = settings.api_key
    token = None if api_key else settings.token
    if not api_key and not token:
        token, api_key = saved.token, (None if saved.token else saved.api_key)
    return Connection(
        url=(url or settings.url or saved.url or DEFAULT_URL).rstrip("/"),
        api_key=api_key, token=token,
        # a project API key decides its project: a profile's default (saved for a personal
        # token, maybe of another project) never overrides it; a flag or REDLINE_PROJECT does
        project=project or settings.project or (None if api_key else saved.project),
        team=settings.team or saved.team, profile_name=name,
        timeout=settings.timeout, max_retries=settings.max_retries)
