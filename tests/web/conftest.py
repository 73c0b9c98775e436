"""Fixtures of the dashboard tests: a browser-like client signed in through the sign-in form,
a real report imported through the API, and Debian's Chromium for the end-to-end tests."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import missing_service
from tests.support import live

REPORTS = Path(__file__).resolve().parents[1] / "fixtures" / "reports"
PLAYWRIGHT_REPORT = REPORTS / "playwright-json" / "playwright.json"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


class Browser:
    """An httpx client that behaves like a browser on the dashboard: cookies, forms."""

    def __init__(self, server: live.LiveServer):
        self.server = server
        self.http = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def post_form(self, path: str, data: dict, csrf_from: str | None = None,
                  **kwargs) -> httpx.Response:
        """Post a form with the CSRF token of the page it is on (`csrf_from`)."""
        if csrf_from is not None and "csrf" not in data:
            data = {**data, "csrf": csrf_of(self.get(csrf_from).text)}
        return self.http.post(path, data=data, **kwargs)

    def sign_in(self, email: str, password: str = live.PASSWORD) -> httpx.Response:
        page = self.get("/login")
        response = self.http.post("/login", data={"email": email, "password": password,
                                                  "csrf": csrf_of(page.text), "next": "/"})
        return response

    def close(self):
        self.http.close()


@pytest.fixture
def browser_for(server):
    made = []

    def make() -> Browser:
        made.append(Browser(server))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def owner(tenant, browser_for) -> Browser:
    """The tenant's owner, signed in to the dashboard."""
    client = browser_for()
    assert client.sign_in(tenant.email).status_code == 303
    return client


def import_report(tenant, path: Path = PLAYWRIGHT_REPORT, **params) -> dict:
    params = {"branch": "main", "commitSha": "a1b2c3d4e5f60718", **params}
    with tenant.as_key() as client:
        response = client.post("/api/runs/import", content=path.read_bytes(), params=params,
                               headers={"Content-Type": "application/json"
                                        if path.suffix == ".json" else "application/xml"})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def imported(tenant) -> dict:
    """A real Playwright report imported twice on main (history, a comparison)."""
    import_report(tenant, commitSha="1111111111111111")
    return import_report(tenant)


# -- the real browser ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        missing_service("Debian's Chromium is not installed at /usr/bin/chromium: install it "
                        "with `apt-get update && apt-get install -y chromium` (never "
                        "`playwright install`)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """test-results/screenshots/, emptied once per test session."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    return SCREENSHOTS


@pytest.fixture(scope="session", autouse=True)
def delete_output_dir():
    """pytest-playwright empties test-results/ when its fixtures start, which would take the
    screenshots written by earlier tests with it: `screenshots` cleans its own folder."""
