"""A logged-in HTTP client (requests) for the real admin process, CSRF token included.

    web = AdminHttp(server)                         # logs in through /login
    web.post("/admin/vm_settings/", {"budget": "12", "interval": "60"})
    web.get("/admin/vms/").text
"""
from __future__ import annotations

import re

import requests

from tests.support.admin_server import AdminServer

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class AdminHttp:
    def __init__(self, server: AdminServer, timeout: float = 60.0):
        self.server = server
        self.timeout = timeout
        self.http = requests.Session()
        self.token = self._token("/login")
        response = self.http.post(server.url + "/login", data={"password": server.password,
                                                                "csrf_token": self.token},
                                  allow_redirects=False, timeout=timeout)
        assert response.status_code == 302, response.text
        self.token = self._token("/admin/jobs/")

    def _token(self, path: str) -> str:
        match = _CSRF.search(self.get(path).text)
        assert match, f"no csrf_token on {path}"
        return match.group(1)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.http.get(self.server.url + path, timeout=self.timeout, **kwargs)

    def post(self, path: str, data: dict | None = None, **kwargs) -> requests.Response:
        """POST a form with this session's CSRF token; redirects are followed unless told otherwise."""
        return self.http.post(self.server.url + path, data={**(data or {}), "csrf_token": self.token},
                              timeout=self.timeout, **kwargs)
