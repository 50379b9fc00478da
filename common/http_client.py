"""The exporter's HTTP client, on the standard library.

`requests` (with urllib3, idna, charset_normalizer) costs the exporter ~6 MB of resident
memory for a few JSON calls; this gives what those calls need: JSON bodies, headers,
(connect, read) timeouts, a total deadline, redirects, proxies from the environment, streamed
lines, and the status and body of every answer, 4xx/5xx included. Exceptions carry requests' names, so
messages that quote the type read as before. Request headers (where API keys travel) never
appear in an exception message, and are not forwarded by a redirect to another origin.
"""
from __future__ import annotations

import base64
import http.client
import ipaddress
import json as jsonlib
import socket
import ssl
import threading
import time
from typing import Iterator, Mapping
from urllib.parse import unquote, urlencode, urljoin, urlsplit
from urllib.request import getproxies_environment, proxy_bypass_environment

from common import config, outbound, redact

MAX_REDIRECTS = 30
REDIRECT_CODES = (301, 302, 303, 307, 308)
USER_AGENT = "wordslab-dashboard"
# Headers that may hold a credential: dropped when a redirect leaves the origin.
CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "cookie")

# Seconds for both phases, or (connect, read); None waits forever.
TimeoutSpec = float | tuple[float, float] | None
# The whole exchange's deadline when the call names no timeout at all.
UNBOUNDED_DEADLINE_SECONDS = 600.0


class RequestException(Exception):
    """Any failed HTTP exchange (no answer, or an answer that could not be read)."""


class ConnectionError(RequestException):  # noqa: A001 - requests' name, kept for messages
    """No connection: refused, unknown host, TLS failure, or the peer hung up."""


class Timeout(RequestException):
    """No answer in time."""


class ConnectTimeout(ConnectionError, Timeout):
    """The connection was not made in time (both kinds, as in requests)."""


class ReadTimeout(Timeout):
    """Connected, but the server went silent longer than the read timeout."""


class DeadlineExceeded(Timeout):
    """The whole exchange took longer than its deadline (a server trickling its answer)."""


class ForbiddenDestination(RequestException, outbound.ForbiddenDestination):
    """A request carrying a key (`carries_secret`) would reach a link-local or cloud metadata
    address (common/outbound.py); nothing was sent."""


class InvalidHeader(RequestException, ValueError):
    """A header value that cannot be sent (a key with a line break, say); never quoted."""


