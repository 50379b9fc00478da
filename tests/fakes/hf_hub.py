"""A Hugging Face hub stand-in on loopback (point HF_ENDPOINT at it).

Serves what huggingface_hub's `snapshot_download` and `repo_info` ask for:
  GET  /api/models/<id>/revision/<rev>        repo info (sha, siblings with sizes)
  GET  /api/models/<id>/tree/<rev>            recursive file listing (size, oid, lfs)
  HEAD /<id>/resolve/<rev>/<file>             x-repo-commit, etag, content-length
  GET  /<id>/resolve/<rev>/<file>             the bytes
Unknown repos and revisions answer 404 with the X-Error-Code the real hub sends.
"""
from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace
from typing import Iterator
from urllib.parse import unquote, urlsplit

from tests.fakes.loopback import send_json, serving

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pth")


@dataclass
class FakeRepo:
    files: dict[str, bytes]
    # Sizes announced by the API instead of the real ones (a repo "too big for the disk").
    declared_sizes: dict[str, int] = field(default_factory=dict)

    @property
    def commit(self) -> str:
        digest = hashlib.sha1()
        for name in sorted(self.files):
            digest.update(name.encode() + hashlib.sha256(self.files[name]).digest())
        return digest.hexdigest()

    def size(self, name: str) -> int:
        return self.declared_sizes.get(name, len(self.files[name]))

    def entry(self, name: str) -> dict:
        data = self.files[name]
        entry = {"type": "file", "path": name, "size": self.size(name),
                 "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
        if name.endswith(LFS_SUFFIXES):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": self.size(name),
                            "pointerSize": 134}
        return entry

    def etag(self, name: str) -> str:
        entry = self.entry(name)
        return entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]


class HubState:
    def __init__(self):
        self.repos: dict[str, FakeRepo] = {}
        self.chunk_delay = 0.0  # seconds between 64 KiB chunks of a file (to watch progress)
        self.requests: list[tuple[str, str]] = []


class _HubHandler(BaseHTTPRequestHandler):
    state: HubState
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._dispatch(send_body=True)

    def do_HEAD(self):
        self._dispatch(send_body=False)

    def _dispatch(self, send_body: bool) -> None:
        self.state.requests.append((self.command, self.path))
        path = unquote(urlsplit(self.path).path)
        if path.startswith("/api/models/"):
            return self._api(path[len("/api/models/"):])
        if "/resolve/" in path:
            repo_id, _, rest = path.lstrip("/").partition("/resolve/")
            revision, _, filename = rest.partition("/")
            return self._resolve(repo_id, revision, filename, send_body)
        self._json(404, {"error": "not found"})

    def _repo(self, repo_id: str, revision: str) -> FakeRepo | None:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return None
        if revision not in ("main", repo.commit):
            self._json(404, {"error": f"Invalid rev id: {revision}"}, {"X-Error-Code": "RevisionNotFound"})
            return None
        return repo

    def _api(self, rest: str) -> None:
        for kind in ("/revision/", "/tree/"):
            if kind in rest:
                repo_id, _, revision = rest.partition(kind)
                break
        else:
            repo_id, kind, revision = rest, "/revision/", "main"
        revision = revision.split("/")[0]
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        if kind == "/tree/":
            return self._json(200, [repo.entry(name) for name in sorted(repo.files)])
        siblings = []
        for name in sorted(repo.files):
            entry = repo.entry(name)
            siblings.append({"rfilename": name, "size": entry["size"], "blobId": entry["oid"],
                             **({"lfs": {"sha256": entry["lfs"]["oid"], "size": entry["size"],
                                         "pointerSize": 134}} if "lfs" in entry else {})})
        self._json(200, {"_id": repo_id, "id": repo_id, "modelId": repo_id, "sha": repo.commit,
                         "private": False, "disabled": False, "gated": False, "downloads": 0,
                         "likes": 0, "tags": [], "siblings": siblings,
                         "lastModified": "2026-01-01T00:00:00.000Z"})

    def _resolve(self, repo_id: str, revision: str, filename: str, send_body: bool) -> None:
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        if filename not in repo.files:
            return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
        data = repo.files[filename]
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{repo.etag(filename)}"')
        self.send_header("X-Repo-Commit", repo.commit)
        self.end_headers()
        if not send_body:
            return
        for start in range(0, len(data), 65536):
            time.sleep(self.state.chunk_delay)
            self.wfile.write(data[start:start + 65536])

    def _json(self, status: int, obj, headers: dict | None = None) -> None:
        send_json(self, status, obj, headers=headers)


def hub_handler(state: HubState) -> type[BaseHTTPRequestHandler]:
    return type("FakeHubHandler", (_HubHandler,), {"state": state})


@contextlib.contextmanager
def fake_hub(state: HubState | None = None) -> Iterator[SimpleNamespace]:
    """`with fake_hub() as hub:` then HF_ENDPOINT=hub.base_url; hub.state holds the repos"""
    state = state or HubState()
    with serving(hub_handler(state)) as url:
        yield SimpleNamespace(base_url=url, state=state)