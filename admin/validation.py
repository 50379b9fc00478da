"""Checks shared by the admin's forms: each raises wtforms' ValidationError with the message the user sees."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from sqlalchemy import select

from common import outbound, redact
from wtforms.validators import Length, ValidationError

# Longest value accepted per kind of field. Nothing legitimate is longer, and every check,
# parser and label downstream then works on bounded input (a 100,000-character URL once froze
# the admin and every scrape).
MAX_CHARS = {
    "name": 63,          # row names: file names, metric labels
    "project": 100,      # a project directory name
    "url": 2048,         # any URL (clone, base, health, spec)
    "model_id": 300,     # Ollama name:tag, Hugging Face org/name, a file under a model folder
    "revision": 200,     # git branch, tag or commit; Hugging Face revision
    "env_var": 100,      # an environment variable name
    "key": 1024,         # an API key or token
    "command": 4000,     # a server command line
    "image": 300,        # a container image reference
    "text": 2000,        # free text: descriptions
    "short": 100,        # short ids: GPU type, region
    "number": 40,        # a number typed in a text box
}
FALLBACK_MAX_CHARS = 8000  # any other text field (admin.security.CSRFForm)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ENV_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


def max_chars(kind: str, what: str) -> Length:
    """A WTForms validator: at most MAX_CHARS[kind] characters, with a message naming the field."""
    limit = MAX_CHARS[kind]
    return Length(max=limit, message=f"{what} is too long: at most {limit:,} characters")


def check_length(value: str | None, kind: str, what: str) -> None:
    """The same bound for values read outside a form (request.form in custom routes)."""
    limit = MAX_CHARS[kind]
    if value and len(value) > limit:
        raise ValidationError(f"{what} is too long: at most {limit:,} characters")


def check_key(value: str | None, what: str) -> str:
    """An API key as typed or pasted: surrounding blanks dropped, none inside (a pasted line
    break would end an HTTP header early), printable ASCII only, bounded."""
    value = (value or "").strip()
    redact.remember(value)  # even a refused key: whatever echoes it is masked
    check_length(value, "key", what)
    if any(c.isspace() for c in value):
        raise ValidationError(f"{what}: a key has no spaces or line breaks inside: paste it again")
    if any(not 32 < ord(c) < 127 for c in value):
        raise ValidationError(f"{what} has characters no API key has (control or non-ASCII): paste it again")
    return value


def check_key_destination(value: str | None, what: str) -> None:
    """A URL that API keys will be sent to: not a link-local or cloud metadata address (by name
    or by what it resolves to, common/outbound.py). Checked again at every call."""
    if not value:
        return
    try:
        outbound.check_url(value)
    except outbound.ForbiddenDestination as exc:
        raise ValidationError(f"{what}: {exc} (link-local and cloud metadata addresses are refused; "
                              "loopback, LAN and public hosts are fine)") from None


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
