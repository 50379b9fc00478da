"""Login, CSRF, secret masking and the base views every admin page derives from.

- Model views: derive from `SecureModelView` (login + CSRF on create/edit/delete/bulk actions).
- Custom pages (not DB rows): derive from `SecureBaseView` and use `@expose`.
- Every POST/PUT/PATCH/DELETE to the app is refused with 400 without a valid CSRF token
  (`csrf_protect(app)`), so a custom POST cannot forget it; `require_csrf()` stays
  available for an explicit check. In templates, `{{ csrf_token() }}` gives the token, or use
  the `post_button` macro of admin/templates/admin/wordslab_lib.html.
- A destructive action asks first: `confirmed()` is True only when the form's "confirm"
  checkbox was ticked; without it, refuse with a message that names what would be lost.
- Secrets are never rendered back: show `mask_secret(key)` in lists and details.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import warnings
from datetime import datetime, timedelta

from markupsafe import escape
from flask import Flask, abort, flash, g, jsonify, redirect, request, session, url_for
from flask_admin import BaseView
from flask_admin.contrib.sqla import ModelView
from flask_admin.form import SecureForm
from flask_admin.model import typefmt
from sqlalchemy.orm import Session, scoped_session, sessionmaker
from wtforms.validators import Length, ValidationError

from admin import browser_sessions
from admin.validation import FALLBACK_MAX_CHARS

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CONFIRM_FIELD = "confirm"
# Endpoints called by machines with their own bearer token, never by a browser session
# (Alertmanager's webhooks to the alert relay): no cookie, so nothing for CSRF to forge.
CSRF_EXEMPT_ENDPOINTS = {"alerts_relay.relay"}


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 200_000)
    return f"pbkdf2_sha256${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, salt_hex, digest_hex = stored.split("$")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    expected = hash_password(password, salt).split("$")[2]
    return hmac.compare_digest(expected, digest_hex)


def logged_in() -> bool:
    """Signed in: the cookie names the user and its session was not ended (admin/browser_sessions)."""
    return bool(session.get("user")) and browser_sessions.active()


class CSRFForm(SecureForm):
    """Flask-Admin's SecureForm (session-bound token), valid long enough for a page left open.

    Every text field is bounded before any other check runs: by its own Length validator, else
    by FALLBACK_MAX_CHARS. An over-long value gets that field's message and nothing else of
    the form is parsed (no check, regex or lookup ever sees unbounded input).
    """

    class Meta:
        csrf_time_limit = timedelta(hours=12)

    def validate(self, extra_validators=None) -> bool:
        too_long = False
        for field in self:
            message = _length_error(self, field)
            if message:
                field.errors = [message]
                too_long = True
        if too_long:
            return False
        return super().validate(extra_validators)


def _length_error(form, field) -> str | None:
    data = field.data
    if not isinstance(data, str):
        return None
    bounds = [v for v in field.validators if isinstance(v, Length) and v.max is not None and v.max >= 0]
    if not bounds:
        if len(data) > FALLBACK_MAX_CHARS:
            return f"{field.label.text} is too long: at most {FALLBACK_MAX_CHARS:,} characters"
        return None
    for bound in bounds:
        try:
            bound(form, field)
        except ValidationError as exc:
            return str(exc)
    return None


def csrf_token() -> str:
    """The token to put in a form's hidden `csrf_token` field (also a Jinja global).

    Made once per request: building the form that makes it costs more than a table row, and a
    list page puts it in a form per row (the token is the same for the whole session anyway).
    """
    token = g.get("wordslab_csrf_token")
    if token is None:
        token = g.wordslab_csrf_token = CSRFForm().csrf_token.current_token
    return token


def csrf_valid() -> bool:
    if "csrf" not in session:  # no token was ever issued to this browser
        return False
    token = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, "")
    form = CSRFForm(formdata=None)
    form.csrf_token.data = token
    return form.csrf_token.validate(form)


def require_csrf() -> None:
    """Abort with 400 unless the request carries this session's CSRF token."""
    if not csrf_valid():
        abort(400, description="missing or invalid CSRF token: reload the page and try again")


def csrf_protect(app: Flask) -> None:
    """Refuse every state-changing request without the token, whatever view it targets."""

    @app.before_request
    def _check_csrf():
        if request.method not in SAFE_METHODS and request.endpoint not in CSRF_EXEMPT_ENDPOINTS:
            require_csrf()

    app.jinja_env.globals["csrf_token"] = csrf_token


