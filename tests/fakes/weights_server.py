"""An HTTPS file server on loopback standing in for download.pytorch.org, Keras' and fastai's
buckets: serves registered files whole, cut mid-stream, or without Content-Length.

    with weights_server(tmp_path) as server:        # sets SSL_CERT_FILE to its own CA
        server.files["resnet-ab12.pth"] = data
        url = server.url("resnet-ab12.pth")           # https://localhost:PORT/resnet-ab12.pth
        server.url("x.pth", mode="cut")               # Content-Length says all, half is sent
        server.url("x.pth", mode="nolength")          # no Content-Length, all is sent
        server.redirects["x.pth"] = other_url
        server.url("x.pth", mode="redirect")          # 302 to other_url
    with weights_server(tmp_path, tls=False) as plain:  # the same over plain http
"""
from __future__ import annotations

import ssl
import subprocess
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

from common import http_client


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (openssl), trusted via SSL_CERT_FILE."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


class WeightsServer:
    def __init__(self, port: int, cert: Path | None, scheme: str = "https"):
        self.port, self.cert, self.scheme = port, cert, scheme
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}
        self.requests: list[str] = []

    def url(self, name: str, mode: str = "whole") -> str:
        return f"{self.scheme}://localhost:{self.port}/{mode}/{name}"


@contextmanager
def weights_server(directory: Path, monkeypatch=None, tls: bool = True) -> Iterator[WeightsServer]:
    cert, key = make_certificate(directory) if tls else (None, None)
    state: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):
            pass

        def do_GET(self):
            server = state["server"]
            server.requests.append(self.path)
            _, mode, name = self.path.split("/", 2)
            if mode == "redirect":
                self.send_response(302)
                self.send_header("Location", server.redirects[name])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = server.files.get(name)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if mode != "nolength":
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.close_connection = True
            if mode == "trickle":  # one byte every 0.2 s: never silent long enough for a read timeout
                for byte in data:
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:  # the client gave up
                        return
                    time.sleep(0.2)
                return
            self.wfile.write(data[: len(data) // 2] if mode == "cut" else data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    state["server"] = server = WeightsServer(httpd.server_address[1], cert, "https" if tls else "http")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    if monkeypatch is not None and tls:  # this process trusts the server's certificate from now on
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        monkeypatch.setattr(http_client, "_TLS_CONTEXT", None)
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
