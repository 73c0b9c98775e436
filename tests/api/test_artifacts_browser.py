"""A real browser (Debian's Chromium) opens hostile artifacts through their signed links: no
script runs (RELIABILITY.md section 3, item 6). Skips without Chromium; fails under CI=true."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.api.test_artifacts import HOSTILE, _stored_artifact
from tests.api.test_artifacts_support import local, media, upload
from tests.conftest import missing_service

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        missing_service("Debian's Chromium is not installed at /usr/bin/chromium: install it "
                        "with `apt-get update && apt-get install -y chromium`")
    return {**browser_type_launch_args, "executable_path": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu"]}


@pytest.fixture
def run_id(tenant) -> str:
    with tenant.as_key() as client:
        return client.post("/api/runs", json={"status": "running"}).json()["id"]


def watch(page) -> list[str]:
    ran: list[str] = []
    page.on("dialog", lambda dialog: (ran.append(dialog.message), dialog.dismiss()))
    page.on("console", lambda message: ran.append("console:" + message.text)
            if "pwned" in message.text else None)
    return ran


def test_the_watch_sees_a_script_that_runs(page):
    """The control: the same watch does catch a script when one runs."""
    ran = watch(page)
    page.set_content("<script>console.log('pwned'); alert(1)</script>")
    page.wait_for_timeout(300)
    assert ran


@pytest.mark.parametrize("mime_type,content,name", HOSTILE)
def test_hostile_html_and_svg_download_instead_of_running(page, server, tenant, run_id,
                                                          mime_type, content, name):
    stored = _stored_artifact(server, tenant, run_id, mime_type, content, name)
    ran = watch(page)
    with page.expect_download() as download:
        try:
            page.goto(local(server, stored["url"]))
        except PlaywrightError as exc:  # navigation aborted because it became a download
            assert "ERR_ABORTED" in str(exc) or "Download" in str(exc), exc
    assert download.value.suggested_filename == name
    page.wait_for_timeout(300)
    assert ran == []


def test_an_html_polyglot_png_opens_as_an_image_and_runs_nothing(page, server, tenant, run_id):
    polyglot = media("png", 64) + (b"<html><body><script>document.title='pwned';"
                                   b"console.log('pwned');alert(1)</script></body></html>")
    with tenant.as_key() as client:
        created = upload(client, run_id, "screenshot", polyglot, "poly.html").json()
    ran = watch(page)
    response = page.goto(local(server, created["url"]))
    assert response.status == 200
    assert response.headers["content-type"] == "image/png"
    page.wait_for_timeout(300)
    assert ran == [] and page.title() != "pwned"
    assert page.evaluate("document.contentType") == "image/png"
