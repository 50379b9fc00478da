"""Flask app factory: Flask-Admin over the config store, behind a login."""
from __future__ import annotations

import secrets
from pathlib import Path

from flask import Blueprint, Flask, flash, redirect, render_template, request, session, url_for
from flask_admin import Admin, AdminIndexView, expose
from flask_admin.theme import Bootstrap4Theme

from exporter.config import Settings
from exporter.store import connect, init_db, session_factory
from exporter.store.settings import get_setting, set_setting

from .context import AdminContext
from .jobs import JobRunner
from .security import check_password, hash_password, logged_in
from .views import register_views

PASSWORD_KEY = "admin_password_hash"
SECRET_KEY = "flask_secret_key"


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
        return self.render("admin/wordslab_index.html", grafana_url=self.ctx.grafana_url)


def ensure_password(ctx: AdminContext, password: str | None) -> str | None:
    """Store the given password, or generate one on first start. Returns a new one to show once."""
    with ctx.sessions.begin() as s:
        if password:
            set_setting(s, PASSWORD_KEY, hash_password(password))
            return None
        if get_setting(s, PASSWORD_KEY):
            return None
        generated = secrets.token_urlsafe(12)
        set_setting(s, PASSWORD_KEY, hash_password(generated))
        return generated


def _secret_key(ctx: AdminContext) -> str:
    # Kept in the store so sessions survive an admin restart.
    with ctx.sessions.begin() as s:
        key = get_setting(s, SECRET_KEY)
        if not key:
            key = secrets.token_hex(32)
            set_setting(s, SECRET_KEY, key)
        return key


def _auth_blueprint(ctx: AdminContext) -> Blueprint:
    bp = Blueprint("auth", __name__)

    @bp.route("/login", methods=["GET", "POST"])
    def login():
        if request.method == "POST":
            with ctx.sessions() as s:
                stored = get_setting(s, PASSWORD_KEY) or ""
            if check_password(request.form.get("password", ""), stored):
                session.clear()
                session["user"] = "admin"
                target = request.args.get("next") or ""
                # Only local paths: never redirect off-site after login.
                if not target.startswith("/") or target.startswith("//"):
                    target = url_for("admin.index")
                return redirect(target)
            flash("Wrong password.", "danger")
        return render_template("login.html")

    @bp.route("/logout", methods=["POST", "GET"])
    def logout():
        session.clear()
        return redirect(url_for("auth.login"))

    @bp.route("/")
    def root():
        return redirect(url_for("admin.index"))

    @bp.route("/health")
    def health():
        return {"status": "ok"}

    return bp


def create_app(settings: Settings, *, password: str | None = None,
               grafana_url: str | None = None, job_workers: int = 2) -> Flask:
    engine = connect(settings.db_path)
    init_db(engine)
    sessions = session_factory(engine)
    jobs = JobRunner(sessions, workers=job_workers)
    ctx = AdminContext(settings=settings, engine=engine, sessions=sessions, jobs=jobs,
                       grafana_url=grafana_url)
    jobs.mark_interrupted()
    app = Flask(__name__, template_folder=str(Path(__file__).parent / "templates"))
    app.config["SECRET_KEY"] = _secret_key(ctx)
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.extensions["wordslab"] = ctx
    app.config["WORDSLAB_GENERATED_PASSWORD"] = ensure_password(ctx, password)
    app.register_blueprint(_auth_blueprint(ctx))
    admin = Admin(app, name="wordslab admin", theme=Bootstrap4Theme(),
                  index_view=DashboardIndexView(ctx, url="/admin"))
    register_views(admin, ctx)
    return app
