"""Column types whose values pass through common.redact.scrub on the way into the DB.

For texts that come from outside and are shown later (job messages, provider and endpoint
errors): whatever writes them (an ORM attribute, a bulk UPDATE), a key echoed in them is
masked before it is stored, so no page, label or log built from the row can show it.
"""
from __future__ import annotations

from sqlalchemy import String, Text
from sqlalchemy.types import TypeDecorator

from common.redact import scrub


class ScrubbedText(TypeDecorator):
    """Text, scrubbed when written."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return scrub(value) if isinstance(value, str) else value


class ScrubbedString(TypeDecorator):
    """String(n), scrubbed when written."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return scrub(value) if isinstance(value, str) else value
