"""Status and VRAM of local model endpoints: configured ones plus the platform's own services.

Each server type is asked the way it tells the truth: Ollama by `/api/ps`, vLLM by
`/health` (503 once its engine died; `/version` keeps answering then, so it is not used)
and `/v1/models`, a FastAPI app by its health URL. VRAM of processes we started comes
from NVML's per-process memory of the PID and its children (vLLM's engine is a child).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

import psutil

from common import http_client
from common.config import Settings
from common.redact import scrub_line
from common.nvml import Nvml, running_processes
from common.store.services import Endpoint
from common.sources import config_db
from common.sources.ollama_client import OllamaClient, OllamaError, ollama_base_url

PROBE_TIMEOUT = (1.0, 3.0)
ERROR_TEXT_MAX = 200
HERMES_DEFAULT_PORT = 8642

# How often endpoints are probed, in the exporter and in the admin.
REFRESH_SECONDS = 10.0


@dataclass(frozen=True)
class EndpointTarget:
    name: str
    model: str
    service_type: str
    server: str
    api_type: str
    base_url: str
    health_url: str = ""
    pid: int | None = None
    container_id: str = ""
    desired: str = ""  # status the admin last recorded ("" for discovered services)
    recorded_error: str = ""
    discovered: bool = False
    internal_port: str = ""  # port the admin started the server on, "" when not recorded

    @property
    def port(self) -> str:
        """Port the endpoint listens on inside the VM: the recorded one, else its base URL's."""
        return self.internal_port or url_port(self.base_url)


@dataclass(frozen=True)
class EndpointState:
    target: EndpointTarget
    status: str
    vram_bytes: float | None  # None: unknown (no GPU / NVML)
    error: str  # last error text, kept after recovery


@dataclass(frozen=True)
class ProbeResult:
    status: str
    vram_bytes: float | None
    error: str = ""


def endpoint_log_path(settings: Settings, name: str) -> Path:
    """Where the admin writes a started server's output; read here for the error tail."""
    return Path(settings.state_dir) / "endpoints" / f"{name}.log"


def short_error(text: str) -> str:
    """One line, bounded, secrets masked (common.redact): it becomes a label value and a page cell."""
    return scrub_line(text, ERROR_TEXT_MAX)


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        with open(path, errors="replace") as fh:
            kept = deque((l.strip() for l in fh if l.strip()), maxlen=lines)
    except OSError:
        return ""
    return " | ".join(kept)


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def process_tree(pid: int) -> set[int]:
    try:
        proc = psutil.Process(pid)
        return {pid, *(c.pid for c in proc.children(recursive=True))}
    except psutil.Error:
        return {pid}


def gpu_memory_of(nvml: Nvml, pids: set[int]) -> float | None:
    """Bytes of GPU memory the processes hold over all GPUs; None without NVML."""
    if not nvml.available():
        return None
    module = nvml.module
    used = 0
    for index in range(module.nvmlDeviceGetCount()):
        handle = module.nvmlDeviceGetHandleByIndex(index)
        for proc in running_processes(module, handle) or []:
            if proc.pid in pids and proc.usedGpuMemory:
                used += proc.usedGpuMemory
    return float(used)


def _http_error(exc: Exception) -> str:
    if isinstance(exc, http_client.Timeout):
        return "timed out"
    if isinstance(exc, http_client.ConnectionError):
        return "connection refused"
    return type(exc).__name__


def server_root(url: str) -> str:
    """vLLM, Hermes and Ollama's openai API publish /v1 URLs; /health and Ollama's /api live at the root."""
    url = url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def normalize_ollama_tag(model: str) -> str:
    """Ollama names a model without a tag `<name>:latest`; a ':' before the last '/' is a registry port."""
    return model if ":" in model.rpartition("/")[2] else f"{model}:latest"


