"""Checks shared by the admin's forms: each raises wtforms' ValidationError with the message the user sees."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from sqlalchemy import select
from wtforms.validators import ValidationError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ENV_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


def check_name(value: str | None, what: str) -> None:
    """A row name that is safe in file names, metric labels and shell commands."""
    if not value or not NAME_RE.match(value) or ".." in value:
        raise ValidationError(f"{what} name {value!r}: use letters, digits, '.', '_' or '-' "
                              "(at most 63, starting with a letter or digit, no spaces, no '..')")


def check_unique_name(view, model, what: str) -> None:
    """No other row of the view's table has `model.name`."""
    with view.session.no_autoflush:  # the new row itself is pending in this session: don't find it
        rows = view.session.scalars(select(view.model).where(view.model.name == model.name)).all()
    if any(row is not model for row in rows):
        raise ValidationError(f"{what} name {model.name!r} is already used")


def check_env_var_name(value: str | None, what: str) -> None:
    if value and not ENV_VAR_RE.match(value):
        raise ValidationError(f"{what} {value!r} is not a variable name")


def check_http_url(value: str | None, what: str) -> None:
    """http(s) with a host, and no credentials or query: keys go in headers, never in URLs."""
    if not value:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"{what} must be an http:// or https:// URL, got {value!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValidationError(f"{what} must not carry credentials, a query or a fragment")
