"""A small client for Ollama's HTTP API: list, show, ps, pull (streamed), delete, generate.

Used by the exporter (read-only calls, short timeouts) and by the admin (pull, delete,
benchmark). Every failure becomes an OllamaError with a message a user can act on.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterator, Mapping
from urllib.parse import urlsplit

from common import http_client

DEFAULT_PORT = 11434
# Short on the scrape side: Ollama answers list/show/ps from memory.
DEFAULT_TIMEOUT = (2.0, 5.0)
# A pull may sit silent while Ollama verifies a multi-GB blob.
PULL_READ_TIMEOUT = 300.0
GENERATE_READ_TIMEOUT = 300.0
# Addresses a server binds to that mean "every interface": a client must use loopback.
_ANY_ADDRESSES = {"", "0.0.0.0", "::", "[::]"}


class OllamaError(Exception):
    """A failed Ollama call, with a message meant for the user."""


class OllamaNotFound(OllamaError):
    """The model does not exist (on the server, or in the registry for a pull)."""


def ollama_base_url(env: Mapping[str, str]) -> str:
    """Base URL from OLLAMA_API_BASE (as the platform sets it), else OLLAMA_HOST, else loopback."""
    api_base = (env.get("OLLAMA_API_BASE") or "").strip()
    if api_base:
        url = api_base.rstrip("/")
        return url[: -len("/api")] if url.endswith("/api") else url
    return _url_from_host((env.get("OLLAMA_HOST") or "").strip())


def _url_from_host(host: str) -> str:
    # OLLAMA_HOST is what the server binds: "0.0.0.0", "0.0.0.0:11434", "http://h:p", "h"...
    scheme = "http"
    if "://" in host:
        scheme, host = host.split("://", 1)
    parts = urlsplit(f"//{host.rstrip('/')}")
    hostname = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    if hostname in _ANY_ADDRESSES or hostname == "::":
        hostname = "127.0.0.1"
    if port is None:
        port = 443 if scheme == "https" else DEFAULT_PORT
    if ":" in hostname:  # IPv6 literal
        hostname = f"[{hostname}]"
    return f"{scheme}://{hostname}:{port}"


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

    # -- streamed pull -----------------------------------------------------------------
    def pull(self, model: str) -> Iterator[PullProgress]:
        """Yield progress after each streamed line; raise OllamaError on an error line."""
        response = self._send("POST", "/api/pull", {"model": model, "stream": True},
                              read_timeout=PULL_READ_TIMEOUT, stream=True)
        layers: dict[str, tuple[int, int]] = {}
        with response:
            for line in response.iter_lines():
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
                yield PullProgress(
                    status=str(event.get("status", "")),
                    completed=sum(c for c, _ in layers.values()),
                    total=sum(t for _, t in layers.values()),
                    layers=dict(layers), new_layer=new_layer)

    # -- plumbing -----------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict | None = None, *,
              read_timeout: float | None = None) -> dict:
        response = self._send(method, path, body, read_timeout=read_timeout)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise OllamaError(f"Ollama at {self.base_url} answered {path} with non-JSON") from None

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
                detail = response.text[:200]
            response.close()
            what = f"{path.rsplit('/', 1)[-1]} {body.get('model', '') if body else ''}".strip()
            raise _error_for(response.status_code, what, detail)
        return response


def _error_for(status: int, what: str, detail: str) -> OllamaError:
    cls = OllamaNotFound if status == 404 else OllamaError
    return cls(f"Ollama {what}: {detail or f'HTTP {status}'}")