class Deadline:
    """Total time of one exchange, redirects and body included. When it passes, the socket in
    use is shut down, so whatever read or write is blocked returns at once; the caller then
    raises DeadlineExceeded. Public for the few callers that speak http.client directly:
    `guard(connection)` once connected, `cancel()` when done, `expired` to tell why it broke."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._at = time.monotonic() + seconds
        self.expired = False
        self._timer: threading.Timer | None = None

    def remaining(self) -> float:
        left = self._at - time.monotonic()
        if left <= 0:
            self.expired = True
            raise DeadlineExceeded(f"no complete answer within {self.seconds:g} s")
        return left

    def guard(self, connection: http.client.HTTPConnection) -> None:
        self.cancel()
        # The socket itself: http.client lets go of it once the answer's headers are in.
        self._timer = threading.Timer(self.remaining(), self._expire, args=(connection.sock,))
        self._timer.daemon = True
        self._timer.start()

    def _expire(self, sock: socket.socket | None) -> None:
        self.expired = True
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def check(self) -> None:
        if self.expired:
            raise DeadlineExceeded(f"no complete answer within {self.seconds:g} s")


class InvalidURL(RequestException, ValueError):
    """Not an http(s) URL with a host."""


class TooManyRedirects(RequestException):
    pass


class HTTPError(RequestException):
    """raise_for_status() on a 4xx/5xx answer."""

    def __init__(self, message: str, response: "Response"):
        super().__init__(message)
        self.response = response


class Response:
    """An answer: status_code, headers, content/text/json() for the body, iter_lines() to stream."""

    def __init__(self, raw: http.client.HTTPResponse, connection: http.client.HTTPConnection, url: str,
                 deadline: Deadline | None = None):
        self.raw = raw
        self._deadline = deadline
        self.status_code = raw.status
        self.reason = raw.reason
        self.headers = raw.headers
        self.url = url
        self._connection = connection
        self._content: bytes | None = None

    def __repr__(self) -> str:
        return f"<Response [{self.status_code}]>"

    @property
    def content(self) -> bytes:
        if self._content is None:
            try:
                try:
                    content = _io(self.raw.read, self._deadline)
                    if self._deadline is not None:
                        self._deadline.check()  # a body cut short by the deadline is no answer
                except DeadlineExceeded as exc:
                    raise DeadlineExceeded(f"{_shown(self.url)}: {exc}") from None
                self._content = content
            finally:
                self.close()
        return self._content

    @property
    def text(self) -> str:
        charset = self.headers.get_content_charset() or "utf-8"
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", errors="replace")

    def json(self):
        """The body as JSON; ValueError when it is not (an empty body included)."""
        return jsonlib.loads(self.content)

    def iter_lines(self) -> Iterator[bytes]:
        """The body line by line as it arrives, line ends stripped; closes when done."""
        try:
            while True:
                line = _io(self.raw.readline, self._deadline)
                if not line:
                    return
                yield line.rstrip(b"\r\n")
        finally:
            self.close()

    def iter_content(self, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The body in chunks of at most `chunk_size` bytes as it arrives; closes when done."""
        try:
            while True:
                chunk = _io(lambda: self.raw.read1(chunk_size))
                if not chunk:
                    return
                yield chunk
        finally:
            self.close()

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise HTTPError(f"HTTP {self.status_code} {self.reason}", self)

    def close(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self.raw.close()
        self._connection.close()

    def __enter__(self) -> "Response":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def get(url: str, **kwargs) -> Response:
    return request("GET", url, **kwargs)


def post(url: str, **kwargs) -> Response:
    return request("POST", url, **kwargs)


def request(method: str, url: str, *, json=None, params: Mapping | None = None,
            headers: Mapping[str, str] | None = None, timeout: TimeoutSpec = None,
            allow_redirects: bool = True, stream: bool = False,
            deadline: float | None = None, carries_secret: bool = False) -> Response:
    """One HTTP exchange. `timeout` is seconds for both phases or (connect, read); the read
    timeout bounds each wait for data. `deadline` bounds the whole exchange, redirects and
    body included (default: connect + read timeout; UNBOUNDED_DEADLINE_SECONDS without
    timeout): a server answering one byte at a time fails with DeadlineExceeded. Without
    `stream` the body is read before returning and the connection closed; with it (a
    download of unknown length), the deadline covers the answer's headers and each later
    read is bounded by the read timeout: close the response (or use it in a `with`, or
    exhaust iter_lines()). With `carries_secret` (the headers hold an API key), every hop's
    host name and the address actually connected to are checked by common.outbound before a
    byte is sent: ForbiddenDestination for link-local and cloud metadata addresses.
    Raises a RequestException subclass on any failure."""
    if params:
        url += ("&" if urlsplit(url).query else "?") + urlencode(params, doseq=True)
    body = None if json is None else jsonlib.dumps(json).encode()
    sent = {"User-Agent": USER_AGENT, "Accept": "*/*", "Connection": "close", **(headers or {})}
    for name, value in sent.items():
        if any(c in str(value) for c in "\r\n\0"):
            raise InvalidHeader(f"the {name} header has a line break or NUL in its value "
                                "(a key pasted with a line break?); nothing was sent")
    if body is not None:
        sent["Content-Type"] = "application/json"
    limit = Deadline(deadline if deadline is not None else _default_deadline(timeout))
    for _ in range(MAX_REDIRECTS + 1):
        response = _exchange(method, url, body, sent, timeout, limit, carries_secret)
        location = response.headers.get("Location")
        if not (allow_redirects and response.status_code in REDIRECT_CODES and location):
            if stream:
                limit.cancel()
            else:
                response.content  # read now, under the deadline, and release the connection
            return response
        response.close()
        target = urljoin(url, location)
        if (response.status_code == 303 and method != "HEAD") or (
                response.status_code in (301, 302) and method == "POST"):  # as browsers and requests do
            method, body = "GET", None
            sent.pop("Content-Type", None)
        if _origin(target) != _origin(url):
            sent = {k: v for k, v in sent.items() if k.lower() not in CREDENTIAL_HEADERS}
        url = target
    raise TooManyRedirects(f"more than {MAX_REDIRECTS} redirects from {_shown(url)}")


def _default_deadline(timeout: TimeoutSpec) -> float:
    if timeout is None:
        return UNBOUNDED_DEADLINE_SECONDS
    connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    return (connect or 0) + (read or 0) or UNBOUNDED_DEADLINE_SECONDS


def _exchange(method: str, url: str, body: bytes | None, headers: dict[str, str],
              timeout: TimeoutSpec, deadline: Deadline, carries_secret: bool = False) -> Response:
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "http://[::1/": an unclosed IPv6 bracket
        raise InvalidURL(f"not a valid URL ({exc}): {_shown(url)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidURL(f"not an http(s) URL: {_shown(url)}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidURL(f"bad port in {_shown(url)}") from None
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):  # http.client refuses them later
        raise InvalidURL(f"the URL has a space or control character: {_shown(url)}")
    connect_timeout, read_timeout = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    connect_timeout = min(connect_timeout or deadline.seconds, deadline.remaining())
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    headers = dict(headers)
    what = f"{method} {_shown(url)}"
    if carries_secret:
        _check_destination(what, outbound.check_name, parts.hostname)
    connection, via_plain_proxy, proxied = _connection(parts.scheme, parts.hostname, port, connect_timeout,
                                                       headers)
    if via_plain_proxy:  # a plain HTTP proxy is asked for the absolute URL
        target = f"http://{parts.netloc.rpartition('@')[2]}{target}"
    connection.timeout = connect_timeout
    try:
        connection.connect()
    except TimeoutError:
        connection.close()
        deadline.remaining()  # the deadline, not the connect timeout, when that is what ran out
        raise ConnectTimeout(f"{what}: no connection within {connect_timeout:g} s") from None
    except OSError as exc:
        connection.close()
        raise ConnectionError(f"{what}: cannot connect ({_reason(exc)})") from None
    if carries_secret:  # the address really connected to (no DNS rebinding); behind a proxy, the name's
        if proxied:
            _check_destination(what, outbound.check_host, parts.hostname, connection)
        else:
            _check_destination(what, outbound.check_address, connection.sock.getpeername()[0], connection)
    connection.sock.settimeout(read_timeout)
    deadline.guard(connection)
    try:
        connection.request(method, target, body=body, headers=headers)
        raw = connection.getresponse()
    except TimeoutError:
        connection.close()
        deadline.check()
        raise ReadTimeout(f"{what}: no answer within {read_timeout:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        if deadline.expired:
            raise DeadlineExceeded(f"{what}: no complete answer within {deadline.seconds:g} s") from None
        raise ConnectionError(f"{what}: connection failed ({_reason(exc)})") from None
    if deadline.expired:  # headers cut short by the deadline read as complete ones
        raw.close()
        connection.close()
        raise DeadlineExceeded(f"{what}: no complete answer within {deadline.seconds:g} s")
    return Response(raw, connection, url, deadline)


_proxies_cache: list = [None, {}]  # [config.proxy_variables(), urllib's proxies for them]
_proxies_lock = threading.Lock()


def _env_proxies() -> dict[str, str]:
    """urllib's proxies from the environment ({scheme: URL}, "no": hosts), read again only when
    a proxy variable changed: reading them scans the whole environment, at every probe before."""
    key = config.proxy_variables()
    with _proxies_lock:
        if _proxies_cache[0] != key:
            _proxies_cache[:] = [key, getproxies_environment()]
        return _proxies_cache[1]


def _loopback(host: str) -> bool:
    """This machine's loopback (localhost, 127.0.0.0/8, ::1): never asked of a proxy, whose own
    loopback it would be. Go's net/http does the same whatever no_proxy says."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _connection(scheme: str, host: str, port: int, timeout: float | None,
                headers: dict[str, str]) -> tuple[http.client.HTTPConnection, bool, bool]:
    """A connection to the server, or to the proxy the environment names for it; then
    (connection, True for plain HTTP whose proxy gets the request itself, True for any proxy).
    HTTPS goes through a tunnel."""
    proxies = _env_proxies()
    proxy = None if _loopback(host) or proxy_bypass_environment(host, proxies) else proxies.get(scheme)
    if not proxy:
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=_tls()), False, False
        return http.client.HTTPConnection(host, port, timeout=timeout), False, False
    proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    proxy_auth = {}
    if proxy_parts.username:
        pair = f"{unquote(proxy_parts.username)}:{unquote(proxy_parts.password or '')}"
        proxy_auth["Proxy-Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    proxy_host, proxy_port = proxy_parts.hostname, proxy_parts.port or 8080
    if scheme == "https":  # a CONNECT tunnel: the proxy sees neither path nor headers
        connection = http.client.HTTPSConnection(proxy_host, proxy_port, timeout=timeout, context=_tls())
        connection.set_tunnel(host, port, headers=proxy_auth)
        return connection, False, True
    headers.update(proxy_auth)
    return http.client.HTTPConnection(proxy_host, proxy_port, timeout=timeout), True, True


_TLS_CONTEXT: ssl.SSLContext | None = None


def _check_destination(what: str, check, value: str, connection=None) -> None:
    try:
        check(value)
    except outbound.ForbiddenDestination as exc:
        if connection is not None:
            connection.close()
        raise ForbiddenDestination(f"{what}: {exc}") from None


def _tls() -> ssl.SSLContext:
    global _TLS_CONTEXT
    if _TLS_CONTEXT is None:  # built once: loading the CA store is the costly part
        _TLS_CONTEXT = ssl.create_default_context()
    return _TLS_CONTEXT


def _io(read, deadline: Deadline | None = None):
    """Run a body read, with its failures as this module's exceptions."""
    try:
        return read()
    except TimeoutError:
        if deadline is not None:
            deadline.check()
        raise ReadTimeout("the server went silent in the middle of its answer") from None
    except (OSError, http.client.HTTPException) as exc:
        if deadline is not None:
            deadline.check()
        raise ConnectionError(f"the answer broke off ({_reason(exc)})") from None


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def _shown(url: str) -> str:
    """The URL for a message: no query string and no user:password (also for a malformed URL)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact.strip_userinfo(url).split("?", 1)[0].split("#", 1)[0]
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
