"""HTTP server: `/metrics` for Prometheus and a small landing page at `/`."""
from __future__ import annotations

import html
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from common.config import parse_listen_address
from exporter.exposition import Exposition
from exporter.version import program_version


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # listen() backlog: socketserver's default of 5 drops the SYNs of a 6th simultaneous
    # scraper, which then waits 1-3 s for its retry. The kernel caps it at somaxconn.
    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # scrapes every 5 s would flood the log
        pass


def landing_page(collector_names: list[str]) -> bytes:
    items = "".join(f"<li>{html.escape(n)}</li>" for n in collector_names)
    return (
        "<!doctype html><html><head><title>wordslab exporter</title></head><body>"
        f"<h1>wordslab-dashboard exporter {html.escape(program_version())}</h1>"
        '<p><a href="/metrics">Metrics</a></p>'
        f"<h2>Collectors</h2><ul>{items}</ul></body></html>"
    ).encode()


def make_app(exposition: Exposition):
    page = landing_page([c.name for c in exposition.collectors])

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            # Prometheus asks for gzip; the big cached parts are compressed in the background.
            gzipped = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
            parts = exposition.render_parts(gzipped=gzipped)
            headers = [("Content-Type", CONTENT_TYPE_LATEST),
                       ("Content-Length", str(sum(len(p) for p in parts)))]
            if gzipped:
                headers.append(("Content-Encoding", "gzip"))
            start_response("200 OK", headers)
            return parts
        if path in ("/", ""):
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [page]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


def serve(app, listen_address: str) -> tuple[WSGIServer, threading.Thread]:
    host, port = parse_listen_address(listen_address)
    server = make_server(host, port, app, _ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return server, thread
