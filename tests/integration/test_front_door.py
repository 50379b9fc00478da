"""The front door end to end: `wordslab-dashboard up` runs the real nginx (Debian's package) in
front of the real admin, the real Prometheus and a stand-in Grafana (the fake tarball's server,
installed through the real install path, recording the auth-proxy header it gets). The test is a
browser behind Runpod's HTTPS proxy: X-Forwarded-Proto https, the public host in
X-Forwarded-Host, a Host rewritten to the door's loopback address."""
import base64
import hashlib
import json
import os
import re
import shutil
import socket
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.support.door_stack import PASSWORD, start_door_stack, stop_door_stack

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not shutil.which("prometheus-alertmanager") and not shutil.which("alertmanager"),
                       reason="needs Debian's prometheus-alertmanager (./dashboard.sh test installs it)"),
    pytest.mark.skipif(not any(Path(d, "nginx").exists() for d in ("/usr/sbin", "/usr/bin")),
                       reason="needs Debian's nginx (./dashboard.sh test installs it)"),
]


class Browser:
    """Cookies kept by hand: requests will not send a Secure cookie over the door's plain HTTP,
    which the platform's HTTPS proxy would do."""

    def __init__(self, door: str, public_host: str):
        self.door, self.cookies = door, {}
        self.proxy_headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": public_host,
                              "Host": urlsplit(door).netloc}
        self.set_cookie_lines: list[str] = []
        self.foreign_cookies = ""  # set by another host for the whole domain: sent before ours

    def request(self, method: str, path: str, headers: dict | None = None, **kwargs) -> requests.Response:
        cookie = "; ".join([self.foreign_cookies] * bool(self.foreign_cookies) +
                           [f"{k}={v}" for k, v in self.cookies.items()])
        all_headers = {**self.proxy_headers, **({"Cookie": cookie} if cookie else {}), **(headers or {})}
        response = requests.request(method, self.door + path, headers=all_headers, allow_redirects=False,
                                    timeout=10, **kwargs)
        for line in response.raw.headers.getlist("Set-Cookie"):
            self.set_cookie_lines.append(line)
            name, _, rest = line.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return response

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def login(self, next_path: str = "/") -> requests.Response:
        page = self.get(f"/admin/login?next={next_path}")
        token = CSRF.search(page.text).group(1)
        return self.request("POST", f"/admin/login?next={next_path}",
                            data={"password": PASSWORD, "csrf_token": token},
                            headers={"Origin": f"https://{self.proxy_headers['X-Forwarded-Host']}"})


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = start_door_stack(tmp_path_factory.mktemp("door"))
    yield stack
    output = stop_door_stack(stack)
    assert f"open the dashboard at {stack['public']}/" in output


def _grafana_requests(stack) -> list[dict]:
    log = stack["grafana_log"]
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


GUARDED = ["/", "/d/wordslab-machine?orgId=1&from=now-1h", "/api/search", "/prometheus/",
           "/prometheus/api/v1/query?query=up", "/prometheus/classic/graph", "/alertmanager/",
           "/alertmanager/api/v2/status", "/docs/", "/docs/index.md"]


def test_unauthenticated_requests_are_sent_to_the_login_and_reach_nothing(stack):
    browser = Browser(stack["door"], stack["public_host"])
    seen_before = len(_grafana_requests(stack))
    for path in GUARDED:
        response = browser.get(path, headers={"X-WEBAUTH-USER": "admin"})  # a forged header opens nothing
        assert response.status_code == 302, path
        location = urlsplit(response.headers["Location"])
        assert location.path == "/admin/login" and not location.netloc, path  # relative: any host
        assert parse_qs(location.query)["next"] == [path]  # back to the whole URL after login
    for path in ("/admin/", "/admin/jobs/"):  # the admin guards its own pages
        response = browser.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/admin/login?next=")
    assert browser.get("/_wordslab/auth").status_code == 404  # nginx-internal
    assert len(_grafana_requests(stack)) == seen_before  # Grafana never saw one of them
    assert browser.request("POST", "/api/dashboards/db", json={}).status_code == 302


