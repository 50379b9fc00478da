"""Admin foundation security: login, CSRF on every form and action, masking, headers, links."""
import re
import subprocess
import sys

import pytest
from flask import redirect, request, url_for
from flask_admin import expose

from admin.cli import DEFAULT_LISTEN, listen_host_port
from admin.security import SecureBaseView, confirmed, mask_secret, require_csrf
from common.store.jobs import Job, utcnow
from tests.support.admin import PASSWORD, csrf_from, logged_in_client, make_admin_app
from tests.support.world import REPO_ROOT


@pytest.fixture
def app(vm_env):
    return make_admin_app(vm_env, view_modules=("jobs",), grafana_url="http://grafana.test:3000/")


def _add_done_jobs(app, count=2) -> list[int]:
    with app.extensions["wordslab"].sessions.begin() as s:
        jobs = [Job(kind="clone", target=f"repo-{i}", status="done", progress=1.0, created_at=utcnow())
                for i in range(count)]
        s.add_all(jobs)
        s.flush()
        return [j.id for j in jobs]


def _job_ids(app) -> set[int]:
    with app.extensions["wordslab"].sessions() as s:
        return {j.id for j in s.query(Job)}


# --- login -----------------------------------------------------------------------------------

def test_pages_need_login(app):
    client = app.test_client()
    for url in ("/admin/", "/admin/jobs/"):
        response = client.get(url)
        assert response.status_code == 302 and response.location.startswith("/admin/login?next=")


def test_wrong_password_is_refused(app):
    client = app.test_client()
    token = csrf_from(client.get("/login").text)
    response = client.post("/login", data={"password": "guess", "csrf_token": token})
    assert response.status_code == 401 and "Wrong password." in response.text
    assert client.get("/admin/jobs/").status_code == 302


def test_repeated_wrong_passwords_make_the_next_check_wait(app):
    client = app.test_client()
    token = csrf_from(client.get("/login").text)
    for _ in range(3):  # the free tries
        assert client.post("/login", data={"password": "guess", "csrf_token": token}).status_code == 401
    # Even the right password is not checked during the wait: guessing gains nothing.
    response = client.post("/login", data={"password": PASSWORD, "csrf_token": token})
    assert response.status_code == 429 and "Too many wrong passwords" in response.text
    assert "wordslab-admin --reset-password" in response.text
    assert response.headers["Retry-After"] == "1"
    assert client.get("/admin/jobs/").status_code == 302


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fail(throttle) -> None:
    assert throttle.acquire() == 0
    throttle.release(False)


def test_login_throttle_doubles_the_wait_up_to_a_minute():
    from admin.login_throttle import LoginThrottle
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    waits = []
    for _ in range(12):
        _fail(throttle)
        waits.append(throttle.retry_after())
        clock.now += waits[-1]
    assert waits == [0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60, 60]


def test_login_throttle_claims_each_check_before_it_runs():
    """40 guesses at once (none finished yet): only the free tries are checked."""
    from admin.login_throttle import LoginThrottle
    throttle = LoginThrottle(clock=FakeClock())
    granted = [throttle.acquire() == 0 for _ in range(40)]
    assert granted.count(True) == 3 and granted[:3] == [True] * 3
    for _ in range(3):
        throttle.release(False)
    assert throttle.acquire() == 1  # the 4th failure's wait, for everyone


def test_login_throttle_resets_on_success_and_after_a_quiet_while():
    from admin.login_throttle import LoginThrottle
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(5):
        _fail(throttle)
        clock.now += throttle.retry_after()
    assert throttle.acquire() == 0
    throttle.release(True)  # the owner's right password
    assert throttle.retry_after() == 0
    for _ in range(5):
        _fail(throttle)
        clock.now += throttle.retry_after()
    clock.now += 900
    for _ in range(3):  # free tries again after 15 quiet minutes
        _fail(throttle)


def test_login_then_logout(app):
    client = logged_in_client(app)
    page = client.get("/admin/jobs/")
    assert page.status_code == 200
    response = client.post("/logout", data={"csrf_token": csrf_from(page.text)})
    assert response.status_code == 302 and response.location == "/admin/login"
    assert client.get("/admin/jobs/").status_code == 302


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_login_never_redirects_off_site(app, target):
    client = app.test_client()
    token = csrf_from(client.get("/login").text)
    response = client.post(f"/login?next={target}", data={"password": PASSWORD, "csrf_token": token})
    assert response.location == "/admin/"


