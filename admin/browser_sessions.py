"""Signed-in browsers, recorded in the store so that an ended session stays ended.

The session cookie is signed, not secret-free: a copy of it (another browser profile, a synced
or backed-up cookie jar, a shared machine) would open the whole door until it expires (31 days)
if signing out only cleared the browser's own cookie. So each login gets a random id, kept in
the settings table as the SHA-256 of the id (the DB is readable by the exporter: the hash
opens nothing); a request is signed in only while its id is recorded. Signing out deletes it;
a new or reset password deletes them all, which the running admin sees at its next request
even when `wordslab-admin --reset-password` ran beside it.
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta, timezone

from flask import current_app, g, session
from sqlalchemy import delete, select

from common.store.settings import Setting, set_setting

PREFIX = "admin_session:"
SESSION_KEY = "sid"  # the id's place in the (signed) session cookie
# Flask's default PERMANENT_SESSION_LIFETIME, the longest a signed cookie is accepted.
LIFETIME = timedelta(days=31)


def _key(sid: str) -> str:
    return PREFIX + hashlib.sha256(sid.encode()).hexdigest()


def _sessions():
    return current_app.extensions["wordslab"].sessions


def start() -> None:
    """Record a new session for this browser (after the password was checked) and put its id in
    the cookie; sessions older than LIFETIME are dropped on the way."""
    sid = secrets.token_urlsafe(32)
    now = datetime.now(timezone.utc)
    with _sessions().begin() as s:
        for row in s.scalars(select(Setting).where(Setting.key.startswith(PREFIX))):
            try:
                expired = now - datetime.fromisoformat(row.value) > LIFETIME
            except ValueError:
                expired = True
            if expired:
                s.delete(row)
        set_setting(s, _key(sid), now.isoformat())
    session[SESSION_KEY] = sid
    g.wordslab_session_active = True


def active() -> bool:
    """Whether this request's session id is recorded (asked once per request)."""
    if "wordslab_session_active" not in g:
        sid = session.get(SESSION_KEY)
        found = False
        if isinstance(sid, str) and sid:
            with _sessions()() as s:
                found = s.get(Setting, _key(sid)) is not None
        g.wordslab_session_active = found
    return g.wordslab_session_active


def end() -> None:
    """Forget this browser's session, for every copy of its cookie."""
    sid = session.get(SESSION_KEY)
    if isinstance(sid, str) and sid:
        with _sessions().begin() as s:
            s.execute(delete(Setting).where(Setting.key == _key(sid)))
    g.wordslab_session_active = False


def end_all(s) -> None:
    """Forget every session (inside the caller's transaction `s`): a new password."""
    s.execute(delete(Setting).where(Setting.key.startswith(PREFIX)))