def probe_ollama(target: EndpointTarget) -> ProbeResult:
    try:
        running = OllamaClient(server_root(target.base_url), timeout=PROBE_TIMEOUT).ps()
    except OllamaError as exc:
        return _unreachable(target, str(exc))
    if not target.model:  # the server itself: running, VRAM of every loaded model
        return ProbeResult("running", float(sum(m.get("size_vram") or 0 for m in running)))
    wanted = normalize_ollama_tag(target.model)
    for entry in running:
        if normalize_ollama_tag(entry.get("model") or entry.get("name") or "") == wanted:
            return ProbeResult("running", float(entry.get("size_vram") or 0))
    # Server up, model not in memory: stopped (loading shows as starting while the job runs).
    status = "starting" if target.desired == "starting" else "stopped"
    return ProbeResult(status, 0.0)


def probe_vllm(target: EndpointTarget, nvml: Nvml) -> ProbeResult:
    root = server_root(target.base_url)
    try:
        health = http_client.get(f"{root}/health", timeout=PROBE_TIMEOUT)
    except http_client.RequestException as exc:
        return _unreachable(target, f"/health: {_http_error(exc)}")
    if health.status_code == 503:
        return ProbeResult("error", _vram(target, nvml), "engine dead: /health answered 503")
    if health.status_code != 200:
        return ProbeResult("error", _vram(target, nvml), f"/health answered HTTP {health.status_code}")
    try:
        models = http_client.get(f"{root}/v1/models", timeout=PROBE_TIMEOUT)
        models.raise_for_status()
        served = [m.get("id") for m in models.json().get("data", [])]
    except (http_client.RequestException, ValueError, AttributeError) as exc:
        return ProbeResult("error", _vram(target, nvml), f"/v1/models: {_http_error(exc)}")
    if not served:
        return ProbeResult("error", _vram(target, nvml), "/v1/models lists no model")
    return ProbeResult("running", _vram(target, nvml))


def probe_http_health(target: EndpointTarget, nvml: Nvml) -> ProbeResult:
    url = target.health_url or f"{server_root(target.base_url)}/health"
    try:
        response = http_client.get(url, timeout=PROBE_TIMEOUT)
    except http_client.RequestException as exc:
        return _unreachable(target, f"health: {_http_error(exc)}")
    if 200 <= response.status_code < 300:
        return ProbeResult("running", _vram(target, nvml))
    return ProbeResult("error", _vram(target, nvml), f"health answered HTTP {response.status_code}")


def _vram(target: EndpointTarget, nvml: Nvml) -> float | None:
    if not target.pid:
        return None
    return gpu_memory_of(nvml, process_tree(target.pid))


def _unreachable(target: EndpointTarget, error: str) -> ProbeResult:
    if process_alive(target.pid):
        return ProbeResult("starting", None)  # started, not listening yet (vLLM loads for minutes)
    if target.desired == "starting" and target.container_id:
        return ProbeResult("starting", None)
    # The admin's status refresher records this result as the next `desired`: an error stays one.
    if target.pid or target.container_id or target.desired in ("starting", "running", "error"):
        return ProbeResult("error", 0.0, error)  # we started it and it is gone
    return ProbeResult("stopped", 0.0)


def probe(target: EndpointTarget, nvml: Nvml, settings: Settings) -> ProbeResult:
    if target.server == "ollama":
        result = probe_ollama(target)
    elif target.server == "vllm":
        result = probe_vllm(target, nvml)
    else:
        result = probe_http_health(target, nvml)
    if result.status == "error" and not target.discovered:
        tail = log_tail(endpoint_log_path(settings, target.name))
        if tail:
            result = replace(result, error=f"{result.error}; log: {tail}")
    return replace(result, error=short_error(result.error))


def target_from_row(row: Endpoint) -> EndpointTarget:
    return EndpointTarget(
        name=row.name, model=row.model or "", service_type=row.service_type, server=row.server,
        api_type=row.api_type, base_url=row.base_url or "", health_url=row.health_url or "",
        pid=row.pid, container_id=row.container_id or "", desired=row.status or "stopped",
        recorded_error=row.last_error or "",
        internal_port=str(row.internal_port or ""))


