"""The cookie names Redline sets are written in one place (`kit/cookies.py`): a second copy
would let the API, the dashboard and the cursors disagree on which cookie is the session."""

from __future__ import annotations

from pathlib import Path

from redline.server.kit import cookies

SERVER = Path(__file__).resolve().parents[1] / "src" / "redline" / "server"


def test_every_cookie_name_is_written_only_in_kit_cookies():
    names = [cookies.SESSION_COOKIE_SECURE, cookies.SESSION_COOKIE_PLAIN,
             cookies.ANON_COOKIE_SECURE, cookies.ANON_COOKIE_PLAIN]
    copies = [f"{path.relative_to(SERVER)}: {name}"
              for path in SERVER.rglob("*.py") if path.name != "cookies.py"
              for name in names if f'"{name}"' in path.read_text()]
    assert copies == []


def test_the_secure_setting_picks_the_host_prefixed_names():
    class Settings:
        cookie_secure = True

    assert cookies.session_cookie_name(Settings) == "__Host-session"
    assert cookies.anon_cookie_name(Settings) == "__Host-redline_csrf"
    Settings.cookie_secure = False
    assert cookies.session_cookie_name(Settings) == "redline_session"
