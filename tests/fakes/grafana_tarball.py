"""A small stand-in for Grafana's standalone tarball, and the Grafana it runs.

The tarball has the official layout (`grafana-<version>/bin/grafana`, `conf/defaults.ini`,
`public/`); its `bin/grafana server` is a Python HTTP server on GF_SERVER_HTTP_ADDR:PORT that
answers every path with JSON (the path, the auth-proxy user header it got), completes a
WebSocket handshake (Grafana Live) with 101, and appends each
request to `$GF_PATHS_DATA/requests.jsonl`, so tests can see what reached "Grafana".
"""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from wordslab_dashboard.grafana_install import GrafanaRelease

FAKE_GRAFANA = r'''#!/usr/bin/env python3
import base64, hashlib, json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if sys.argv[1:2] != ["server"] or "--homepath" not in sys.argv:
    sys.exit("usage: grafana server --homepath DIR")
header = os.environ.get("GF_AUTH_PROXY_HEADER_NAME", "X-WEBAUTH-USER")
log = os.path.join(os.environ["GF_PATHS_DATA"], "requests.jsonl")
os.makedirs(os.environ["GF_PATHS_DATA"], exist_ok=True)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        record = {"path": self.path, "user": self.headers.get(header),
                  "users": self.headers.get_all(header) or [], "origin": self.headers.get("Origin"),
                  "host": self.headers.get("Host"), "method": self.command,
                  "upgrade": self.headers.get("Upgrade"),
                  "env": {k: v for k, v in os.environ.items() if k.startswith("GF_")}}
        with open(log, "a") as f:
            f.write(json.dumps(record) + "\n")
        if (self.headers.get("Upgrade") or "").lower() == "websocket":  # Grafana Live's handshake
            key = (self.headers.get("Sec-WebSocket-Key") or "") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", base64.b64encode(hashlib.sha1(key.encode()).digest()).decode())
            self.end_headers()
            self.close_connection = True
            return
        body = json.dumps({"fake": "grafana", "path": self.path, "user": record["user"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


addr = os.environ.get("GF_SERVER_HTTP_ADDR", "127.0.0.1")
port = int(os.environ.get("GF_SERVER_HTTP_PORT", "3000"))
ThreadingHTTPServer((addr, port), Handler).serve_forever()
'''


def _add(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    archive.addfile(info, io.BytesIO(data))


def build(path: Path, version: str = "12.4.2", *, extra: dict[str, bytes] | None = None) -> str:
    """Write the fake tarball to `path`; returns its sha256. `extra` adds members as named
    (e.g. a path-traversal one)."""
    buf = io.BytesIO()
    top = f"grafana-{version}"
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        _add(archive, f"{top}/bin/grafana", FAKE_GRAFANA.encode(), 0o755)
        _add(archive, f"{top}/conf/defaults.ini", b"[server]\nhttp_port = 3000\n")
        _add(archive, f"{top}/public/index.html", b"<html>fake grafana</html>\n")
        for name, data in (extra or {}).items():
            _add(archive, name, data)
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def release_for(name: str, sha256: str, version: str = "12.4.2") -> GrafanaRelease:
    """A release whose every architecture is the fake file `name` with `sha256`."""
    return GrafanaRelease(version, {"amd64": (name, sha256), "arm64": (name, sha256)})
