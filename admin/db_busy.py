"""A write refused because another program holds the SQLite file's write lock longer than the
admin's busy timeout: a clear 503 that says nothing was saved, never a 500 or a "saved"."""
from __future__ import annotations

import logging

from flask import Flask
from markupsafe import escape
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
MESSAGE = ("The database is busy: another program holds its write lock. Nothing was saved; "
           "try again in a few seconds.")


def _busy(exc: OperationalError):
    if "locked" not in str(exc.orig) and "busy" not in str(exc.orig):
        raise exc  # another database error: Flask's own handling
    log.warning("request refused: %s", type(exc.orig).__name__ + ": database is locked")
    body = (f"<!doctype html><title>Database busy</title><h1>Database busy</h1>"
            f"<p id=\"db-busy\">{escape(MESSAGE)}</p><p><a href=\"javascript:history.back()\">Back</a></p>")
    return body, 503, {"Retry-After": str(RETRY_AFTER_SECONDS), "Content-Type": "text/html; charset=utf-8"}


def install(app: Flask) -> None:
    app.register_error_handler(OperationalError, _busy)
