"""The admin behind the front door (nginx on DASHBOARD_PORT, see wordslab_dashboard/door.py).

- X-Forwarded-For/-Proto/-Host are believed only from a loopback peer (the local nginx), one
  hop deep (werkzeug's ProxyFix): anyone else's are ignored.
- The session cookie is Secure (and `__Host-` prefixed) whenever the request came over HTTPS,
  which behind a platform's HTTPS proxy (Runpod, Jarvislabs) the door reports in X-Forwarded-Proto.
- The door asks `/admin/auth/check` before every request it lets through (nginx auth_request):
  200 with the user in USER_HEADER when logged in, 401 otherwise.
"""
from __future__ import annotations

import ipaddress

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

# The admin's answer to the door; nginx copies it into Grafana's auth-proxy header.
USER_HEADER = "X-Wordslab-User"


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


class LocalProxyFix:
    """ProxyFix (x_for, x_proto, x_host: one proxy) for requests from a loopback peer only."""

    def __init__(self, app):
        self.app = app
        self.fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=1)

    def __call__(self, environ, start_response):
        if _is_loopback(environ.get("REMOTE_ADDR", "")):
            return self.fixed(environ, start_response)
        return self.app(environ, start_response)


class DoorSessionInterface(SecureCookieSessionInterface):
    """Signed cookie sessions, Secure when the request came over HTTPS, and then named with the
    `__Host-` prefix: browsers refuse such a cookie from any other host, so another pod on the
    platform's proxy domain (proxy.runpod.net is no public suffix) cannot toss a cookie of our
    name for the whole domain, sent before ours, and so break this door's login (its CSRF
    session). Over plain HTTP (an SSH tunnel, Vast.ai) the prefix is not allowed: the plain name."""

    def get_cookie_name(self, app: Flask) -> str:
        name = super().get_cookie_name(app)
        return f"__Host-{name}" if request.is_secure else name

    def get_cookie_secure(self, app: Flask) -> bool:
        return super().get_cookie_secure(app) or request.is_secure


def install(app: Flask) -> None:
    app.wsgi_app = LocalProxyFix(app.wsgi_app)
    app.session_interface = DoorSessionInterface()
