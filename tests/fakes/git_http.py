"""A git remote over HTTP on loopback: bare repos served by git's own `git http-backend`.

Smart HTTP (clone with progress, fetch, push) through the real backend run as CGI,
so clones in tests go through the same transport as a real https remote.
`git_http_server(root)` (or the `git_remote` fixture) for unit/browser tests;
`world.serve(git_http_handler(root))` for the integration world.
Repos are `<root>/<name>.git` (see tests.support.git_repos).
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from tests.fakes.loopback import serving


class _GitHttpHandler(BaseHTTPRequestHandler):
    project_root = ""
    chunk_delay = 0.0  # seconds between 16 KiB chunks of an answer: a slow remote

    def do_GET(self):
        self._cgi()

    def do_POST(self):
        self._cgi()

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _cgi(self) -> None:
        url = urlsplit(self.path)
        body = self._body() if self.command == "POST" else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": self.project_root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
        }
        for header in ("Git-Protocol", "Content-Encoding"):
            if self.headers.get(header):
                env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not self.chunk_delay:
            self.wfile.write(payload)
            return
        try:
            for start in range(0, len(payload), 16384):
                self.wfile.write(payload[start:start + 16384])
                self.wfile.flush()
                time.sleep(self.chunk_delay)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client was killed mid-clone


def git_http_handler(root: Path, chunk_delay: float = 0.0) -> type[BaseHTTPRequestHandler]:
    """Handler class serving the bare repos under `root` (`chunk_delay`: see _GitHttpHandler)."""
    return type("GitHttpHandler", (_GitHttpHandler,), {"project_root": str(Path(root).resolve()),
                                                       "chunk_delay": chunk_delay})


@dataclass(frozen=True)
class GitHttpServer:
    """A running remote: `remote.url("demo")` -> http://127.0.0.1:PORT/demo.git"""
    root: Path
    base_url: str

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}.git"


@contextlib.contextmanager
def git_http_server(root: Path, chunk_delay: float = 0.0) -> Iterator[GitHttpServer]:
    """`with git_http_server(root) as remote:` serves the bare repos under `root` on loopback."""
    with serving(git_http_handler(root, chunk_delay)) as base_url:
        yield GitHttpServer(Path(root), base_url)


@pytest.fixture
def git_remote(tmp_path):
    """A GitHttpServer over tmp_path/remotes; add repos with tests.support.git_repos.make_remote."""
    root = tmp_path / "remotes"
    root.mkdir()
    with git_http_server(root) as server:
        yield server
