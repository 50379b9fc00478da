"""The admin foundation in headless Chromium and over real HTTP: login, live jobs page, CSRF, logout."""
import re

import requests
from playwright.sync_api import expect
from sqlalchemy import select

from common.store.jobs import Job, utcnow


def test_login_jobs_progress_and_logout(admin_server, page, screenshot):
    url = admin_server.url
    page.goto(url + "/admin/jobs/")
    expect(page).to_have_url(re.compile(r"/login\?next="))  # not logged in: sent to the login page
    page.fill("#password", "not-the-password")
    page.click("#login-form button[type=submit]")
    expect(page.locator(".alert-danger")).to_have_text("Wrong password.")
    screenshot("wrong-password")

    page.fill("#password", admin_server.password)
    page.click("#login-form button[type=submit]")
    expect(page).to_have_url(url + "/admin/jobs/")  # back to the page asked for
    # Grafana behind the front door, at the platform's public URL for DASHBOARD_PORT.
    expect(page.locator("a.grafana-link")).to_have_attribute("href", "http://127.0.0.1:8888/d/wordslab-devenv")

    # A job appears in the DB (as a clone form would create it): the open page picks it up.
    sessions = admin_server.sessions()
    with sessions.begin() as s:
        job = Job(kind="clone", target="https://example.org/demo.git", status="running", progress=0.3,
                  bytes_done=3 << 20, bytes_total=10 << 20, message="receiving objects", created_at=utcnow(),
                  started_at=utcnow())
        s.add(job)
    row = page.locator(f'.wl-job[data-job-id="{job.id}"]')
    expect(row.locator(".wl-job-text")).to_have_text("30 % · 3.0 MiB / 10.0 MiB")
    screenshot("job-running")

    with sessions.begin() as s:  # progress moves: the bar follows without a page reload
        s.get(Job, job.id).progress = 0.75
    expect(row.locator(".progress-bar")).to_have_attribute("aria-valuenow", "75")

    with sessions.begin() as s:
        done = s.get(Job, job.id)
        done.status, done.progress, done.message, done.finished_at = "done", 1.0, "cloned into demo", utcnow()
    expect(page.locator("td.col-status .job-status")).to_have_text("done")
    expect(page.locator("td.col-message")).to_have_text("cloned into demo")
    screenshot("job-done")

    page.click("#logout")
    expect(page).to_have_url(url + "/admin/login")
    page.goto(url + "/admin/jobs/")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_index_shows_running_jobs_and_grafana_links(admin_server, logged_in_page):
    with admin_server.sessions().begin() as s:
        s.add(Job(kind="download", target="ollama/llama3", status="running", progress=0.5, created_at=utcnow()))
    logged_in_page.goto(admin_server.url + "/admin/")
    expect(logged_in_page.locator(".wl-job .wl-job-text")).to_have_text("50 %")
    links = logged_in_page.locator("#grafana-links a")
    expect(links).to_have_count(4)
    expect(links.first).to_have_attribute("href", "http://127.0.0.1:8888/d/wordslab-home")


def _logged_in_http(server) -> requests.Session:
    http = requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]+)"', http.get(server.url + "/login").text).group(1)
    response = http.post(server.url + "/login", data={"password": server.password, "csrf_token": token},
                         allow_redirects=False)
    assert response.status_code == 302
    return http


def test_delete_without_csrf_token_over_http_is_refused(admin_server):
    sessions = admin_server.sessions()
    with sessions.begin() as s:
        job = Job(kind="clone", target="old", status="done", progress=1.0, created_at=utcnow())
        s.add(job)
    http = _logged_in_http(admin_server)
    page = http.get(admin_server.url + "/admin/jobs/").text
    refused = http.post(admin_server.url + "/admin/jobs/delete/", data={"id": job.id}, allow_redirects=False)
    assert refused.status_code == 400
    refused = http.post(admin_server.url + "/admin/jobs/action/", data={"action": "delete", "rowid": job.id},
                        allow_redirects=False)
    assert refused.status_code == 400
    with sessions() as s:
        assert s.get(Job, job.id) is not None
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    deleted = http.post(admin_server.url + "/admin/jobs/delete/", data={"id": job.id, "csrf_token": token},
                        allow_redirects=False)
    assert deleted.status_code == 302
    with sessions() as s:
        assert s.scalars(select(Job)).all() == []

