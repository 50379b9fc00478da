"""The one client for Ollama's HTTP API: tags, show, ps, pull (streamed), delete, generate, keep_alive.

Used by the exporter (read-only calls, short timeouts) and by the admin (pull, delete,
benchmark, load/unload); resolve_ollama is the one reading of OLLAMA_API_BASE / OLLAMA_HOST. Every failure becomes an OllamaError with a message a user can act on.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterator, Mapping

from common import http_client, redact

DEFAULT_PORT = 11434
# Short on the scrape side: Ollama answers list/show/ps from memory.
DEFAULT_TIMEOUT = (2.0, 5.0)
# A pull may sit silent while Ollama verifies a multi-GB blob.
PULL_READ_TIMEOUT = 300.0
GENERATE_READ_TIMEOUT = 300.0
# Loading a large model from disk into GPU memory can take minutes.
LOAD_READ_TIMEOUT = 600.0
# Addresses a server binds to that mean "every interface": a client must use loopback.
_ANY_ADDRESSES = {"", "0.0.0.0", "::", "[::]"}


class OllamaError(Exception):
    """A failed Ollama call, with a message meant for the user."""


class OllamaNotFound(OllamaError):
    """The model does not exist (on the server, or in the registry for a pull)."""


@dataclass(frozen=True)
class OllamaAddress:
    """Where the platform's Ollama answers, and which variable said so.

    base_url: scheme://host:port[/prefix], never a trailing "/" or "/api" (the client adds
    /api/...). problem: "" or why the variable's value is unusable (base_url is then a best guess).
    """

    var: str
    base_url: str
    port: int
    problem: str = ""


def resolve_ollama(env: Mapping[str, str]) -> OllamaAddress:
    """OLLAMA_API_BASE (as the platform sets it), else OLLAMA_HOST, else loopback:11434.

    One rule for both variables, the one the `ollama` CLI applies to OLLAMA_HOST: no scheme means
    http and port 11434; http:// or https:// without a port means 80 or 443; a bind-all host
    (0.0.0.0, ::, empty) means loopback; an IPv6 host is bracketed; a path is kept as a
    reverse-proxy prefix minus a trailing "/" and "/api"; user:password is dropped.
    """
    for var in ("OLLAMA_API_BASE", "OLLAMA_HOST"):
        value = (env.get(var) or "").strip()
        if value:
            return OllamaAddress(var, *_parse_address(var, value))
    return OllamaAddress("OLLAMA_HOST", f"http://127.0.0.1:{DEFAULT_PORT}", DEFAULT_PORT)


def ollama_base_url(env: Mapping[str, str]) -> str:
    """The base URL resolve_ollama gives (a best guess when the variable is unusable)."""
    return resolve_ollama(env).base_url


def _parse_address(var: str, value: str) -> tuple[str, int, str]:
    scheme, sep, rest = value.partition("://")
    if sep:
        scheme = scheme.lower()
        default_port = 443 if scheme == "https" else 80
    else:
        scheme, rest, default_port = "http", value, DEFAULT_PORT
    problem = "" if scheme in ("http", "https") else f"{var}={value!r} is not an http(s) address"
    hostport, _, path = rest.partition("/")
    host, port_text = _split_host_port(hostport.rpartition("@")[2])
    port = default_port
    if port_text:
        if port_text.isdigit() and 0 < int(port_text) < 65536:
            port = int(port_text)
        else:
            problem = problem or f"{var}={value!r} has no valid port (1-65535)"
    if host in _ANY_ADDRESSES:
        host = "127.0.0.1"
    elif ":" in host:  # IPv6 literal
        host = f"[{host}]"
    path = path.strip("/")
    if path == "api" or path.endswith("/api"):
        path = path[:-3].rstrip("/")
    return f"{scheme}://{host}:{port}" + (f"/{path}" if path else ""), port, problem


def _split_host_port(hostport: str) -> tuple[str, str]:
    """("[::1]:11434" -> "::1", "11434"), ("::1" -> "::1", ""), ("h:1" -> "h", "1"), ("h" -> "h", "")."""
    if hostport.startswith("["):
        host, _, after = hostport[1:].partition("]")
        return host, after[1:] if after.startswith(":") else ""
    if hostport.count(":") > 1:  # a bare IPv6 address has no port
        return hostport, ""
    host, _, port = hostport.partition(":")
    return host, port


@dataclass
class PullProgress:
    """One figure for a pull made of several layers: totals and completed bytes summed."""

    status: str
    completed: int = 0
    total: int = 0
    layers: dict[str, tuple[int, int]] = field(default_factory=dict)  # digest -> (completed, total)
    new_layer: bool = False  # this line announced a layer not seen before

    @property
    def ratio(self) -> float | None:
        return self.completed / self.total if self.total else None


class OllamaClient:
    def __init__(self, base_url: str, timeout: tuple[float, float] = DEFAULT_TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    @classmethod
    def from_env(cls, env: Mapping[str, str], **kwargs) -> "OllamaClient":
        return cls(ollama_base_url(env), **kwargs)

    # -- plain calls -----------------------------------------------------------------
    def tags(self) -> list[dict]:
        return self._call("GET", "/api/tags").get("models") or []

    def show(self, model: str) -> dict:
        return self._call("POST", "/api/show", {"model": model})

    def ps(self) -> list[dict]:
        return self._call("GET", "/api/ps").get("models") or []

    def delete(self, model: str) -> None:
        self._call("DELETE", "/api/delete", {"model": model})

    def generate(self, model: str, prompt: str, *, num_predict: int = 32) -> dict:
        """One non-streamed generation; the reply carries eval_count / eval_duration."""
        return self._call("POST", "/api/generate",
                          {"model": model, "prompt": prompt, "stream": False,
                           "options": {"num_predict": num_predict}},
                          read_timeout=GENERATE_READ_TIMEOUT)

    @staticmethod
    def tokens_per_second(reply: dict) -> float | None:
        """Generation speed of a reply: eval_count / eval_duration (nanoseconds); None if absent."""
        count, duration = reply.get("eval_count"), reply.get("eval_duration")
        if not isinstance(count, (int, float)) or not isinstance(duration, (int, float)) or count <= 0 or duration <= 0:
            return None
        return count / (duration / 1e9)

    def keep_alive(self, model: str, keep_alive: int | str) -> dict:
        """Load a model and keep it loaded (-1: until unloaded, or seconds / "5m"), or unload it (0).

        /api/generate with no prompt: Ollama loads or unloads without generating and answers
        {"model", "done": true, "done_reason": "load" | "unload"}.
        """
        return self._call("POST", "/api/generate", {"model": model, "keep_alive": keep_alive, "stream": False},
                          read_timeout=LOAD_READ_TIMEOUT)

    # -- streamed pull -----------------------------------------------------------------
    def pull(self, model: str) -> Iterator[PullProgress]:
        """Yield progress after each streamed line; raise OllamaError on an error line."""
        response = self._send("POST", "/api/pull", {"model": model, "stream": True},
                              read_timeout=PULL_READ_TIMEOUT, stream=True)
        layers: dict[str, tuple[int, int]] = {}
        status = ""
        with response:
            for line in _lines(response, model):
                if not line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    raise OllamaError(f"Ollama sent an unreadable pull line: {line[:200]!r}") from None
                if "error" in event:
                    raise _error_for(404 if "not exist" in str(event["error"]) else 500,
                                     f"pull {model}", str(event["error"]))
                digest = event.get("digest")
                new_layer = False
                if digest and event.get("total") is not None:
                    new_layer = digest not in layers
                    layers[digest] = (int(event.get("completed") or 0), int(event["total"]))
                status = str(event.get("status", ""))
                yield PullProgress(
                    status=status,
                    completed=sum(c for c, _ in layers.values()),
                    total=sum(t for _, t in layers.values()),
                    layers=dict(layers), new_layer=new_layer)
        if status != "success":  # Ollama's last line of every finished pull
            done, total = sum(c for c, _ in layers.values()), sum(t for _, t in layers.values())
            at = f" at {100 * done / total:.0f} % ({done} of {total} bytes)" if total else ""
            raise OllamaError(f"pull {model} did not finish: Ollama's answer ended{at} without "
                              f"\"success\" (last status: {status or 'none'})")

    # -- plumbing -----------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict | None = None, *,
              read_timeout: float | None = None) -> dict:
        response = self._send(method, path, body, read_timeout=read_timeout)
        if not response.content:
            return {}
        try:
            answer = response.json()
        except ValueError:
            raise OllamaError(f"Ollama at {self.base_url} answered {path} with non-JSON") from None
        if not isinstance(answer, dict):  # every answer of Ollama's API is an object
            raise OllamaError(f"Ollama at {self.base_url} answered {path} with a JSON "
                              f"{type(answer).__name__}, not an object")
        return answer

    def _send(self, method: str, path: str, body: dict | None, *, read_timeout: float | None = None,
              stream: bool = False) -> http_client.Response:
        timeout = (self.timeout[0], read_timeout or self.timeout[1])
        try:
            response = http_client.request(method, self.base_url + path, json=body, timeout=timeout,
                                           stream=stream)
        except http_client.ConnectionError:
            raise OllamaError(f"Ollama is not reachable at {self.base_url} (is it running?)") from None
        except http_client.Timeout:
            raise OllamaError(f"Ollama at {self.base_url} did not answer {path} in time") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("error", "")
            except ValueError:
                detail = redact.excerpt(response.text, 200)
            response.close()
            what = f"{path.rsplit('/', 1)[-1]} {body.get('model', '') if body else ''}".strip()
            raise _error_for(response.status_code, what, detail)
        return response


def _lines(response: http_client.Response, model: str) -> Iterator[bytes]:
    """The streamed lines; a connection cut mid-answer is an OllamaError saying so."""
    try:
        yield from response.iter_lines()
    except http_client.RequestException as exc:
        raise OllamaError(f"pull {model} did not finish: {exc}") from None


def _error_for(status: int, what: str, detail: str) -> OllamaError:
    cls = OllamaNotFound if status == 404 else OllamaError
    return cls(f"Ollama {what}: {detail or f'HTTP {status}'}")
