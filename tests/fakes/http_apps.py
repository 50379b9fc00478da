"""Tiny HTTP apps for loopback servers: answer every GET with one status code."""
from __future__ import annotations

from http.server import BaseHTTPRequestHandler


def answering(status: int, seen: list | None = None) -> type[BaseHTTPRequestHandler]:
    """A handler answering `status` (302s redirect to /login); request paths go to `seen`."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if seen is not None:
                seen.append(self.path)
            self.send_response(status)
            if status in (301, 302):
                self.send_header("Location", "/login")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):  # keep test output clean
            pass
    return Handler
