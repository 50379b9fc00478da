"""Run an HTTP handler class on a free loopback port for the length of a `with` block, and
answer its requests with JSON (send_json), as the fake API servers do."""
from __future__ import annotations

import contextlib
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """The base URL; with a server-side `tls` context, https://localhost:PORT."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    # A short poll interval keeps shutdown() from waiting half a second per server.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        yield f"https://localhost:{port}" if tls is not None else f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


def send_json(handler: BaseHTTPRequestHandler, status: int, body, *, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
    """Answer with `body`: bytes and str as they are, None as nothing, anything else as JSON.
    A HEAD gets the headers only; a client that gave up (timeout) is no error."""
    if isinstance(body, bytes):
        data = body
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = b"" if body is None else json.dumps(body).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


class RecordingJsonHandler(BaseHTTPRequestHandler):
    """A quiet handler answering JSON that records every request (path with query, headers) in
    the class's `requests` list, so tests can check where keys went."""

    requests: list[dict] = []

    def log_message(self, format, *args):
        pass

    _json = send_json

    def record(self) -> None:
        type(self).requests.append({"path": self.path, "headers": dict(self.headers)})
