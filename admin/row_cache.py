"""Rendered table rows of the list pages, kept while what a row shows stays the same.

A list page at 200 projects or 500 models spent most of its time rendering rows (a macro, a
url_for and escaping per button). Each view names what a row shows as a hashable key; a row
is rendered again only when its key changes. Rows are cached with a placeholder where the
CSRF token goes (the signed token differs per request) and the real token is put in once per
page. Only the rows used by the last page are kept, so the cache stays the size of one page.
"""
from __future__ import annotations

import threading
from typing import Callable, Hashable, Iterable

from flask import g
from markupsafe import Markup

from admin.security import csrf_token

# Not a character sequence a row can contain otherwise: row text is HTML-escaped.
TOKEN_PLACEHOLDER = "\x00wordslab-csrf-token\x00"


class RowCache:
    def __init__(self) -> None:
        self._rows: dict[Hashable, str] = {}
        self._lock = threading.Lock()

    def render(self, rows: Iterable[tuple[Hashable, Callable[[], str]]]) -> Markup:
        # Keys name the row's item and everything its cells show.
        """The page's rows joined, each `(key, render)`: `render()` runs only for a key not
        rendered by the previous page. Called inside a request (the CSRF token is its session's)."""
        with self._lock:
            known = self._rows
        used: dict[Hashable, str] = {}
        out: list[str] = []
        real = g.get("wordslab_csrf_token")
        g.wordslab_csrf_token = TOKEN_PLACEHOLDER  # the rows rendered now get the placeholder
        try:
            for key, render in rows:
                html = known.get(key)
                if html is None:
                    html = str(render())
                used[key] = html
                out.append(html)
        finally:
            g.wordslab_csrf_token = real
            if real is None:
                g.pop("wordslab_csrf_token")
        with self._lock:
            self._rows = used
        return Markup("".join(out).replace(TOKEN_PLACEHOLDER, csrf_token()))