def url_port(url: str) -> str:
    """The port of an http(s) URL, explicit or the scheme's default; "" when there is none."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme)
    return str(port) if port else ""


def configured_targets(settings: Settings) -> list[EndpointTarget]:
    """The endpoints configured in the admin, from the exporter's shared DB snapshot."""
    db = config_db.shared(settings.db_path)
    db.add_read("endpoints", config_db.all_rows(Endpoint, target_from_row), ())
    return list(db.fresh("endpoints"))


def discovered_targets(env: Mapping[str, str]) -> list[EndpointTarget]:
    """The platform's own services, found from its environment without configuration."""
    found = []
    if env.get("OLLAMA_API_BASE"):
        found.append(EndpointTarget("ollama", "", "LLM", "ollama", "ollama",
                                    ollama_base_url(env), discovered=True))
    if env.get("VLLM_SERVER_URL"):
        found.append(EndpointTarget("vllm", "", "LLM", "vllm", "openai",
                                    env["VLLM_SERVER_URL"].rstrip("/"), discovered=True))
    if env.get("DOCLING_SERVER_URL"):
        url = env["DOCLING_SERVER_URL"].rstrip("/")
        found.append(EndpointTarget("docling", "", "VLM", "fastapi", "openAPI", url,
                                    health_url=f"{url}/health", discovered=True))
    port = env.get("API_SERVER_PORT") or str(HERMES_DEFAULT_PORT)  # Hermes' own variable
    found.append(EndpointTarget("hermes-agent", "", "LLM", "fastapi", "openai",
                                f"http://127.0.0.1:{port}/v1",
                                health_url=f"http://127.0.0.1:{port}/health", discovered=True))
    return found


def error_to_show(result: ProbeResult, target: EndpointTarget, last_seen: str = "") -> str:
    """The endpoint's error after a probe. While the admin's recorded status is still error, the
    recorded error (a failed start: "cannot run 'vllm' ... (is vLLM installed?)") explains more
    than what the probe then finds ("/health: connection refused"), so it stays until the endpoint
    is seen up (the status becomes running) or restarted (the start clears it); otherwise the
    probe's error, else the last one seen, else the recorded one (kept after recovery)."""
    if result.status == "error" and target.desired == "error" and target.recorded_error:
        return short_error(target.recorded_error)
    return result.error or last_seen or short_error(target.recorded_error)


def unconfigured_discovered(env: Mapping[str, str], configured: list[EndpointTarget]) -> list[EndpointTarget]:
    """The platform's services not already configured (by name or by server address)."""
    names = {t.name for t in configured}
    urls = {server_root(t.base_url) for t in configured}
    return [t for t in discovered_targets(env) if t.name not in names and server_root(t.base_url) not in urls]


class EndpointProber:
    """Refresh function of the endpoints BackgroundSource; remembers each endpoint's last error."""

    def __init__(self, settings: Settings, nvml: Nvml):
        self.settings = settings
        self.nvml = nvml
        self._last_errors: dict[str, str] = {}

    def targets(self) -> list[EndpointTarget]:
        configured = configured_targets(self.settings)
        return configured + unconfigured_discovered(self.settings.env, configured)

    def refresh(self) -> list[EndpointState]:
        states = []
        for target in self.targets():
            try:
                result = probe(target, self.nvml, self.settings)
            except Exception as exc:  # one bad row (e.g. an empty base URL) must not hide the others
                result = ProbeResult("error", None, f"probe failed: {type(exc).__name__}: {exc}")
            error = error_to_show(result, target, self._last_errors.get(target.name, ""))
            if result.error:
                self._last_errors[target.name] = error
            states.append(EndpointState(target, result.status, result.vram_bytes, error))
        return states
