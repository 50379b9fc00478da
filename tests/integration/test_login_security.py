"""Login to OWASP ASVS level 1, against the real admin process: `next` never leads off-site
(nor to a 500), password guessing is slowed by one counter whatever the source address and
however concurrent, and the owner always gets back in (a short wait, or --reset-password)."""
from __future__ import annotations

import http.client
import math
import re
import subprocess
import sys
import threading
import time
from urllib.parse import urlencode, urljoin, urlsplit

import pytest
import requests

from tests.support.admin_http import AdminHttp
from tests.support.admin_server import start_admin
from tests.support.world import REPO_ROOT

pytestmark = pytest.mark.integration

FREE_TRIES = 3
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@pytest.fixture(scope="module")
def shared_admin(tmp_path_factory):
    server = start_admin(tmp_path_factory.mktemp("login") / "vm")
    yield server
    server.stop()


@pytest.fixture
def admin(tmp_path):
    server = start_admin(tmp_path / "vm")
    yield server
    server.stop()


# --- next= never leads off-site -----------------------------------------------------------------

OFF_SITE = [
    "/\t/evil.example/", "/\n/evil.example/", "/\r/evil.example/", "/\r\n/evil.example/",
    "\t//evil.example/", "/\x0b/evil.example/", "/\x0c/evil.example/", "/\x00/evil.example/",
    "/ /evil.example/", "/\u3000/evil.example/", "/\u00a0/evil.example/", "/\x7f/evil.example/",
    "//evil.example/", "///evil.example/", "////evil.example", "/\\evil.example/", "\\\\evil.example",
    "/\\/evil.example/", "https://evil.example/", "http:evil.example", "HTTPS://evil.example",
    "javascript:alert(1)", "data:text/html,x", " //evil.example/", "//evil.example\\@127.0.0.1/",
    "/admin/\r\nSet-Cookie: x=1", "//127.0.0.1.evil.example/", "/%09/evil.example/",
    "\uff0f\uff0fevil.example/", "evil.example", "",
]


@pytest.mark.parametrize("target", OFF_SITE)
def test_login_never_redirects_off_site(shared_admin, target):
    response = AdminHttp(shared_admin, log_in=False).login(next_path=target)
    assert response.status_code == 302, response.text[:300]
    location = response.headers["Location"]
    assert not any(ord(c) < 33 or c == "\\" for c in location), location
    assert urlsplit(urljoin(shared_admin.url + "/login", location)).netloc == urlsplit(shared_admin.url).netloc
    assert not location.startswith("//")


@pytest.mark.parametrize("target, expected", [
    ("/admin/jobs/", "/admin/jobs/"), ("/admin/models/?sort=1", "/admin/models/?sort=1"),
    ("/admin/%2F%2Fx", "/admin/%2F%2Fx"),
])
def test_login_returns_to_local_pages(shared_admin, target, expected):
    response = AdminHttp(shared_admin, log_in=False).login(next_path=target)
    assert response.status_code == 302 and response.headers["Location"] == expected


def test_raw_control_characters_in_next_never_give_a_500(shared_admin):
    for raw in ("%0a", "%0d", "%0d%0a", "%00", "%09", "%5c"):
        web = AdminHttp(shared_admin, log_in=False)
        token = web._token("/login")
        response = web.http.post(f"{shared_admin.url}/login?next=/{raw}/evil.example/",
                                 data={"password": shared_admin.password, "csrf_token": token},
                                 allow_redirects=False, timeout=30)
        assert response.status_code == 302 and response.headers["Location"] == "/admin/", raw


# --- one guess counter, claimed before the check -----------------------------------------------

