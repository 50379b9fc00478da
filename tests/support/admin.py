"""Helpers for admin tests with Flask's test client: app, login, CSRF tokens.

    app = make_admin_app(vm_env, view_modules=("projects",))
    client = logged_in_client(app)
    token = csrf_from(client.get("/admin/projects/").text)
    client.post("/admin/projects/pull/", data={"name": "demo", "csrf_token": token})
"""
from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

from common.config import Settings

PASSWORD = "test-password"
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def make_admin_app(env: dict[str, str], *, password: str = PASSWORD, **kwargs) -> Flask:
    from admin.app import create_app
    return create_app(Settings.from_env(env), password=password, **kwargs)


def csrf_from(html: str) -> str:
    """The first CSRF token in a page (every admin form carries the same session token)."""
    match = _CSRF.search(html)
    assert match, "no csrf_token field in the page"
    return match.group(1)


def logged_in_client(app: Flask, password: str = PASSWORD) -> FlaskClient:
    client = app.test_client()
    token = csrf_from(client.get("/login").text)
    response = client.post("/login", data={"password": password, "csrf_token": token})
    assert response.status_code == 302, response.text
    return client
