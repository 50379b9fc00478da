"""Headless Chromium through the front door, as a browser behind Runpod's HTTPS proxy (the proxy's
X-Forwarded-Proto/-Host sent with every request): one login on the admin's page opens Grafana's
dashboards, Prometheus and the docs, and signing out closes the door again."""
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import SCREENSHOTS
from tests.support.door_stack import PASSWORD, start_door_stack, stop_door_stack

pytestmark = pytest.mark.skipif(
    not any(Path(d, "nginx").exists() for d in ("/usr/sbin", "/usr/bin"))
    or not (shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")),
    reason="needs Debian's nginx and prometheus-alertmanager (./dashboard.sh test installs them)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = start_door_stack(tmp_path_factory.mktemp("door-browser"))
    yield stack
    stop_door_stack(stack)


def test_one_login_in_the_browser_opens_the_whole_door(stack, chromium):
    context = chromium.new_context(viewport={"width": 1366, "height": 900}, extra_http_headers={
        "X-Forwarded-Proto": "https", "X-Forwarded-Host": stack["public_host"]})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        door = stack["door"]
        page.goto(door + "/d/wordslab-home?orgId=1")
        expect(page).to_have_url(re.compile(r"/admin/login\?next="))  # sent to the one login
        page.fill("#password", PASSWORD)
        page.click("#login-form button[type=submit]")
        expect(page).to_have_url(door + "/d/wordslab-home?orgId=1")  # back where the user was going
        assert '"user": "admin"' in page.content()  # Grafana saw the door's user
        cookie = next(c for c in context.cookies() if c["name"] == "__Host-wordslab_admin_session")
        assert cookie["secure"] and cookie["httpOnly"]

        page.goto(door + "/prometheus/")
        expect(page).to_have_url(re.compile(r"/prometheus/.+"))
        expect(page).to_have_title(re.compile("Prometheus"))
        page.goto(door + "/docs/index.md")
        expect(page.locator("body")).to_contain_text("The platform's own docs folder.")

        page.goto(door + "/admin/")
        link = page.locator("#grafana-links a").first
        expect(link).to_have_attribute("href", re.compile(re.escape(stack["public"]) + "/d/"))
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "front_door__admin-through-the-door.png"), full_page=True)

        page.click("#logout")
        expect(page).to_have_url(re.compile(r"/admin/login"))
        page.goto(door + "/prometheus/")
        expect(page).to_have_url(re.compile(r"/admin/login\?next="))  # signed out of the whole door
    finally:
        context.close()
