"""The real Alertmanager (Debian's prometheus-alertmanager) as a subprocess on a free loopback
port, reading the config file the admin renders; and loopback receivers to deliver to:
a webhook that records what it gets, and an SMTP server (aiosmtpd) that keeps the mails."""
from __future__ import annotations

import json
import shutil
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from tests.support.env import free_port
from tests.support.prometheus import Process, start_ready

ALERTMANAGER_BIN = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager") or "/usr/bin/prometheus-alertmanager"


class AlertmanagerServer:
    def __init__(self, process: Process, url: str):
        self.process = process
        self.url = url

    @classmethod
    def start(cls, config_file: Path, workdir: Path) -> "AlertmanagerServer":
        port = free_port()
        args = [ALERTMANAGER_BIN, f"--config.file={config_file}", f"--storage.path={workdir / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
        return cls(*start_ready("alertmanager", args, port, workdir))

    def stop(self) -> None:
        self.process.stop()


class WebhookReceiver:
    """Records every POST body (JSON) and its headers; answers `status` (200 by default)."""

    def __init__(self):
        self.posts: list[dict] = []
        self.status = 200
        self.event = threading.Event()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts.append({"path": self.path, "headers": dict(self.headers),
                                       "body": json.loads(raw or b"null")})
                receiver.event.set()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler


class SmtpSink:
    """aiosmtpd on a free loopback port; `messages` holds the email.message objects received."""

    def __init__(self):
        from aiosmtpd.controller import Controller
        self.messages = []
        self.event = threading.Event()
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                sink.messages.append(message_from_bytes(envelope.original_content or envelope.content))
                sink.event.set()
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> "SmtpSink":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()
