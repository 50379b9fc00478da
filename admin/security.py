"""Login, CSRF and the base view every admin page derives from."""
from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import abort, flash, redirect, request, session, url_for
from flask_admin.contrib.sqla import ModelView
from flask_admin.form import SecureForm


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 200_000)
    return f"pbkdf2_sha256${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, salt_hex, digest_hex = stored.split("$")
    except ValueError:
        return False
    expected = hash_password(password, bytes.fromhex(salt_hex)).split("$")[2]
    return hmac.compare_digest(expected, digest_hex)


def logged_in() -> bool:
    return bool(session.get("user"))


def require_csrf() -> None:
    """For custom POST actions: the same session-bound token Flask-Admin's SecureForm uses."""
    form = SecureForm(request.form)
    if not form.validate():
        abort(400, description="missing or invalid CSRF token; reload the page and try again")


class SecureModelView(ModelView):
    """ModelView with CSRF on every form and login required."""

    form_base_class = SecureForm
    can_view_details = True
    page_size = 50

    def is_accessible(self) -> bool:
        return logged_in()

    def inaccessible_callback(self, name, **kwargs):
        flash("Please log in.", "warning")
        return redirect(url_for("auth.login", next=request.full_path))
