"""Flask app factory: Flask-Admin over the config store, behind a login."""
from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Flask, flash, redirect, render_template, request, session, url_for
from flask_admin import Admin, AdminIndexView, expose
from flask_admin.menu import MenuLink
from flask_admin.theme import Bootstrap4Theme

from common import redact
from common.config import Settings
from common.urls import dashboard_url
from common.readable import readable_value
from common.store import connect, init_db, session_factory
from common.store.health import check_database
from common.store.settings import get_setting, set_setting

from admin import browser_sessions, db_busy, front_door
from admin.context import GRAFANA_DASHBOARDS, AdminContext
from admin.grafana_status import GrafanaStatus
from admin.formatting import human_bytes, progress_text
from admin.jobs import JobRunner, active_jobs
from admin.login_throttle import LoginThrottle
from admin.redaction import protect_app
from admin.security import check_password, csrf_protect, hash_password, logged_in, mask_secret
from admin.views import register_views

PASSWORD_KEY = "admin_password_hash"
SECRET_KEY = "flask_secret_key"
# Grafana and other apps of the VM share the host name, hence the cookies: use our own name.
SESSION_COOKIE = "wordslab_admin_session"
HERE = Path(__file__).parent
# No admin form comes near this; a bigger body is refused (413) before it is parsed.
MAX_REQUEST_BYTES = 1024 * 1024


class DashboardIndexView(AdminIndexView):
    def __init__(self, ctx: AdminContext, **kwargs):
        super().__init__(**kwargs)
        self.ctx = ctx

    def is_accessible(self) -> bool:
        return logged_in()

    def inaccessible_callback(self, name, **kwargs):
        return redirect(url_for("auth.login", next=request.full_path))

    @expose("/")
    def index(self):
        with self.ctx.sessions() as s:
            active = active_jobs(s)
        return self.render("admin/wordslab_index.html", dashboards=GRAFANA_DASHBOARDS, active_jobs=active)


def ensure_password(ctx: AdminContext, password: str | None, *, reset: bool = False) -> str | None:
    """Store the given password, or generate one on first start (or on reset).

    A password that changes also changes the session signing key, so every browser signed in
    with the old one must sign in again. Returns a generated password, to be shown once on the
    terminal; None otherwise.
    """
    with ctx.sessions.begin() as s:
        stored = get_setting(s, PASSWORD_KEY)
        if password:
            redact.remember(password)
            if not (stored and check_password(password, stored)):
                set_setting(s, PASSWORD_KEY, hash_password(password))
                _forget_sessions(s)
            return None
        if stored and not reset:
            return None
        generated = secrets.token_urlsafe(12)
        redact.remember(generated)  # shown once on the terminal (a print), never in a log
        set_setting(s, PASSWORD_KEY, hash_password(generated))
        _forget_sessions(s)
        return generated


def _forget_sessions(s) -> None:
    # A new signing key: every browser signed in with the old password is signed out, everywhere
    # behind the front door (admin, Grafana, Prometheus); a running admin (the reset ran beside
    # it) keeps its key until it restarts, but no longer finds the sessions.
    set_setting(s, SECRET_KEY, secrets.token_hex(32))
    browser_sessions.end_all(s)


def _secret_key(ctx: AdminContext) -> str:
    # Kept in the store so sessions survive an admin restart.
    with ctx.sessions.begin() as s:
        key = get_setting(s, SECRET_KEY)
        if not key:
            key = secrets.token_hex(32)
            set_setting(s, SECRET_KEY, key)
        return key


def _local_target(target: str | None) -> str:
    """`next` after login, only when it is a path of this site; else the admin index.

    Browsers drop tabs and line breaks from URLs and read a backslash as a slash, so
    "/<tab>/evil.example/" or "/<backslash>evil.example" would lead off-site: any control character,
    space or backslash refuses the target, and so does anything urlsplit reads as having a
    scheme or host (`//host`, `http:x`)."""
    index = url_for("admin.index")
    if not target or len(target) > 2048 or not target.startswith("/"):
        return index
    if any(ord(c) < 33 or ord(c) == 127 or c == "\\" or c.isspace() for c in target):
        return index
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or target.startswith("//") or not parts.path.startswith("/"):
        return index
    return target