def test_login_redirects_back_to_the_page_asked_for(app):
    client = app.test_client()
    token = csrf_from(client.get("/login").text)
    response = client.post("/login?next=/admin/jobs/", data={"password": PASSWORD, "csrf_token": token})
    assert response.location == "/admin/jobs/"


def test_password_is_generated_once_and_works(vm_env):
    from admin.app import create_app
    from common.config import Settings
    first = create_app(Settings.from_env(vm_env), view_modules=("jobs",))
    generated = first.config["WORDSLAB_GENERATED_PASSWORD"]
    assert generated and len(generated) >= 12
    second = create_app(Settings.from_env(vm_env), view_modules=("jobs",))
    assert second.config["WORDSLAB_GENERATED_PASSWORD"] is None  # shown once only
    assert logged_in_client(second, password=generated).get("/admin/").status_code == 200
    # The env password replaces it.
    third = make_admin_app(vm_env, password="from-env", view_modules=("jobs",))
    assert logged_in_client(third, password="from-env").get("/admin/").status_code == 200


def test_cli_shows_a_generated_password_on_stdout_only_once(vm_env, tmp_path):
    env = {**vm_env, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("WORDSLAB_DASHBOARD_ADMIN_PASSWORD", None)

    def start_and_stop() -> tuple[str, str]:
        proc = subprocess.Popen([sys.executable, "-m", "admin", "--listen-address", "127.0.0.1:0"],
                                cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        for line in proc.stdout:  # up to the "serving on" line
            lines.append(line)
            if "serving on" in line:
                break
        proc.terminate()
        out, err = proc.communicate(timeout=30)
        return "".join(lines) + out, err

    out, err = start_and_stop()
    match = re.search(r"generated admin password \(shown once\): (\S+)", out)
    assert match, out + err
    assert match.group(1) not in err  # the log stream never carries it
    assert "serving on http://127.0.0.1:" in out
    out_again, _ = start_and_stop()
    assert "generated admin password" not in out_again


def test_listens_on_loopback_by_default():
    assert listen_host_port(DEFAULT_LISTEN)[0] == "127.0.0.1"
    assert listen_host_port("127.0.0.1:0") == ("127.0.0.1", 0)
    with pytest.raises(ValueError):
        listen_host_port("127.0.0.1:99999")


# --- CSRF ------------------------------------------------------------------------------------

def test_delete_button_and_bulk_action_form_carry_the_token(app):
    job_ids = _add_done_jobs(app)
    page = logged_in_client(app).get("/admin/jobs/").text
    delete_forms = re.findall(r'<form class="icon" method="POST" action="/admin/jobs/delete/">(.*?)</form>',
                              page, re.S)
    assert len(delete_forms) == len(job_ids)
    assert all('name="csrf_token"' in form for form in delete_forms)
    action_form = re.search(r'<form id="action_form"(.*?)</form>', page, re.S).group(1)
    assert 'name="csrf_token"' in action_form


@pytest.mark.parametrize("token", [None, "", "20991231000000##0000", "garbage"])
def test_delete_without_a_valid_token_is_refused_and_changes_nothing(app, token):
    job_ids = _add_done_jobs(app)
    client = logged_in_client(app)
    data = {"id": job_ids[0]}
    if token is not None:
        data["csrf_token"] = token
    response = client.post("/admin/jobs/delete/", data=data)
    assert response.status_code == 400 and "CSRF token" in response.text
    bulk = client.post("/admin/jobs/action/", data={"action": "delete", "rowid": job_ids, **data})
    assert bulk.status_code == 400
    assert _job_ids(app) == set(job_ids)


def test_delete_and_bulk_delete_work_with_the_token(app):
    first, second, third = _add_done_jobs(app, 3)
    client = logged_in_client(app)
    token = csrf_from(client.get("/admin/jobs/").text)
    assert client.post("/admin/jobs/delete/", data={"id": first, "csrf_token": token}).status_code == 302
    assert _job_ids(app) == {second, third}
    response = client.post("/admin/jobs/action/",
                           data={"action": "delete", "rowid": [second, third], "csrf_token": token})
    assert response.status_code == 302
    assert _job_ids(app) == set()


def test_a_token_from_another_session_is_refused(app):
    job_ids = _add_done_jobs(app)
    other_token = csrf_from(logged_in_client(app).get("/admin/jobs/").text)
    client = logged_in_client(app)
    response = client.post("/admin/jobs/delete/", data={"id": job_ids[0], "csrf_token": other_token})
    assert response.status_code == 400
    assert _job_ids(app) == set(job_ids)


def test_login_and_logout_need_the_token(app):
    assert app.test_client().post("/login", data={"password": PASSWORD}).status_code == 400
    client = logged_in_client(app)
    assert client.post("/logout").status_code == 400
    assert client.get("/admin/").status_code == 200  # still logged in
    assert client.get("/logout").status_code == 405  # logging out is a POST


class _Actions(SecureBaseView):
    """A custom page as other domains write them: post_button + require_csrf + confirmed()."""

    removed: list[str] = []

    @expose("/")
    def index(self):
        return self.render_string(
            "{% import 'admin/wordslab_lib.html' as wl with context %}"
            "{{ wl.post_button(url_for('.remove'), 'Remove', confirm='Delete demo and 2 unpushed commits',"
            " btn_class='btn-danger', fields={'name': 'demo'}) }}")

    def render_string(self, source):
        from flask import render_template_string
        return render_template_string(source)

    @expose("/remove", methods=["POST"])
    def remove(self):
        require_csrf()
        if not confirmed():
            return "refused: tick the confirmation to delete demo and its 2 unpushed commits", 409
        self.removed.append(request.form["name"])
        return redirect(url_for(".index"))


@pytest.fixture
def app_with_actions(app):
    _Actions.removed = []
    app.extensions["admin"][0].add_view(_Actions(name="Actions", endpoint="test_actions", url="/admin/test_actions"))
    return app


def test_post_button_macro_carries_token_and_confirmation(app_with_actions):
    client = logged_in_client(app_with_actions)
    page = client.get("/admin/test_actions/").text
    assert 'name="csrf_token"' in page and 'name="confirm"' in page and 'name="name" value="demo"' in page
    token = csrf_from(page)
    assert client.post("/admin/test_actions/remove", data={"name": "demo"}).status_code == 400
    refused = client.post("/admin/test_actions/remove", data={"name": "demo", "csrf_token": token})
    assert refused.status_code == 409 and "unpushed commits" in refused.text
    assert _Actions.removed == []
    done = client.post("/admin/test_actions/remove", data={"name": "demo", "csrf_token": token, "confirm": "1"})
    assert done.status_code == 302 and _Actions.removed == ["demo"]


def test_custom_views_need_login(app_with_actions):
    client = app_with_actions.test_client()
    assert client.get("/admin/test_actions/").status_code == 302
    assert client.get("/admin/test_actions/", headers={"Accept": "application/json"}).status_code == 401


# --- secrets, headers, links -----------------------------------------------------------------

def test_mask_secret():
    assert mask_secret("sk-or-v1-0123456789abcdef") == "••••cdef"
    assert mask_secret("short") == "••••"
    assert mask_secret("") == "" and mask_secret(None) == ""
    assert "0123456789" not in mask_secret("sk-or-v1-0123456789abcdef")


def test_security_headers_and_own_session_cookie(app):
    client = app.test_client()
    response = client.get("/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("wordslab_admin_session=") and "HttpOnly" in cookie


def test_admin_links_back_to_grafana(app):
    client = logged_in_client(app)
    index = client.get("/admin/").text
    for uid in ("wordslab-home", "wordslab-machine", "wordslab-devenv", "wordslab-ai-services"):
        assert f'href="http://grafana.test:3000/d/{uid}"' in index
    jobs = client.get("/admin/jobs/").text
    assert 'class="grafana-link" href="http://grafana.test:3000/d/wordslab-devenv"' in jobs
    assert "http://grafana.test:3000/d/wordslab-ai-services" in jobs  # the navbar menu, on every page


def test_default_grafana_url(vm_env):
    app = make_admin_app(vm_env, view_modules=("jobs",))
    # Grafana at the root of the front door, at the platform's public URL for DASHBOARD_PORT.
    assert 'href="http://127.0.0.1:8888/d/wordslab-home"' in logged_in_client(app).get("/admin/").text