def _login_from(server, source: str, password: str) -> int:
    """Log in from another loopback address (its own session and CSRF token); the status."""
    port = urlsplit(server.url).port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        conn.request("GET", "/login")
        page = conn.getresponse()
        cookie = page.getheader("Set-Cookie").split(";")[0]
        token = _CSRF.search(page.read().decode()).group(1)
        body = urlencode({"password": password, "csrf_token": token})
        conn.request("POST", "/login", body=body, headers={
            "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        answer = conn.getresponse()
        answer.read()
        return answer.status
    finally:
        conn.close()


def test_forty_concurrent_guesses_get_only_the_allowed_checks(admin):
    clients = [AdminHttp(admin, log_in=False) for _ in range(40)]
    tokens = [c._token("/login") for c in clients]
    start = threading.Barrier(40)
    statuses: list[int] = []

    def guess(client, token):
        start.wait()
        response = client.http.post(admin.url + "/login", data={"password": "guess", "csrf_token": token},
                                    allow_redirects=False, timeout=60)
        statuses.append(response.status_code)

    began = time.monotonic()
    threads = [threading.Thread(target=guess, args=pair) for pair in zip(clients, tokens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    checked = statuses.count(401)
    # 3 free checks, then one more per doubling wait (1 s, 2 s, 4 s...) that fits in the burst.
    assert FREE_TRIES <= checked <= FREE_TRIES + int(math.log2(elapsed + 1)), (checked, elapsed)
    assert statuses.count(429) == 40 - checked


def test_other_loopback_addresses_get_no_fresh_tries(admin):
    for _ in range(FREE_TRIES):
        assert _login_from(admin, "127.0.0.1", "guess") == 401
    for last in range(2, 8):
        assert _login_from(admin, f"127.0.0.{last}", "guess") == 429
        assert _login_from(admin, f"127.0.0.{last}", admin.password) == 429


def test_the_owner_gets_in_after_wrong_passwords_with_a_short_wait(admin):
    web = AdminHttp(admin, log_in=False)
    waits = []
    for _ in range(5):
        response = web.login("guess")
        while response.status_code == 429:
            waits.append(int(response.headers["Retry-After"]))
            time.sleep(waits[-1])
            response = web.login("guess")
        assert response.status_code == 401
    response = web.login()
    while response.status_code == 429:
        waits.append(int(response.headers["Retry-After"]))
        assert waits[-1] <= 60
        time.sleep(waits[-1])
        response = web.login()
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    assert waits == [1, 2, 4]


def test_reset_password_sets_a_new_one_shown_once(tmp_path):
    first = start_admin(tmp_path / "vm")
    first.stop()
    server = start_admin(tmp_path / "vm", env={"WORDSLAB_DASHBOARD_ADMIN_PASSWORD": ""},
                         args=("--reset-password",))
    try:
        shown = re.search(r"generated admin password \(shown once\): (\S+)", server.log())
        assert shown, server.log()
        web = AdminHttp(server, log_in=False)
        assert web.login(first.password).status_code == 401  # the old one is gone
        assert web.login(shown.group(1)).status_code == 302
    finally:
        server.stop()


def test_signing_out_ends_the_session_for_every_copy_of_its_cookie(admin):
    """The cookie is only signed: a copy (another profile, a synced cookie jar) must not outlive
    the sign-out."""
    web, other_browser = AdminHttp(admin), AdminHttp(admin)
    copy = requests.Session()
    copy.cookies.update(web.http.cookies)
    assert copy.get(admin.url + "/admin/auth/check", timeout=30).status_code == 200
    assert web.post("/admin/logout", allow_redirects=False).status_code == 302
    assert copy.get(admin.url + "/admin/auth/check", timeout=30).status_code == 401
    assert copy.get(admin.url + "/admin/jobs/", allow_redirects=False, timeout=30).status_code == 302
    assert other_browser.get("/admin/auth/check").status_code == 200  # its own session is its own


def test_a_reset_run_beside_the_running_admin_still_signs_every_browser_out(admin):
    web = AdminHttp(admin)
    # Forgot to stop the admin first: the reset stores the new password, then cannot listen.
    reset = subprocess.run([sys.executable, "-m", "admin", "--reset-password", "--db", str(admin.db_path),
                            "--listen-address", admin.url.removeprefix("http://")],
                           env={**admin.env, "WORDSLAB_DASHBOARD_ADMIN_PASSWORD": ""}, cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=120)
    shown = re.search(r"generated admin password \(shown once\): (\S+)", reset.stdout)
    assert reset.returncode == 1 and shown, reset.stdout + reset.stderr
    assert web.get("/admin/auth/check").status_code == 401
    assert web.get("/admin/jobs/", allow_redirects=False).status_code == 302
    assert AdminHttp(admin, log_in=False).login(shown.group(1)).status_code == 302


def test_readme_says_how_the_lock_out_works_and_how_to_reset_the_password():
    readme = (REPO_ROOT / "README.md").read_text()
    security = readme[readme.index("## Security"):]
    security = security[:security.index("\n## ", 1)]
    assert "wordslab-admin --reset-password" in security
    assert "Retry-After" in security and "minute" in security


# --- odd header bytes never give a 500 ----------------------------------------------------------

ODD_HEADER_VALUES = [b"Bearer \xff\xfe", "Bearer caf\u00e9".encode(), b"\xc3\x28", b"Bearer " + b"\x80" * 4096]


@pytest.mark.parametrize("value", ODD_HEADER_VALUES)
@pytest.mark.parametrize("method, path, header", [
    ("POST", "/alerts-relay/1", "Authorization"),      # Alertmanager's webhook: a bearer token
    ("GET", "/admin/auth/check", "Cookie"),            # the door's question
    ("GET", "/admin/auth/check", "X-Forwarded-For"),
    ("GET", "/admin/auth/login-redirect", "X-Forwarded-Host"),
    ("POST", "/login", "X-CSRFToken"),
    ("GET", "/admin/", "Accept-Language"),
])
def test_odd_bytes_in_a_header_are_refused_not_a_500(shared_admin, method, path, header, value):
    port = int(urlsplit(shared_admin.url).port)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest(method, path)
    conn.putheader(header, value)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", "2")
    conn.endheaders(b"{}")
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status < 500, (response.status, shared_admin.log()[-2000:])