def _auth_blueprint(ctx: AdminContext) -> Blueprint:
    bp = Blueprint("auth", __name__)
    throttle = LoginThrottle()

    # Under /admin/ so the front door sends them to the admin; /login and /logout stay as aliases.
    @bp.route("/login", methods=["GET", "POST"])
    @bp.route("/admin/login", methods=["GET", "POST"])  # registered first: url_for builds this one
    def login():
        if request.method == "POST":
            wait = throttle.acquire()
            if wait:
                flash(f"Too many wrong passwords: try again in {wait} s "
                      "(forgot it? run wordslab-admin --reset-password).", "danger")
                return render_template("login.html"), 429, {"Retry-After": str(wait)}
            ok = False
            try:
                with ctx.sessions() as s:
                    stored = get_setting(s, PASSWORD_KEY) or ""
                ok = check_password(request.form.get("password", ""), stored)
            finally:
                throttle.release(ok)
            if ok:
                session.clear()  # a fresh session (and CSRF secret) after login
                session["user"] = "admin"
                browser_sessions.start()
                return redirect(_local_target(request.args.get("next")))
            flash("Wrong password.", "danger")
            return render_template("login.html"), 401
        return render_template("login.html")

    @bp.route("/logout", methods=["POST"])
    @bp.route("/admin/logout", methods=["POST"])
    def logout():
        browser_sessions.end()  # every copy of this cookie, not only this browser's
        session.clear()
        flash("Logged out.", "info")
        return redirect(url_for("auth.login"))

    @bp.route("/")
    def root():
        return redirect(url_for("admin.index"))

    @bp.route("/health")
    def health():
        return {"status": "ok"}

    @bp.route("/admin/auth/check")
    def auth_check():
        # The front door's question before each request it lets through (nginx auth_request).
        headers = {"Cache-Control": "no-store"}
        if logged_in():
            return "", 200, {**headers, front_door.USER_HEADER: session["user"]}
        return "", 401, headers

    @bp.route("/admin/auth/login-redirect")
    def login_redirect():
        # Where the door sends a refused request: the login, then back to what was asked.
        target = request.headers.get("X-Original-URI", "")
        if target.startswith("/admin/auth/"):
            target = "/"
        return redirect(url_for("auth.login", next=_local_target(target)))

    return bp


def _security_headers(response):
    response.headers.setdefault("X-Frame-Options", "DENY")  # no clickjacking of delete buttons
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    # Admin URLs stay out of the Referer sent to Grafana and other sites.
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def create_app(settings: Settings, *, password: str | None = None,
               grafana_url: str | None = None, job_workers: int = 2,
               reset_password: bool = False, view_modules: tuple[str, ...] | None = None) -> Flask:
    """The admin app over `settings.db_path` (created/upgraded here).

    `view_modules` limits the domain views registered (default: all of VIEW_MODULES);
    tests of one domain use it to stay independent of the others.
    """
    engine = connect(settings.db_path)
    check_database(engine, settings.db_path)  # DatabaseUnusable: one line for the terminal
    init_db(engine)
    sessions = session_factory(engine)
    jobs = JobRunner(sessions, workers=job_workers)
    ctx = AdminContext(settings=settings, engine=engine, sessions=sessions, jobs=jobs,
                       grafana_url=grafana_url or dashboard_url(settings))  # Grafana: the door's root
    jobs.mark_interrupted()
    app = Flask(__name__, template_folder=str(HERE / "templates"), static_folder=str(HERE / "static"),
                static_url_path="/admin/assets")  # under /admin/: the front door sends it here
    generated = ensure_password(ctx, password, reset=reset_password)  # before the key: may rotate it
    app.config.update(
        SECRET_KEY=_secret_key(ctx),
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        WORDSLAB_GENERATED_PASSWORD=generated,
    )
    front_door.install(app)
    app.extensions["wordslab"] = ctx
    csrf_protect(app)
    app.after_request(_security_headers)
    db_busy.install(app)
    protect_app(app, sessions)
    # File and folder names that are not UTF-8 are shown escaped instead of failing the page.
    app.jinja_env.finalize = readable_value
    grafana_status = GrafanaStatus(settings.grafana_url)
    grafana_status.start()
    app.extensions["wordslab_grafana_status"] = grafana_status
    app.jinja_env.globals.update(
        grafana_url=ctx.grafana_url, grafana_dashboard_url=ctx.dashboard_url, grafana_health=grafana_status.current,
        human_bytes=human_bytes, progress_text=progress_text, mask_secret=mask_secret,
    )
    app.register_blueprint(_auth_blueprint(ctx))
    admin = Admin(app, name="wordslab admin",
                  theme=Bootstrap4Theme(base_template="admin/wordslab_base.html", fluid=True),
                  index_view=DashboardIndexView(ctx, url="/admin"))
    for uid, title in GRAFANA_DASHBOARDS.items():
        admin.add_link(MenuLink(name=title, url=ctx.dashboard_url(uid), category="Grafana"))
    register_views(admin, ctx, view_modules)
    return app