def test_one_login_opens_every_path_with_secure_cookies(stack):
    browser = Browser(stack["door"], stack["public_host"])
    response = browser.login("/d/wordslab-machine?orgId=1")
    assert response.status_code == 302 and response.headers["Location"] == "/d/wordslab-machine?orgId=1"
    session_cookies = [line for line in browser.set_cookie_lines if line.startswith("__Host-wordslab_admin_session=")]
    assert session_cookies and all("; Secure" in line and "HttpOnly" in line and "; Path=/" in line
                                   and "Domain" not in line for line in session_cookies)
    grafana = browser.get("/d/wordslab-machine?orgId=1")
    assert grafana.status_code == 200 and grafana.json() == {
        "fake": "grafana", "path": "/d/wordslab-machine?orgId=1", "user": "admin"}
    query = browser.get("/prometheus/api/v1/query?query=up")
    assert query.status_code == 200 and query.json()["status"] == "success"
    flags = browser.get("/prometheus/api/v1/status/flags").json()["data"]
    assert flags["web.external-url"] == stack["public"] + "/prometheus/"
    # Prometheus' UI sends the browser on under its external path, where the door serves it.
    home = browser.get("/prometheus/")
    assert home.status_code == 302
    ui_path = urlsplit(home.headers["Location"]).path
    assert ui_path.startswith("/prometheus/") and ui_path != "/prometheus/"
    ui = browser.get(ui_path)
    assert ui.status_code == 200 and "<html" in ui.text.lower()
    alerts = browser.get("/alertmanager/api/v2/status")
    assert alerts.status_code == 200 and alerts.json()["config"]["original"]
    assert browser.get("/alertmanager/").status_code == 200
    docs = browser.get("/docs/index.md")
    assert docs.status_code == 200 and "The platform's own docs folder." in docs.text
    assert browser.get("/docs").status_code == 301 and browser.get("/docs/").status_code == 200
    assert browser.get("/admin/").status_code == 200


def test_a_client_sent_auth_proxy_header_is_replaced_by_the_door(stack):
    browser = Browser(stack["door"], stack["public_host"])
    assert browser.login().status_code == 302
    forged = {"X-WEBAUTH-USER": "intruder", "x-webauth-user": "intruder2", "X_WEBAUTH_USER": "intruder3"}
    response = browser.get("/api/user", headers=forged)
    assert response.status_code == 200 and response.json()["user"] == "admin"
    last = [r for r in _grafana_requests(stack) if r["path"] == "/api/user"][-1]
    assert last["users"] == ["admin"]


