"""An Ollama stand-in on loopback: tags, show, ps, pull (streamed NDJSON), delete, generate.

Speaks the same JSON as Ollama's HTTP API so the real client code is what gets tested.
With `models_dir` it also lays out manifests and (sparse) blobs like Ollama does under
OLLAMA_MODELS, so the blob-digest deduplication runs on real files.

    state = OllamaState(models_dir=tmp / "ollama")
    state.install(fake_model("qwen3:8b"))
    state.registry["tinyllama:latest"] = fake_model("tinyllama:latest")   # pullable
    with fake_ollama(state) as ollama: ... ollama.base_url
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

from tests.fakes.loopback import send_json, serving

MODEL_MEDIA = "application/vnd.ollama.image.model"
PARAMS_MEDIA = "application/vnd.ollama.image.params"
TEMPLATE_MEDIA = "application/vnd.ollama.image.template"
CONFIG_MEDIA = "application/vnd.docker.container.image.v1+json"


def normalize(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Layer:
    digest: str
    size: int
    media_type: str


@dataclass
class FakeModel:
    name: str
    layers: list[Layer]
    family: str = "llama"
    parameter_size: str = "8.0B"
    parameter_count: int = 8_030_261_248
    quantization_level: str = "Q4_K_M"
    capabilities: list[str] = field(default_factory=lambda: ["completion"])
    parameters: str = ""  # Modelfile PARAMETER lines as /api/show returns them
    model_info: dict = field(default_factory=dict)
    modified_at: str = "2026-01-02T03:04:05.123456789+00:00"
    remote_host: str = ""  # a cloud model (Ollama 0.12+): listed, run on that host

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def weights(self) -> Layer:
        return next(layer for layer in self.layers if layer.media_type == MODEL_MEDIA)

    @property
    def digest(self) -> str:
        return digest_of(json.dumps([layer.digest for layer in self.layers]))


def fake_model(name: str, *, weights_size: int = 300_000, weights_key: str | None = None,
               num_ctx: int | None = None, capabilities: list[str] | None = None,
               arch: str = "llama", context_length: int = 8192, block_count: int = 4,
               head_count: int = 8, head_count_kv: int = 2, embedding_length: int = 512,
               **fields) -> FakeModel:
    """A small model; variants pass the same `weights_key` to share the weights blob."""
    name = normalize(name)
    params = f"num_ctx {num_ctx}" if num_ctx else ""
    layers = [Layer(digest_of(f"weights:{weights_key or name}"), weights_size, MODEL_MEDIA),
              Layer(digest_of("template"), 120, TEMPLATE_MEDIA)]
    if params:
        layers.append(Layer(digest_of(f"params:{params}"), len(params) + 2, PARAMS_MEDIA))
    layers.append(Layer(digest_of(f"config:{name}"), 400, CONFIG_MEDIA))
    info = {"general.architecture": arch,
            "general.parameter_count": fields.get("parameter_count", 8_030_261_248),
            f"{arch}.context_length": context_length, f"{arch}.block_count": block_count,
            f"{arch}.attention.head_count": head_count,
            f"{arch}.attention.head_count_kv": head_count_kv,
            f"{arch}.embedding_length": embedding_length}
    return FakeModel(name=name, layers=layers, family=arch, parameters=params, model_info=info,
                     capabilities=capabilities or ["completion"], **fields)


class OllamaState:
    """Installed and pullable models plus failure knobs; safe to change while serving."""

    def __init__(self, models_dir: Path | None = None):
        self.models_dir = Path(models_dir) if models_dir else None
        self.models: dict[str, FakeModel] = {}
        self.registry: dict[str, FakeModel] = {}
        self.loaded: dict[str, float] = {}  # name -> expiry (unix time)
        self.lock = threading.Lock()
        self.fail_all = False        # every call answers 500, as an Ollama that is broken
        self.pull_delay = 0.0        # seconds between pull lines (so a browser sees progress)
        # Cut a pull's answer once half of every layer arrived: "end" closes the stream cleanly
        # without "success" (a proxy giving up), "reset" drops the connection mid-chunk.
        self.pull_cut: str | None = None
        self.eval_count, self.eval_duration_ns = 24, 300_000_000  # 80 tokens/s
        self.requests: list[tuple[str, str]] = []
        # Answers as a misbehaving Ollama (an old, patched or proxied one) gives them:
        # extra /api/tags entries as given, and whole answers by "GET /api/ps" or
        # "POST /api/show <model>" (a value sent as JSON; bytes and str sent as they are).
        self.odd_tags: list = []
        self.odd_answers: dict[str, object] = {}

    def install(self, model: FakeModel) -> None:
        with self.lock:
            self.models[model.name] = model
        self._write(model)

    def _write(self, model: FakeModel) -> None:
        if self.models_dir is None:
            return
        blobs = self.models_dir / "blobs"
        blobs.mkdir(parents=True, exist_ok=True)
        layers = [layer for layer in model.layers if layer.media_type != CONFIG_MEDIA]
        config = next(layer for layer in model.layers if layer.media_type == CONFIG_MEDIA)
        for layer in model.layers:
            with open(blobs / layer.digest.replace(":", "-"), "ab") as f:
                f.truncate(layer.size)  # sparse: the size is what matters
        manifest = {"schemaVersion": 2,
                    "config": {"mediaType": config.media_type, "digest": config.digest, "size": config.size},
                    "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}
                               for layer in layers]}
        path = manifest_file(self.models_dir, model.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest))

    def remove(self, name: str) -> bool:
        with self.lock:
            model = self.models.pop(name, None)
            still_used = {layer.digest for m in self.models.values() for layer in m.layers}
        if model is None:
            return False
        if self.models_dir is not None:
            manifest_file(self.models_dir, name).unlink(missing_ok=True)
            for layer in model.layers:
                if layer.digest not in still_used:
                    (self.models_dir / "blobs" / layer.digest.replace(":", "-")).unlink(missing_ok=True)
        return True


def manifest_file(models_dir: Path, name: str) -> Path:
    base, tag = name.rsplit(":", 1)
    parts = base.split("/")
    if len(parts) == 1:
        parts = ["registry.ollama.ai", "library", *parts]
    elif len(parts) == 2:
        parts = ["registry.ollama.ai", *parts]
    return models_dir.joinpath("manifests", *parts, tag)


def _details(model: FakeModel) -> dict:
    return {"parent_model": "", "format": "gguf", "family": model.family, "families": [model.family],
            "parameter_size": model.parameter_size, "quantization_level": model.quantization_level}


class _OllamaHandler(BaseHTTPRequestHandler):
    state: OllamaState
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def do_HEAD(self):
        self._send(200, {})

    def _dispatch(self) -> None:
        state = self.state
        state.requests.append((self.command, self.path))
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        if state.fail_all:
            return self._send(500, {"error": "fake ollama: internal error"})
        for key in (f"{self.command} {self.path} {body.get('model', '')}", f"{self.command} {self.path}"):
            if key in state.odd_answers:
                return self._send(200, state.odd_answers[key])
        route = {("GET", "/api/tags"): self._tags, ("POST", "/api/show"): self._show,
                 ("GET", "/api/ps"): self._ps, ("POST", "/api/pull"): self._pull,
                 ("DELETE", "/api/delete"): self._delete, ("POST", "/api/generate"): self._generate,
                 ("GET", "/api/version"): lambda b: self._send(200, {"version": "0.12.0"}),
                 ("GET", "/"): lambda b: self._send(200, "Ollama is running")}
        handler = route.get((self.command, self.path.split("?")[0]))
        if handler is None:
            return self._send(404, {"error": "not found"})
        handler(body)

    def _model(self, body: dict) -> FakeModel | None:
        name = normalize(body.get("model") or body.get("name") or "")
        with self.state.lock:
            return self.state.models.get(name)

    def _tags(self, _body):
        with self.state.lock:
            models = list(self.state.models.values())
        self._send(200, {"models": [{"name": m.name, "model": m.name, "modified_at": m.modified_at,
                                     "size": m.size, "digest": m.digest.split(":")[1],
                                     "details": _details(m),
                                     **({"remote_model": m.name.removesuffix("-cloud"),
                                         "remote_host": m.remote_host} if m.remote_host else {})}
                                    for m in models] + list(self.state.odd_tags)})

    def _show(self, body):
        model = self._model(body)
        if model is None:
            return self._send(404, {"error": f"model '{body.get('model')}' not found"})
        blob = model.weights.digest.replace(":", "-")
        self._send(200, {"modelfile": f"# Modelfile generated by \"ollama show\"\nFROM /root/.ollama/models/blobs/"
                                      f"{blob}\nTEMPLATE {{{{ .Prompt }}}}\n",
                         "parameters": model.parameters, "template": "{{ .Prompt }}",
                         "details": _details(model), "model_info": model.model_info,
                         "capabilities": model.capabilities, "modified_at": model.modified_at})

    def _ps(self, _body):
        now = time.time()
        with self.state.lock:
            running = [(self.state.models[n], exp) for n, exp in self.state.loaded.items()
                       if exp > now and n in self.state.models]
        self._send(200, {"models": [
            {"name": m.name, "model": m.name, "size": m.size, "digest": m.digest.split(":")[1],
             "details": _details(m), "size_vram": m.size, "context_length": 4096,
             "expires_at": datetime.fromtimestamp(exp, timezone.utc).isoformat()} for m, exp in running]})

    def _delete(self, body):
        name = normalize(body.get("model") or body.get("name") or "")
        if not self.state.remove(name):
            return self._send(404, {"error": f"model '{body.get('model')}' not found"})
        self._send(200, None)

    def _generate(self, body):
        model = self._model(body)
        if model is None:
            return self._send(404, {"error": f"model '{body.get('model')}' not found"})
        keep_alive = body.get("keep_alive")
        if isinstance(keep_alive, (int, float)) and (keep_alive == 0 or not body.get("prompt")):
            # No prompt: Ollama only loads (keep_alive < 0: until unloaded) or unloads (0).
            with self.state.lock:
                if keep_alive == 0:
                    self.state.loaded.pop(model.name, None)
                else:
                    self.state.loaded[model.name] = time.time() + (10 ** 9 if keep_alive < 0 else keep_alive)
            return self._send(200, {"model": model.name, "response": "", "done": True,
                                    "done_reason": "unload" if keep_alive == 0 else "load"})
        with self.state.lock:
            self.state.loaded[model.name] = time.time() + 300
        self._send(200, {"model": model.name, "response": "Hello there.", "done": True,
                         "eval_count": self.state.eval_count,
                         "eval_duration": self.state.eval_duration_ns,
                         "prompt_eval_count": 5, "prompt_eval_duration": 10_000_000})

    def _pull(self, body):
        name = normalize(body.get("model") or body.get("name") or "")
        with self.state.lock:
            model = self.state.registry.get(name)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self._line({"status": "pulling manifest"})
            if model is None:
                self._line({"error": "pull model manifest: file does not exist"})
                return self._end()
            # Ollama announces every layer, then reports each one's completed bytes.
            for layer in model.layers:
                self._line({"status": f"pulling {layer.digest[7:19]}", "digest": layer.digest,
                            "total": layer.size, "completed": 0})
            for half in (True, False):
                if not half and self.state.pull_cut:
                    return self._cut(self.state.pull_cut)
                for layer in model.layers:
                    time.sleep(self.state.pull_delay)
                    self._line({"status": f"pulling {layer.digest[7:19]}", "digest": layer.digest,
                                "total": layer.size, "completed": layer.size // 2 if half else layer.size})
            for status in ("verifying sha256 digest", "writing manifest"):
                self._line({"status": status})
            # Like Ollama: a pulled model's modified_at is the time of the pull.
            self.state.install(replace(model, modified_at=datetime.now(timezone.utc).isoformat()))
            self._line({"status": "success"})
            self._end()
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up: like Ollama, install nothing

    def _cut(self, how: str) -> None:
        if how == "end":
            return self._end()
        self.wfile.write(b"40\r\n{\"status\": \"pull")  # a chunk announced, never completed
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _line(self, obj: dict) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _send(self, status: int, obj) -> None:
        send_json(self, status, obj, content_type="application/json; charset=utf-8")


def ollama_handler(state: OllamaState) -> type[BaseHTTPRequestHandler]:
    """Handler class bound to `state`, for `world.serve(...)`."""
    return type("FakeOllamaHandler", (_OllamaHandler,), {"state": state})


@contextlib.contextmanager
def fake_ollama(state: OllamaState | None = None) -> Iterator[SimpleNamespace]:
    """`with fake_ollama(state) as ollama:` -> ollama.base_url, ollama.state"""
    state = state or OllamaState()
    with serving(ollama_handler(state)) as url:
        yield SimpleNamespace(base_url=url, state=state)



def sample_state(models_dir: Path | None = None) -> OllamaState:
    """A base model, its 32k-context variant (sharing the weights blob), an embedder, and
    `tinyllama` (several layers) available to pull."""
    state = OllamaState(models_dir=models_dir)
    state.install(fake_model("qwen3:8b", weights_key="qwen3", modified_at="2026-01-01T00:00:00Z"))
    state.install(fake_model("qwen3:8b-32k", weights_key="qwen3", num_ctx=32768,
                             modified_at="2026-01-02T00:00:00.123456789Z"))
    state.install(fake_model("nomic-embed-text:latest", weights_size=50_000, capabilities=["embedding"],
                             arch="nomic-bert", parameter_size="137M", parameter_count=136_727_040,
                             quantization_level="F16", modified_at="2026-01-03T00:00:00Z"))
    state.registry["tinyllama:latest"] = fake_model("tinyllama", weights_size=200_000,
                                                    parameter_size="1.1B", parameter_count=1_100_048_384)
    return state


FakeOllama = fake_ollama  # the name other tests import
