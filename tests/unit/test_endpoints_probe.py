"""Endpoint status and VRAM against loopback servers speaking vLLM, Ollama and FastAPI health."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace

import pytest

from common.config import Settings
from common.nvml import Nvml
from common.sources.endpoint_probe import (EndpointTarget, discovered_targets, endpoint_log_path,
                                             gpu_memory_of, probe)
from tests.fakes import vllm_server
from tests.fakes.loopback import serving
from tests.support.env import free_port

GIB = 1024 ** 3


class FakePynvml:
    """Library seam: what common.nvml reads from pynvml, with chosen per-process memory."""

    def __init__(self, processes=(), fail_init=False):
        self.processes = list(processes)
        self.fail_init = fail_init

    def nvmlInit(self):
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, index):
        return f"gpu{index}"

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.processes]


NO_GPU = Nvml(FakePynvml(fail_init=True))


class OllamaPs(BaseHTTPRequestHandler):
    """Minimal Ollama: /api/ps with one model loaded."""

    loaded = [{"name": "llama3.2:latest", "model": "llama3.2:latest", "size": 3 * GIB,
               "size_vram": 2 * GIB, "expires_at": "2030-01-01T00:00:00Z"}]

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = json.dumps({"models": self.loaded}).encode() if self.path == "/api/ps" else b"{}"
        self.send_response(200 if self.path == "/api/ps" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Health500(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def settings(vm_env):
    return Settings.from_env(vm_env)


def target(server="vllm", base_url="", **kw) -> EndpointTarget:
    defaults = dict(name="ep", model="m", service_type="LLM", server=server,
                    api_type="openai" if server != "ollama" else "ollama", base_url=base_url)
    defaults.update(kw)
    return EndpointTarget(**defaults)


def test_vllm_running_from_health_and_models(settings):
    with serving(vllm_server.make_handler()) as url:
        result = probe(target(base_url=f"{url}/v1", desired="running"), NO_GPU, settings)
    assert (result.status, result.error, result.vram_bytes) == ("running", "", None)


def test_vllm_dead_engine_is_error_although_version_answers(settings):
    import requests
    with serving(vllm_server.make_handler(engine_dead=True)) as url:
        assert requests.get(f"{url}/version", timeout=5).status_code == 200
        result = probe(target(base_url=url, desired="running"), NO_GPU, settings)
    assert result.status == "error"
    assert "engine dead" in result.error and "503" in result.error


def test_started_process_not_listening_yet_is_starting_then_dead_is_error_with_log(settings):
    port = free_port()
    log_path = endpoint_log_path(settings, "ep")
    log_path.parent.mkdir(parents=True)
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, vllm_server.__file__, "--port", str(port),
                                 "--startup-delay", "60"], stdout=log_file, stderr=subprocess.STDOUT)
    try:
        t = target(base_url=f"http://127.0.0.1:{port}/v1", pid=proc.pid, desired="starting")
        assert probe(t, NO_GPU, settings).status == "starting"
    finally:
        proc.kill()
        proc.wait()
    log_path.write_text("loading weights\nRuntimeError: CUDA out of memory\n")
    result = probe(t, NO_GPU, settings)
    assert result.status == "error"
    assert "connection refused" in result.error and "CUDA out of memory" in result.error


def test_never_started_endpoint_is_stopped(settings):
    result = probe(target(base_url=f"http://127.0.0.1:{free_port()}", desired="stopped"), NO_GPU, settings)
    assert (result.status, result.error) == ("stopped", "")


def test_vram_is_nvml_memory_of_the_process_and_its_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        fake = FakePynvml([(os.getpid(), GIB // 2), (child.pid, 3 * GIB), (999_999_999, 7 * GIB)])
        from common.sources.endpoint_probe import process_tree
        assert gpu_memory_of(Nvml(fake), process_tree(os.getpid())) == 3.5 * GIB
    finally:
        child.kill()
        child.wait()
    assert gpu_memory_of(NO_GPU, {os.getpid()}) is None


def test_vllm_vram_reported_for_its_pid(settings):
    fake = Nvml(FakePynvml([(os.getpid(), 5 * GIB)]))
    with serving(vllm_server.make_handler()) as url:
        result = probe(target(base_url=url, pid=os.getpid()), fake, settings)
    assert (result.status, result.vram_bytes) == ("running", 5 * GIB)


def test_ollama_status_and_vram_from_api_ps(settings):
    with serving(OllamaPs) as url:
        loaded = probe(target("ollama", url, model="llama3.2"), NO_GPU, settings)
        absent = probe(target("ollama", url, model="qwen3:8b"), NO_GPU, settings)
        server = probe(target("ollama", url, model=""), NO_GPU, settings)
    assert (loaded.status, loaded.vram_bytes) == ("running", 2 * GIB)
    assert (absent.status, absent.vram_bytes) == ("stopped", 0.0)
    assert (server.status, server.vram_bytes) == ("running", 2 * GIB)


def test_fastapi_health_url_error(settings):
    with serving(Health500) as url:
        result = probe(target("fastapi", url, health_url=f"{url}/ready", desired="running"), NO_GPU, settings)
    assert result.status == "error" and "HTTP 500" in result.error


def test_platform_services_discovered_from_env():
    found = {t.name: t for t in discovered_targets({
        "OLLAMA_API_BASE": "http://127.0.0.1:11434", "VLLM_SERVER_URL": "http://127.0.0.1:8000/v1",
        "DOCLING_SERVER_URL": "http://127.0.0.1:5001"})}
    assert set(found) == {"ollama", "vllm", "docling", "hermes-agent"}
    assert found["ollama"].server == "ollama" and found["vllm"].server == "vllm"
    assert found["docling"].health_url == "http://127.0.0.1:5001/health"
    assert found["hermes-agent"].base_url == "http://127.0.0.1:8642/v1"
    assert [t.name for t in discovered_targets({})] == ["hermes-agent"]


def test_ollama_tag_normalization_knows_registry_ports():
    from common.sources.endpoint_probe import normalize_ollama_tag
    assert normalize_ollama_tag("registry:5000/ns/model") == "registry:5000/ns/model:latest"
    assert normalize_ollama_tag("registry:5000/ns/model:8b") == "registry:5000/ns/model:8b"
    assert normalize_ollama_tag("qwen3") == "qwen3:latest"
