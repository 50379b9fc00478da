"""The admin's side of the front door: the auth check nginx asks, the login redirect, forwarded
headers believed from the local proxy only, Secure cookies over HTTPS, one password for all."""
import pytest

from admin.app import create_app
from common.config import Settings
from tests.support.admin import PASSWORD, csrf_from, logged_in_client, make_admin_app

HTTPS = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "abc123-8888.proxy.runpod.net"}


@pytest.fixture
def app(vm_env):
    return make_admin_app(vm_env, view_modules=("jobs",))


def _session_cookie_header(response) -> str:
    cookies = [v for k, v in response.headers.items() if k == "Set-Cookie" and "wordslab_admin_session" in v]
    assert cookies, "no session cookie set"
    return cookies[-1]


def test_auth_check_answers_401_then_200_with_the_user(app):
    client = app.test_client()
    refused = client.get("/admin/auth/check")
    assert refused.status_code == 401 and "X-Wordslab-User" not in refused.headers
    assert refused.headers["Cache-Control"] == "no-store"
    client = logged_in_client(app)
    allowed = client.get("/admin/auth/check")
    assert allowed.status_code == 200 and allowed.headers["X-Wordslab-User"] == "admin"


def test_login_redirect_keeps_the_whole_asked_path(app):
    client = app.test_client()
    asked = "/d/wordslab-machine?orgId=1&from=now-1h"
    response = client.get("/admin/auth/login-redirect", headers={"X-Original-URI": asked})
    assert response.status_code == 302
    assert response.location == "/admin/login?next=/d/wordslab-machine?orgId%3D1%26from%3Dnow-1h"
    # After the login, back where the user was going, query included.
    token = csrf_from(client.get(response.location).text)
    done = client.post(response.location, data={"password": PASSWORD, "csrf_token": token})
    assert done.status_code == 302 and done.location == asked


@pytest.mark.parametrize("asked", ["https://evil.example/", "//evil.example/x", "/admin/auth/check", ""])
def test_login_redirect_never_leaves_the_site_or_loops(app, asked):
    response = app.test_client().get("/admin/auth/login-redirect", headers={"X-Original-URI": asked})
    assert response.status_code == 302
    assert "evil" not in response.location and "auth" not in response.location.split("next=")[-1]


def test_login_over_the_https_proxy_gets_a_secure_cookie_and_plain_http_does_not(app):
    client = app.test_client()
    token = csrf_from(client.get("/admin/login", headers=HTTPS).text)
    secure = client.post("/admin/login", data={"password": PASSWORD, "csrf_token": token}, headers=HTTPS)
    assert secure.status_code == 302 and "; Secure" in _session_cookie_header(secure)
    plain = app.test_client()
    token = csrf_from(plain.get("/admin/login").text)
    response = plain.post("/admin/login", data={"password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302 and "Secure" not in _session_cookie_header(response)


def test_forwarded_headers_from_a_remote_peer_are_ignored(app):
    client = app.test_client()
    remote = {"REMOTE_ADDR": "198.51.100.7"}
    token = csrf_from(client.get("/admin/login", headers=HTTPS, environ_base=remote).text)
    response = client.post("/admin/login", data={"password": PASSWORD, "csrf_token": token},
                           headers=HTTPS, environ_base=remote)
    assert response.status_code == 302 and "Secure" not in _session_cookie_header(response)


def test_csrf_holds_when_the_proxy_rewrites_host(app):
    """Runpod-like: the browser talks to the public host; the admin sees another Host (and the
    public one, or none, in X-Forwarded-Host) and an Origin that matches neither. The token is
    bound to the session, not to a host: it still checks out, and a forged one does not."""
    client = app.test_client()
    public = "https://abc123-8888.proxy.runpod.net"
    seen = {"Host": "127.0.0.1:8888", "Origin": public, "Referer": public + "/admin/login"}
    token = csrf_from(client.get("/admin/login", headers={**seen, "X-Forwarded-Host": "abc123-8888.proxy.runpod.net"}).text)
    response = client.post("/admin/login", data={"password": PASSWORD, "csrf_token": token}, headers=seen)
    assert response.status_code == 302 and response.location == "/admin/"  # relative: any host
    forged = client.post("/admin/logout", data={"csrf_token": "forged"}, headers=seen)
    assert forged.status_code == 400
    page = client.get("/admin/jobs/", headers=seen)
    assert page.status_code == 200
    good = client.post("/admin/logout", data={"csrf_token": csrf_from(page.text)},
                       headers={**seen, "X-Forwarded-Host": "localhost:8888"})
    assert good.status_code == 302


def test_a_new_password_signs_every_browser_out(vm_env):
    settings = Settings.from_env(vm_env)
    app = create_app(settings, password=PASSWORD, view_modules=("jobs",))
    client = logged_in_client(app)
    cookie = client.get_cookie("wordslab_admin_session").value
    # Same password on a restart: sessions survive.
    same = create_app(settings, password=PASSWORD, view_modules=("jobs",)).test_client()
    same.set_cookie("wordslab_admin_session", cookie)
    assert same.get("/admin/auth/check").status_code == 200
    # A reset (generated password) or a changed one: the old session no longer opens the door.
    for kwargs in ({"password": None, "reset_password": True}, {"password": "another-password"}):
        fresh = create_app(settings, view_modules=("jobs",), **kwargs).test_client()
        fresh.set_cookie("wordslab_admin_session", cookie)
        assert fresh.get("/admin/auth/check").status_code == 401
