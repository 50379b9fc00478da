"""A logged-in HTTP client (requests) for the real admin process, CSRF token included.

    web = AdminHttp(server)                         # logs in through /login
    web.post("/admin/vm_settings/", {"budget": "12", "interval": "60"})
    web.get("/admin/vms/").text
    AdminHttp(server, log_in=False).login("guess")  # the login answer itself (302, 401, 429)
"""
from __future__ import annotations

import html
import re

import requests

from tests.support.admin_server import AdminServer

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
_FLASH = re.compile(r'<div class="alert[^"]*"[^>]*>(.*?)</div>', re.S)
_TAGS = re.compile(r"<[^>]+>")


class AdminHttp:
    def __init__(self, server: AdminServer, timeout: float = 60.0, log_in: bool = True):
        self.server = server
        self.timeout = timeout
        self.http = requests.Session()
        self.token = ""
        if log_in:
            response = self.login()
            assert response.status_code == 302, response.text
            self.token = self._token("/admin/jobs/")

    def _token(self, path: str) -> str:
        match = _CSRF.search(self.get(path).text)
        assert match, f"no csrf_token on {path}"
        return match.group(1)

    def login(self, password: str | None = None, next_path: str | None = None) -> requests.Response:
        """POST the login form (`?next=next_path` when given); the answer itself, not followed."""
        token = self._token("/login")
        params = {"next": next_path} if next_path is not None else None
        return self.http.post(self.server.url + "/login", params=params, allow_redirects=False,
                              data={"password": self.server.password if password is None else password,
                                    "csrf_token": token}, timeout=self.timeout)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.http.get(self.server.url + path, timeout=self.timeout, **kwargs)

    def post(self, path: str, data: dict | None = None, **kwargs) -> requests.Response:
        """POST a form with this session's CSRF token; redirects are followed unless told otherwise."""
        return self.http.post(self.server.url + path, data={**(data or {}), "csrf_token": self.token},
                              timeout=self.timeout, **kwargs)


def page_text(page: str) -> str:
    """The visible text of a page, tags dropped and entities decoded."""
    return html.unescape(_TAGS.sub(" ", page))


def flashes(page: str) -> list[str]:
    """The flash messages of a page, as text."""
    return [" ".join(page_text(m).split()) for m in _FLASH.findall(page)]
