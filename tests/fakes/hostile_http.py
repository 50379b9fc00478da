"""Servers on loopback that misbehave the ways real ones do: trickling, silent, asking for a
password, TLS with a certificate nobody trusts, echoing what they were sent.

Each is a context manager yielding the base URL (or port), for unit and process tests.
"""
from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Iterator

from tests.fakes.loopback import send_json, serving

TLS_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tls"


def trickle_handler(interval_s: float = 2.0, body: bytes = b'{"models": []}' + b" " * 10_000):
    """Answers 200 at once, then sends its body one byte every `interval_s` (never idle long
    enough for a read timeout, never done)."""

    class Trickle(BaseHTTPRequestHandler):
        def log_message(self, format, *args):
            pass

        def do_GET(self):
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.flush()
                for byte in body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(interval_s)
            except OSError:
                pass

        do_POST = do_GET

    return Trickle


@contextlib.contextmanager
def trickling(interval_s: float = 2.0) -> Iterator[str]:
    with serving(trickle_handler(interval_s)) as url:
        yield url


@contextlib.contextmanager
def _raw_server(talk) -> Iterator[str]:
    """A TCP server on loopback running `talk(conn, stop)` in a thread per connection."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn = server.accept()[0]
            except OSError:
                continue
            held.append(conn)
            threading.Thread(target=talk, args=(conn, stop), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def trickling_headers(interval_s: float = 0.5):
    """Sends a status line, then one header byte every `interval_s`, never ending the headers."""

    def talk(conn: socket.socket, stop: threading.Event) -> None:
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not stop.is_set():
                conn.sendall(b"a")
                time.sleep(interval_s)
        except OSError:
            pass

    return _raw_server(talk)


def silent():
    """Accepts connections and never says a word."""
    return _raw_server(lambda conn, stop: None)


class AskingPassword(BaseHTTPRequestHandler):
    """401 with a Basic challenge, as a private git host answers an anonymous clone."""

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        send_json(self, 401, "authentication required\n", content_type="text/plain",
                  headers={"WWW-Authenticate": 'Basic realm="git"'})

    do_POST = do_GET


@contextlib.contextmanager
def untrusted_tls() -> Iterator[str]:
    """HTTPS with the committed self-signed localhost certificate (no client trusts it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS_FIXTURES / "localhost-cert.pem", TLS_FIXTURES / "localhost-key.pem")
    with serving(AskingPassword, tls=context) as url:
        yield url
