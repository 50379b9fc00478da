"""The jobs page in headless Chromium: a start that waits on a server that never answers is
cancelled with its Cancel button; the row ends "cancelled" and the server process is gone."""
from __future__ import annotations

import psutil
from playwright.sync_api import expect

from common.store.services import Endpoint
from tests.support.admin_server import login
from tests.support.env import free_port


def test_cancel_a_waiting_start_from_the_jobs_page(admin_server_factory, page, screenshot):
    server = admin_server_factory(env={"WORDSLAB_VM_STATUS_INTERVAL_SECONDS": "0"})
    with server.sessions().begin() as s:
        s.add(Endpoint(name="stuck", model="", service_type="LLM", server="fastapi", api_type="openai",
                       internal_port=free_port(), command="sleep 3600"))
    login(page, server)
    page.goto(server.url + "/admin/endpoints/")
    page.locator("form[action*='/start'] button").first.click()
    page.goto(server.url + "/admin/jobs/")
    row = page.locator("tr", has_text="endpoint-start")
    expect(row.locator(".job-status")).to_have_text("running", timeout=60_000)
    with server.sessions()() as s:
        pid = s.query(Endpoint).one().pid
    assert pid and psutil.pid_exists(pid)
    screenshot("running")
    row.locator("form.job-cancel button").click()
    expect(page.locator(".alert")).to_contain_text("cancel requested", timeout=60_000)
    expect(page.locator("tr", has_text="endpoint-start").locator(".job-status")).to_have_text(
        "cancelled", timeout=60_000)
    expect(page.locator("tr", has_text="endpoint-start")).to_contain_text("cancelled by the user")
    expect(page.locator("tr", has_text="endpoint-start").locator("form.job-cancel")).to_have_count(0)
    screenshot("cancelled")
    with server.sessions()() as s:
        assert s.query(Endpoint).one().status == "stopped"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
