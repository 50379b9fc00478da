"""common.http_client against real HTTP servers on loopback, and the memory it exists for:
the exporter's collectors load without `requests` / `urllib3`."""
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from common import http_client
from tests.fakes.loopback import send_json, serving
from tests.support.env import free_port, wordslab_env

KEY = "sk-test-0123456789abcdef"
REPO = Path(__file__).resolve().parents[2]


def test_exporter_collectors_load_without_requests(tmp_path):
    """Build every collector, refresh every background source once and render a scrape, in a
    fresh interpreter: `requests` and `urllib3` must stay out of it (~6 MB of RSS)."""
    code = textwrap.dedent("""
        import os, sys
        import exporter.registry, exporter.cli
        from common.config import Settings
        from exporter.exposition import Exposition
        from exporter.registry import build_collectors
        collectors = build_collectors(Settings.from_env(dict(os.environ)))
        for source in (s for c in collectors for s in c.sources):
            source.refresh_now()
        assert b"wordslab_collector_success" in Exposition(collectors).render()
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("requests", "urllib3")))
    """)
    env = wordslab_env(tmp_path, API_SERVER_PORT=str(free_port()))
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


class Echo(BaseHTTPRequestHandler):
    """Answers with what it received; `/status/N` answers N with a JSON error body,
    `/bad-json` a broken body, `/slow` only once `release` is set, `/go?to=URL` redirects."""
    seen: list[dict] = []
    release = threading.Event()

    def log_message(self, *args):
        pass

    def _answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers)})
        if self.path.startswith("/status/"):
            code = int(self.path.rsplit("/", 1)[1])
            return send_json(self, code, {"error": {"code": "insufficient_quota", "message": "no credit"}})
        if self.path == "/bad-json":
            return send_json(self, 200, b"{not json")
        if self.path == "/slow":
            self.release.wait(5)
            return send_json(self, 200, {"late": True})
        if self.path.startswith("/go?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.send_header("Content-Length", "0")
            return self.end_headers()
        send_json(self, 200, {"method": self.command, "path": self.path,
                              "authorization": self.headers.get("Authorization"),
                              "content_type": self.headers.get("Content-Type"),
                              "body": json.loads(body) if body else None})

    do_GET = do_POST = do_DELETE = do_PUT = _answer


@pytest.fixture
def echo():
    Echo.seen = []
    Echo.release = threading.Event()
    with serving(Echo) as url:
        yield url
    Echo.release.set()


def test_get_and_post_with_json_params_and_headers(echo):
    got = http_client.get(f"{echo}/a", params={"owner": "me", "n": 3}, headers={"Authorization": f"Bearer {KEY}"},
                          timeout=(2, 5))
    assert got.status_code == 200
    assert got.json() == {"method": "GET", "path": "/a?owner=me&n=3", "authorization": f"Bearer {KEY}",
                          "content_type": None, "body": None}
    posted = http_client.post(f"{echo}/b?x=1", json={"model": "qwen3:8b"}, params={"y": "2"}, timeout=5)
    assert posted.json()["path"] == "/b?x=1&y=2"
    assert posted.json()["body"] == {"model": "qwen3:8b"}
    assert posted.json()["content_type"] == "application/json"
    deleted = http_client.request("DELETE", f"{echo}/c", json={"model": "m"}, timeout=5)
    assert deleted.json()["method"] == "DELETE" and deleted.json()["body"] == {"model": "m"}


@pytest.mark.parametrize("status", [401, 402, 429, 500, 503])
def test_non_2xx_answers_come_back_with_status_and_body(echo, status):
    response = http_client.get(f"{echo}/status/{status}", timeout=5)
    assert response.status_code == status
    assert response.json()["error"]["code"] == "insufficient_quota"
    assert "no credit" in response.text
    with pytest.raises(http_client.HTTPError, match=str(status)):
        response.raise_for_status()


def test_malformed_json_is_a_value_error(echo):
    response = http_client.get(f"{echo}/bad-json", timeout=5)
    assert response.status_code == 200 and response.content == b"{not json"
    with pytest.raises(ValueError):
        response.json()


def test_a_silent_server_is_a_read_timeout(echo):
    with pytest.raises(http_client.ReadTimeout, match="no answer within 0.2 s") as caught:
        http_client.get(f"{echo}/slow", headers={"Authorization": f"Bearer {KEY}"}, timeout=(2, 0.2))
    assert isinstance(caught.value, http_client.Timeout)
    assert not isinstance(caught.value, http_client.ConnectionError)
    assert KEY not in str(caught.value)


def test_a_refused_connection_is_a_connection_error_not_a_timeout():
    url = f"http://127.0.0.1:{free_port()}/models"
    with pytest.raises(http_client.ConnectionError, match="cannot connect") as caught:
        http_client.get(url, headers={"Authorization": f"Bearer {KEY}"}, timeout=(1, 1))
    assert not isinstance(caught.value, http_client.Timeout)
    assert KEY not in str(caught.value) and url in str(caught.value)


def test_a_connection_not_accepted_in_time_is_a_connect_timeout():
    # A listener that never accepts, its backlog filled: the next connect gets no answer.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            with pytest.raises(http_client.ConnectTimeout, match="no connection within 0.3 s") as caught:
                for _ in range(8):
                    filler = socket.socket()
                    filler.setblocking(False)
                    filler.connect_ex(("127.0.0.1", port))
                    fillers.append(filler)
                    http_client.get(f"http://127.0.0.1:{port}/", timeout=(0.3, 5))
        finally:
            for filler in fillers:
                filler.close()
    # requests' hierarchy, which the callers' except clauses rely on.
    assert isinstance(caught.value, http_client.ConnectionError)
    assert isinstance(caught.value, http_client.Timeout)


class Lines(BaseHTTPRequestHandler):
    """Streams NDJSON in chunks; the second line is sent only once the client has read the first."""
    protocol_version = "HTTP/1.1"
    first_read = threading.Event()

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(b'{"status":"pulling manifest"}\n')
        streamed = self.first_read.wait(5)  # False: the client sat on the first line
        self._chunk(b'{"status":"downloading","completed":5}\r\n\n{"status":' if streamed else b"{")
        self._chunk(b'"success"}\n')
        self._chunk(b"")

    def _chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def test_streamed_lines_arrive_as_the_server_sends_them():
    Lines.first_read = threading.Event()
    with serving(Lines) as url:
        response = http_client.post(f"{url}/api/pull", json={"model": "m"}, timeout=(2, 5), stream=True)
        lines = []
        with response:
            for line in response.iter_lines():
                lines.append(line)
                Lines.first_read.set()  # the server holds the rest back until this
        Lines.first_read.set()
    assert lines == [b'{"status":"pulling manifest"}', b'{"status":"downloading","completed":5}', b"",
                     b'{"status":"success"}']


def test_redirects_keep_the_key_on_the_same_origin_only(echo):
    with serving(Echo) as other:
        same = http_client.get(f"{echo}/go?to=/a", headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
        assert same.json()["authorization"] == f"Bearer {KEY}"
        moved = http_client.get(f"{echo}/go?to={other}/b", headers={"Authorization": f"Bearer {KEY}"},
                                timeout=5)
        assert moved.json()["path"] == "/b" and moved.json()["authorization"] is None
    unfollowed = http_client.get(f"{echo}/go?to=/a", timeout=5, allow_redirects=False)
    assert unfollowed.status_code == 302 and unfollowed.headers["Location"] == "/a"


def test_the_key_travels_in_a_header_never_in_the_url(echo):
    http_client.get(f"{echo}/models", headers={"x-api-key": KEY}, timeout=5)
    http_client.post(f"{echo}/graphql", json={"query": "{ myself { id } }"},
                     headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
    assert [s["path"] for s in Echo.seen] == ["/models", "/graphql"]
    assert Echo.seen[0]["headers"]["x-api-key"] == KEY
    assert Echo.seen[1]["headers"]["Authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "127.0.0.1:8080/x", "http:///x", "http://h:port/x"])
def test_urls_that_are_not_http_are_refused_clearly(url):
    with pytest.raises(http_client.InvalidURL):
        http_client.get(url, timeout=1)


# A name no resolver knows (RFC 2606): only a proxy, which is asked for the whole URL, can answer.
REMOTE = "http://wordslab-remote.invalid:8080/via"


def test_a_proxy_named_by_the_environment_is_used_for_plain_http(echo, monkeypatch):
    target = REMOTE
    monkeypatch.setitem(os.environ, "http_proxy", echo)
    monkeypatch.delitem(os.environ, "no_proxy", raising=False)
    monkeypatch.delitem(os.environ, "NO_PROXY", raising=False)
    answer = http_client.get(target, timeout=5)
    assert answer.json()["path"] == target


def test_proxy_variables_changed_while_running_take_effect_at_the_next_request(echo, monkeypatch):
    """The proxies are kept between requests (reading them scans the environment), but a change
    to a proxy variable is seen at once."""
    target = REMOTE
    for name in ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delitem(os.environ, name, raising=False)
    with pytest.raises(http_client.ConnectionError):
        http_client.get(target, timeout=5)  # direct: no such host
    monkeypatch.setitem(os.environ, "HTTP_PROXY", echo)
    assert http_client.get(target, timeout=5).json()["path"] == target
    monkeypatch.setitem(os.environ, "no_proxy", "wordslab-remote.invalid")
    with pytest.raises(http_client.ConnectionError):
        http_client.get(target, timeout=5)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST"])
def test_this_machines_loopback_never_goes_through_a_proxy(echo, monkeypatch, host):
    """A proxy's loopback is the proxy's own: with http_proxy set and no no_proxy (a VM behind a
    corporate proxy), the exporter's probes of JupyterLab, Ollama or a vLLM server on 127.0.0.1
    went to the proxy and showed them down. Loopback goes direct, as Go's net/http (Prometheus,
    node_exporter) does whatever the proxy variables say."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delitem(os.environ, name, raising=False)
    monkeypatch.setitem(os.environ, "http_proxy", f"http://127.0.0.1:{free_port()}")  # a proxy that never answers
    monkeypatch.setitem(os.environ, "HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    url = echo.replace("127.0.0.1", host) + "/api/status"
    assert http_client.get(url, timeout=5).json()["path"] == "/api/status"


@pytest.mark.parametrize("url", ["http://[::1/x", "http://user:s3cret-pw@[::1/x", "http://ho st/", "http://host/a b",
                                 "http://host/\x7f"])
def test_a_malformed_url_is_an_invalid_url_request_exception_without_its_password(url):
    # Callers catch RequestException: a ValueError from urlsplit or http.client would escape them.
    with pytest.raises(http_client.InvalidURL) as raised:
        http_client.get(url, timeout=1)
    assert isinstance(raised.value, http_client.RequestException) and "s3cret-pw" not in str(raised.value)