def test_grafana_runs_in_auth_proxy_mode_without_anonymous_access_or_default_password(stack):
    browser = Browser(stack["door"], stack["public_host"])
    browser.login()
    browser.get("/api/health")
    grafana_env = _grafana_requests(stack)[-1]["env"]
    assert grafana_env["GF_AUTH_PROXY_ENABLED"] == "true"
    assert grafana_env["GF_AUTH_PROXY_HEADER_NAME"] == "X-WEBAUTH-USER"
    assert grafana_env["GF_AUTH_PROXY_WHITELIST"] == "127.0.0.1, ::1"
    assert grafana_env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana_env["GF_AUTH_BASIC_ENABLED"] == "false" and grafana_env["GF_AUTH_DISABLE_LOGIN_FORM"] == "true"
    password_file = Path(grafana_env["GF_SECURITY_ADMIN_PASSWORD__FILE"])
    assert password_file.stat().st_mode & 0o077 == 0  # owner-only
    password = password_file.read_text()
    assert password != "admin" and len(password) >= 24 and "GF_SECURITY_ADMIN_PASSWORD" not in grafana_env
    assert grafana_env["GF_SERVER_ROOT_URL"] == stack["public"] + "/"
    assert grafana_env["GF_SECURITY_COOKIE_SECURE"] == "true"
    assert grafana_env["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"  # only the door is outside loopback


def test_csrf_keeps_working_when_the_proxy_rewrites_host(stack):
    browser = Browser(stack["door"], stack["public_host"])
    browser.proxy_headers["Host"] = "localhost"  # what a platform proxy may send instead
    assert browser.login("/admin/").status_code == 302
    page = browser.get("/admin/jobs/")
    assert page.status_code == 200
    token = CSRF.search(page.text).group(1)
    forged = browser.request("POST", "/admin/logout", data={"csrf_token": "forged"})
    assert forged.status_code == 400
    browser.proxy_headers["X-Forwarded-Host"] = "localhost:8888"  # rewritten differently this time
    out = browser.request("POST", "/admin/logout", data={"csrf_token": token},
                          headers={"Origin": stack["public"]})
    assert out.status_code == 302
    # Signed out of the admin is signed out of the door.
    assert browser.get("/").status_code == 302 and browser.get("/prometheus/").status_code == 302


def test_admin_pages_link_to_the_public_url_never_to_loopback(stack):
    browser = Browser(stack["door"], stack["public_host"])
    browser.login("/admin/")
    index = browser.get("/admin/").text
    assert f'href="{stack["public"]}/d/wordslab-machine"' in index
    assert f"127.0.0.1:{stack['ports']['grafana']}" not in index and "127.0.0.1:3000" not in index
    login_page = Browser(stack["door"], stack["public_host"]).get("/admin/login").text
    assert f'href="{stack["public"]}"' in login_page or f'href="{stack["public"]}/"' in login_page


def test_grafana_sees_no_origin_on_same_origin_requests_so_a_rewritten_host_breaks_no_query(stack):
    browser = Browser(stack["door"], stack["public_host"])
    browser.login()
    browser.proxy_headers.pop("X-Forwarded-Host")
    browser.proxy_headers["Host"] = "localhost"  # rewritten, and the public host nowhere
    same = browser.request("POST", "/api/ds/query", json={},
                           headers={"Origin": stack["public"], "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200
    seen = [r for r in _grafana_requests(stack) if r["path"] == "/api/ds/query"][-1]
    assert seen["origin"] is None and seen["host"] == "localhost" and seen["user"] == "admin"
    # Anything the browser does not mark same-origin keeps its Origin, for Grafana to check (a
    # write it marks cross-site or same-site never passes the door at all).
    other = browser.request("POST", "/api/ds/query", json={}, headers={"Origin": "https://evil.example"})
    assert other.status_code == 200
    assert [r for r in _grafana_requests(stack) if r["path"] == "/api/ds/query"][-1]["origin"] == "https://evil.example"


def _websocket_handshake(stack, path: str, cookies: dict) -> tuple[int, dict, str]:
    """A browser's WebSocket opening handshake (RFC 6455) through the door, behind the platform's
    proxy; returns the answer's status, headers (lower-case names) and the expected accept key."""
    key = base64.b64encode(os.urandom(16)).decode()
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    lines = [f"GET {path} HTTP/1.1", f"Host: {urlsplit(stack['door']).netloc}",
             f"X-Forwarded-Host: {stack['public_host']}", "X-Forwarded-Proto: https",
             "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13",
             f"Sec-WebSocket-Key: {key}", f"Origin: {stack['public']}", "Sec-Fetch-Site: same-origin"]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    with socket.create_connection(("127.0.0.1", stack["ports"]["door"]), timeout=10) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
    status_line, *header_lines = head.split(b"\r\n\r\n")[0].decode().split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in header_lines)}
    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    return int(status_line.split()[1]), headers, accept.decode()


def test_grafana_live_websocket_opens_for_the_signed_in_user_and_sends_others_to_the_login(stack):
    # Every Grafana page opens /api/live/ws; the door must ask the admin without the upgrade.
    status, headers, _ = _websocket_handshake(stack, "/api/live/ws", {})
    assert status == 302 and headers["location"].startswith("/admin/login?next=")
    browser = Browser(stack["door"], stack["public_host"])
    browser.login()
    status, headers, accept = _websocket_handshake(stack, "/api/live/ws", browser.cookies)
    assert status == 101 and headers["sec-websocket-accept"] == accept
    seen = [r for r in _grafana_requests(stack) if r["path"] == "/api/live/ws"]
    assert len(seen) == 1 and seen[0]["upgrade"] == "websocket" and seen[0]["users"] == ["admin"]


def test_writes_from_another_sites_page_never_pass_the_door(stack):
    """SameSite=Lax still sends the door's cookie from a same-site page: another pod on
    proxy.runpod.net (no public suffix), another port of the machine. Alertmanager's v1 API takes
    a text/plain body (a form needs no CORS preflight for it), and nothing behind the door but the
    admin checks a CSRF token."""
    browser = Browser(stack["door"], stack["public_host"])
    browser.login()
    other_pod = f"https://attacker-{stack['ports']['door']}.proxy.runpod.net"
    silence = {"matchers": [{"name": "alertname", "value": ".+", "isRegex": True}],
               "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z",
               "createdBy": "attacker", "comment": "silence everything"}
    grafana_before = len(_grafana_requests(stack))
    for site in ("same-site", "cross-site"):
        for path in ("/alertmanager/api/v1/silences", "/alertmanager/api/v1/alerts", "/api/dashboards/db",
                     "/prometheus/api/v1/query", "/docs/index.md", "/admin/logout"):
            response = browser.request("POST", path, data=json.dumps(silence),
                                       headers={"Content-Type": "text/plain", "Origin": other_pod,
                                                "Sec-Fetch-Site": site})
            assert response.status_code == 403, (site, path)
    assert len(_grafana_requests(stack)) == grafana_before
    silences = browser.get("/alertmanager/api/v2/silences").json()
    assert not [s for s in silences if s["createdBy"] == "attacker"]
    assert browser.get("/admin/").status_code == 200  # the forged logout did nothing
    # A link from another site still opens a page; the door's own pages and non-browser clients write.
    assert browser.get("/prometheus/api/v1/query?query=up", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200
    own = {**silence, "createdBy": "me", "matchers": [{"name": "alertname", "value": "Test", "isRegex": False}]}
    created = browser.request("POST", "/alertmanager/api/v2/silences", json=own,
                              headers={"Origin": stack["public"], "Sec-Fetch-Site": "same-origin"})
    assert created.status_code == 200
    silence_id = created.json()["silenceID"]
    assert browser.request("DELETE", f"/alertmanager/api/v2/silence/{silence_id}").status_code == 200


def test_after_signing_out_a_copy_of_the_cookie_opens_nothing_behind_the_door(stack):
    browser = Browser(stack["door"], stack["public_host"])
    browser.login()
    copy = Browser(stack["door"], stack["public_host"])
    copy.cookies = dict(browser.cookies)
    assert copy.get("/prometheus/api/v1/query?query=up").status_code == 200
    token = CSRF.search(browser.get("/admin/jobs/").text).group(1)
    assert browser.request("POST", "/admin/logout", data={"csrf_token": token},
                           headers={"Origin": stack["public"], "Sec-Fetch-Site": "same-origin"}).status_code == 302
    seen_before = len(_grafana_requests(stack))
    for path in ("/", "/prometheus/api/v1/query?query=up", "/alertmanager/api/v2/status", "/docs/", "/admin/"):
        response = copy.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/admin/login"), path
    assert len(_grafana_requests(stack)) == seen_before


def test_up_with_the_door_on_an_ipv6_address_opens_the_same_door(tmp_path):
    # `--door-host ::1` (or WORDSLAB_DASHBOARD_LISTEN_HOST=::) once made nginx refuse its config,
    # and its exit stopped the whole stack.
    ipv6 = start_door_stack(tmp_path, door_host="::1")
    try:
        assert ipv6["door"].startswith("http://[::1]:")
        browser = Browser(ipv6["door"], ipv6["public_host"])
        assert browser.get("/prometheus/api/v1/query?query=up").status_code == 302
        assert browser.login("/prometheus/api/v1/query?query=up").status_code == 302
        assert browser.get("/prometheus/api/v1/query?query=up").json()["status"] == "success"
    finally:
        output = stop_door_stack(ipv6)
    assert "door        pid" in output and "exited with code" not in output


def test_pages_behind_the_door_cannot_be_framed_by_another_site(stack):
    """A same-site page (another pod on proxy.runpod.net) gets the Lax cookie inside a frame too:
    Alertmanager's prefilled silence form under a decoy button is one click from silencing all."""
    browser = Browser(stack["door"], stack["public_host"])
    browser.login()
    ui_path = urlsplit(browser.get("/prometheus/").headers["Location"]).path
    for path in (ui_path, "/prometheus/api/v1/query?query=up", "/alertmanager/", "/docs/", "/docs/index.md"):
        response = browser.get(path)
        assert response.status_code == 200, path
        assert response.headers.get("X-Frame-Options") == "SAMEORIGIN", path
    assert browser.get("/admin/").headers["X-Frame-Options"] == "DENY"  # the admin's own, kept


def test_a_session_cookie_another_pod_tosses_for_the_whole_domain_does_not_break_the_login(stack):
    """Another pod's page on proxy.runpod.net may set `wordslab_admin_session` with
    Domain=proxy.runpod.net; browsers send it before ours. Over HTTPS ours is `__Host-` named,
    which no other host can set."""
    browser = Browser(stack["door"], stack["public_host"])
    browser.foreign_cookies = "wordslab_admin_session=tossed"
    response = browser.login("/prometheus/api/v1/query?query=up")
    assert response.status_code == 302, response.text
    assert browser.get("/prometheus/api/v1/query?query=up").json()["status"] == "success"
