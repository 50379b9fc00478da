"""The admin's exits through common.redact: every page and JSON answer (known secrets), every
flash message (secrets and token shapes), and the keys stored in the DB remembered at start.

Pages get the known secrets only: a form or script may legitimately hold text shaped like a
token, and a stored key never belongs on a page anyway (keys are shown masked).
"""
from __future__ import annotations

from flask import Flask, get_flashed_messages

from common import redact
from common.store.secrets import stored_secrets

SCRUBBED_TYPES = ("text/html", "application/json", "text/plain", "text/csv")


def remember_stored_secrets(sessions) -> None:
    """Every API key stored in the DB, so an error that echoes one is masked from the start."""
    with sessions() as s:
        redact.remember(*stored_secrets(s))


def _scrub_response(response):
    if response.direct_passthrough or response.is_streamed or response.mimetype not in SCRUBBED_TYPES:
        return response
    body = response.get_data(as_text=True)
    clean = redact.scrub_known(body)
    if clean != body:
        response.set_data(clean)
    return response


def _scrubbed_flashes(with_categories: bool = False, category_filter=()):
    messages = get_flashed_messages(with_categories=with_categories, category_filter=category_filter)
    if with_categories:
        return [(category, redact.scrub(message)) for category, message in messages]
    return [redact.scrub(message) for message in messages]


def protect_app(app: Flask, sessions) -> None:
    remember_stored_secrets(sessions)
    app.after_request(_scrub_response)
    app.jinja_env.globals["get_flashed_messages"] = _scrubbed_flashes