def confirmed() -> bool:
    """True when the form's "confirm" checkbox was ticked (destructive actions ask first)."""
    return request.form.get(CONFIRM_FIELD, "").lower() in ("1", "on", "yes", "true")


def mask_secret(value: str | None, visible: int = 4) -> str:
    """'sk-abcdef123456wxyz' -> '••••wxyz': enough to recognise a key, never enough to use it."""
    if not value:
        return ""
    if len(value) < 3 * visible:  # too short to show any of it safely
        return "••••"
    return "••••" + value[-visible:]


def _datetime_cell(view, value: datetime, name: str) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")  # stored in UTC; seconds are precise enough


def _login_redirect():
    if request.path.endswith(".json") or request.accept_mimetypes.best == "application/json":
        return jsonify(error="login required"), 401
    flash("Please log in.", "warning")
    return redirect(url_for("auth.login", next=request.full_path))


class SecureBaseView(BaseView):
    """Base for custom admin pages (not DB rows): login required; templates get `csrf_token()`.

    Optional `grafana_dashboard` (a dashboard uid) adds a "View in Grafana" link to the page.
    """

    grafana_dashboard: str | None = None

    def is_accessible(self) -> bool:
        return logged_in()

    def inaccessible_callback(self, name, **kwargs):
        return _login_redirect()


ACRONYMS = {"api": "API", "gpu": "GPU", "gpus": "GPUs", "url": "URL", "urls": "URLs", "vm": "VM", "vms": "VMs",
            "cpu": "CPU", "vcpus": "vCPUs", "ram": "RAM", "vram": "VRAM", "gb": "GB", "id": "ID", "http": "HTTP",
            "usd": "USD", "llm": "LLM", "hf": "HF", "ssh": "SSH"}


def prettify_label(name: str) -> str:
    """snake_case -> a sentence-case label keeping acronyms: "api_key_var" -> "API key var"."""
    words = [ACRONYMS.get(word, word) for word in name.split("_") if word]
    if words and words[0] == words[0].lower():
        words[0] = words[0].capitalize()
    return " ".join(words)


class _Labels(dict):
    """column_labels whose missing entries read as prettify_label: Flask-Admin's form builder asks
    column_labels.get(name) and falls back to WTForms' own 'Api Type' when it gets None."""

    def get(self, key, default=None):
        return super().get(key) or prettify_label(key)


class SecureModelView(ModelView):
    """ModelView with CSRF on every form and action, and login required.

    Pass `ctx.sessions` (the sessionmaker): each request gets its own session, removed at
    the end of the request, so list pages never show stale rows. A plain Session is accepted
    too and replaced the same way.
    """

    form_base_class = CSRFForm
    column_type_formatters = {**typefmt.BASE_FORMATTERS, datetime: _datetime_cell}
    can_view_details = True
    page_size = 50
    grafana_dashboard: str | None = None

    def _prettify_name(self, name: str) -> str:
        """Column and field labels: api_type -> "API type", gpu_count -> "GPU count" (Flask-Admin's
        own would say "Api Type")."""
        return prettify_label(name)

    def __init__(self, model, session, *args, **kwargs):
        # Flask-Admin renders a field's description as HTML (|safe): help texts are plain text
        # here ("http://127.0.0.1:<port>"), so they are escaped once, for every view.
        self.column_labels = _Labels(self.column_labels or {})
        self.form_args = {name: {**spec, "description": escape(spec["description"])} if "description" in spec else spec
                          for name, spec in (self.form_args or {}).items()}
        if isinstance(session, Session):
            bind = session.get_bind()
            session.close()
            session = sessionmaker(bind, expire_on_commit=False)
        if isinstance(session, sessionmaker):
            session = scoped_session(session)
        with warnings.catch_warnings():
            # Flask-Admin 2.x asks for a Flask-SQLAlchemy `db`; we use plain SQLAlchemy 2 sessions.
            warnings.filterwarnings("ignore", message="Passing a session object directly", category=DeprecationWarning)
            super().__init__(model, session, *args, **kwargs)

    def create_blueprint(self, admin):
        blueprint = super().create_blueprint(admin)
        if isinstance(self.session, scoped_session):
            blueprint.teardown_request(lambda _exc: self.session.remove())
        return blueprint

    def is_accessible(self) -> bool:
        return logged_in()

    def inaccessible_callback(self, name, **kwargs):
        return _login_redirect()
