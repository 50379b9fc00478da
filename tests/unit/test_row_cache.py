"""admin/row_cache.py: a row is rendered again only when its key changes; every page gets its
own request's CSRF token, never the placeholder the cached rows hold."""
from __future__ import annotations

from flask import Flask, g
from markupsafe import Markup

from admin import row_cache
from admin.row_cache import RowCache


def _page(app, cache, items, calls, token):
    with app.test_request_context():
        g.wordslab_csrf_token = token

        def rows():
            for key, text in items:
                def render(key=key, text=text):
                    calls.append(key)
                    return Markup("<tr><td>{}</td><td>{}</td></tr>").format(text, row_cache.csrf_token())
                yield key, render

        return str(cache.render(rows()))


def test_rows_render_again_only_when_their_key_changes_and_carry_each_pages_token():
    app, cache, calls = Flask(__name__), RowCache(), []
    first = _page(app, cache, [("a", "<alpha>"), ("b", "beta")], calls, "token-1")
    assert first == "<tr><td>&lt;alpha&gt;</td><td>token-1</td></tr><tr><td>beta</td><td>token-1</td></tr>"
    assert calls == ["a", "b"]
    second = _page(app, cache, [("a", "<alpha>"), ("b2", "beta changed")], calls, "token-2")
    assert calls == ["a", "b", "b2"]  # a kept, b's new key rendered
    assert second == "<tr><td>&lt;alpha&gt;</td><td>token-2</td></tr><tr><td>beta changed</td><td>token-2</td></tr>"
    assert row_cache.TOKEN_PLACEHOLDER not in second
    _page(app, cache, [("b", "beta")], calls, "token-3")
    assert calls[-1] == "b"  # only the last page's rows are kept: b was dropped, rendered again


def test_the_requests_own_token_is_left_as_it_was():
    app, cache = Flask(__name__), RowCache()
    with app.test_request_context():
        g.wordslab_csrf_token = "real"
        assert str(cache.render([("a", lambda: f"<tr>{row_cache.csrf_token()}</tr>")])) == "<tr>real</tr>"
        assert g.wordslab_csrf_token == "real"  # forms after the rows get the real token too
