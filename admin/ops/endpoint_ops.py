"""Start, stop, load and unload local model endpoints; usable without Flask.

vLLM/FastAPI servers run as a subprocess (a configurable command, output to a log file
under the state dir) or as a container through the docker SDK when an image is given.
A started vLLM's /metrics is added to Prometheus' file_sd targets and removed on stop.
Ollama models are loaded/unloaded with /api/generate and keep_alive.
"""
from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from datetime import timezone
from typing import Callable

import psutil
from sqlalchemy.orm import sessionmaker

from common import nvml
from common.config import Settings
from admin.file_sd import remove_targets, write_targets
from common.sources.endpoint_probe import (EndpointTarget, endpoint_log_path, log_tail, probe,
                                             process_alive, server_root, short_error)
from common.sources.ollama_client import OllamaClient, OllamaError, ollama_base_url
from common.store.jobs import utcnow
from common.store.services import Endpoint

from admin.jobs import JobCancelled, JobFailed

log = logging.getLogger(__name__)

DEFAULT_VLLM_COMMAND = "vllm serve {model} --port {port} --gpu-memory-utilization {gpu_memory_share}"
DEFAULT_GPU_MEMORY_SHARE = 0.9
READY_TIMEOUT_SECONDS = 900.0  # vLLM loads big models for minutes
STOP_TIMEOUT_SECONDS = 15.0


def _docker_from_env():
    import docker
    return docker.from_env()


# Seam at the docker SDK boundary: tests put a fake client factory here.
docker_client_factory: Callable[[], object] = _docker_from_env

# Children this admin process started, kept so they are reaped (no zombies) and stopped.
_children: dict[int, subprocess.Popen] = {}
_children_lock = threading.Lock()


def reap_exited_children() -> None:
    """Collect servers of ours that exited on their own, so none stays a zombie.

    Their rows keep the PID: the probe then reports the death (error, with the log tail)."""
    with _children_lock:
        for pid in [pid for pid, process in _children.items() if process.poll() is not None]:
            del _children[pid]


class OpError(JobFailed):
    """A refused or failed endpoint operation, with a message for the user."""


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def default_base_url(server: str, api_type: str, port: int | None, ollama_base: str = "") -> str:
    """Where a server we run listens; an ollama endpoint without a port uses the platform's Ollama."""
    suffix = "/v1" if api_type == "openai" else ""
    if port:
        return f"http://127.0.0.1:{port}{suffix}"
    if server == "ollama" and ollama_base:
        return f"{ollama_base.rstrip('/')}{suffix}"
    return ""


def command_args(endpoint: Endpoint) -> list[str]:
    template = endpoint.command or (DEFAULT_VLLM_COMMAND if endpoint.server == "vllm" else "")
    if not template:
        raise OpError("give a command or a container image to start this endpoint")
    values = {"model": endpoint.model, "port": endpoint.internal_port,
              "gpu_memory_share": endpoint.gpu_memory_share or DEFAULT_GPU_MEMORY_SHARE}
    try:
        return [arg.format_map(values) for arg in shlex.split(template)]
    except (KeyError, ValueError, IndexError) as exc:
        raise OpError(f"command: unknown or malformed placeholder ({exc}); "
                      "use {model}, {port}, {gpu_memory_share}") from None


class EndpointOps:
    def __init__(self, settings: Settings, sessions: sessionmaker,
                 ready_timeout: float = READY_TIMEOUT_SECONDS):
        self.settings = settings
        self.sessions = sessions
        self.ready_timeout = ready_timeout

    # -- helpers ----------------------------------------------------------------------
    def _load(self, endpoint_id: int) -> Endpoint:
        with self.sessions() as session:
            endpoint = session.get(Endpoint, endpoint_id)
            if endpoint is None:
                raise OpError(f"no endpoint #{endpoint_id}")
            session.expunge(endpoint)
            return endpoint

    def _update(self, endpoint_id: int, **values) -> None:
        with self.sessions.begin() as session:
            endpoint = session.get(Endpoint, endpoint_id)
            for key, value in values.items():
                setattr(endpoint, key, value)

    def _fail(self, endpoint: Endpoint, message: str) -> OpError:
        self._update(endpoint.id, status="error", last_error=short_error(message))
        return OpError(message)

    def _target(self, endpoint: Endpoint, pid: int | None, container_id: str) -> EndpointTarget:
        return EndpointTarget(endpoint.name, endpoint.model, endpoint.service_type, endpoint.server,
                              endpoint.api_type, endpoint.base_url, endpoint.health_url, pid,
                              container_id, desired="starting")

    def is_active(self, endpoint: Endpoint) -> bool:
        """A process or container of ours is (or may be) up: delete must stop it first."""
        return bool(process_alive(endpoint.pid) or endpoint.container_id)

    # -- start / stop -----------------------------------------------------------------
    def start(self, endpoint_id: int, progress=None) -> str:
        endpoint = self._load(endpoint_id)
        if endpoint.server == "ollama":
            raise OpError("Ollama endpoints are loaded, not started: use Load")
        if self.is_active(endpoint):
            raise OpError(f"{endpoint.name} is already started; stop it first")
        if not endpoint.internal_port:
            raise OpError("set the internal port first")
        if port_in_use(endpoint.internal_port):
            raise OpError(f"port {endpoint.internal_port} is already in use")
        if endpoint.image:
            pid, container_id, watch = self._start_container(endpoint)
        else:
            pid, container_id, watch = self._start_process(endpoint), "", None
        self._update(endpoint.id, status="starting", pid=pid, container_id=container_id,
                     last_error="", started_at=utcnow(), stopped_at=None)
        if endpoint.server == "vllm":
            # instance: this machine's exporter, so panels filtered by machine show the server;
            # vllm_server keeps two servers' targets apart.
            write_targets(self.settings, self._sd_name(endpoint), [f"127.0.0.1:{endpoint.internal_port}"],
                          {"job": "vllm", "endpoint": endpoint.name, "instance": self.settings.exporter_address,
                           "vllm_server": f"127.0.0.1:{endpoint.internal_port}"})
        if progress is not None:
            progress.update(0.5, message=f"started, waiting for {endpoint.name} to answer")
        try:
            return self._wait_ready(endpoint, pid, container_id, watch, progress)
        except JobCancelled:
            # Cancelling a start stops what it started: nothing keeps holding the GPU or port.
            self.stop(endpoint.id)
            raise

    def _start_process(self, endpoint: Endpoint) -> int:
        args = command_args(endpoint)
        log_path = endpoint_log_path(self.settings, endpoint.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as log_file:
            try:
                # Own session: stop signals the whole group (vLLM's engine is a child process).
                process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)
            except (FileNotFoundError, PermissionError) as exc:
                raise self._fail(endpoint, f"cannot run {args[0]!r}: {exc.strerror}"
                                 + (" (is vLLM installed?)" if endpoint.server == "vllm" else ""))
        with _children_lock:
            _children[process.pid] = process
        log.info("endpoint %s started as pid %s", endpoint.name, process.pid)
        return process.pid

    def _start_container(self, endpoint: Endpoint):
        from docker.errors import DockerException
        from docker.types import DeviceRequest
        try:
            client = docker_client_factory()
            client.ping()
        except DockerException as exc:
            raise self._fail(endpoint, f"Docker is not available here ({type(exc).__name__}); "
                             "clear the image to run a command instead") from None
        port = endpoint.internal_port
        if endpoint.command:
            command = command_args(endpoint)
        elif endpoint.server == "vllm":  # the vllm-openai image's entrypoint is `vllm serve`
            command = [endpoint.model, "--port", str(port), "--gpu-memory-utilization",
                       str(endpoint.gpu_memory_share or DEFAULT_GPU_MEMORY_SHARE)]
        else:
            command = None
        kwargs = {}
        if endpoint.server == "vllm" or endpoint.gpu_memory_share:
            kwargs["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
            kwargs["ipc_mode"] = "host"
        hf_home = self.settings.get("HF_HOME")
        if hf_home:
            kwargs["volumes"] = {hf_home: {"bind": "/root/.cache/huggingface", "mode": "rw"}}
        try:
            container = client.containers.run(
                endpoint.image, command=command, detach=True, name=f"wordslab-endpoint-{endpoint.name}",
                ports={f"{port}/tcp": ("127.0.0.1", port)}, **kwargs)
        except DockerException as exc:
            raise self._fail(endpoint, f"docker run {endpoint.image} failed: {exc}") from None
        container.reload()
        pid = (container.attrs.get("State") or {}).get("Pid") or None
        return pid, container.id, container

    def _wait_ready(self, endpoint: Endpoint, pid: int | None, container_id: str, container,
                    progress=None) -> str:
        target = self._target(endpoint, pid, container_id)
        deadline = time.monotonic() + self.ready_timeout
        wait = progress.sleep if progress is not None else time.sleep
        while time.monotonic() < deadline:
            result = probe(target, nvml.shared(), self.settings)
            if result.status == "running":
                self._update(endpoint.id, status="running")
                return f"{endpoint.name} is running on port {endpoint.internal_port}"
            exited = self._exited(endpoint, pid, container)
            if exited and self._stopped_meanwhile(endpoint.id, pid, container_id):
                raise OpError(f"{endpoint.name} was stopped before it answered")
            if result.status == "error" or exited:
                reason = exited or result.error
                self._cleanup_after_failure(endpoint)
                raise self._fail(endpoint, f"{endpoint.name} failed to start: {reason}")
            wait(0.2)
        raise OpError(f"{endpoint.name} did not answer within {self.ready_timeout:.0f} s; "
                      "it is still starting (see its log) or stop it")

    def _stopped_meanwhile(self, endpoint_id: int, pid: int | None, container_id: str) -> bool:
        """A Stop (its own job) ended what this start launched: not a start failure."""
        now = self._load(endpoint_id)
        return (now.pid, now.container_id or "") != (pid, container_id or "")

    def _exited(self, endpoint: Endpoint, pid: int | None, container) -> str:
        if container is not None:
            container.reload()
            if container.status in ("exited", "dead"):
                return "container exited: " + short_error(container.logs(tail=5).decode(errors="replace"))
            return ""
        if pid and not process_alive(pid):
            self._reap(pid)
            tail = log_tail(endpoint_log_path(self.settings, endpoint.name))
            return f"process exited ({tail})" if tail else "process exited"
        return ""

    def _cleanup_after_failure(self, endpoint: Endpoint) -> None:
        if endpoint.server == "vllm":
            remove_targets(self.settings, self._sd_name(endpoint))

    @staticmethod
    def _sd_name(endpoint: Endpoint) -> str:
        return f"vllm-{endpoint.name}"

    def stop(self, endpoint_id: int, progress=None) -> str:
        endpoint = self._load(endpoint_id)
        if endpoint.server == "ollama":
            raise OpError("Ollama endpoints are unloaded, not stopped: use Unload")
        if endpoint.container_id:
            self._stop_container(endpoint)
        elif endpoint.pid:
            self._stop_process(endpoint)
        if endpoint.server == "vllm":
            remove_targets(self.settings, self._sd_name(endpoint))
        self._update(endpoint.id, status="stopped", pid=None, container_id="", stopped_at=utcnow())
        return f"{endpoint.name} stopped"

    def _stop_process(self, endpoint: Endpoint) -> None:
        pid = endpoint.pid
        try:
            proc = psutil.Process(pid)
            # After an admin restart the PID may belong to someone else now: only signal ours.
            started = endpoint.started_at
            if started is not None and started.tzinfo is None:  # SQLite hands back naive UTC
                started = started.replace(tzinfo=timezone.utc)
            if started is not None and proc.create_time() > started.timestamp() + 5:
                return
            pgid = os.getpgid(pid)
        except (psutil.Error, ProcessLookupError):
            self._reap(pid)
            return
        os.killpg(pgid, signal.SIGTERM)
        with _children_lock:
            child = _children.get(pid)
        try:
            # Our own child must be waited on through Popen, or it stays a zombie.
            child.wait(STOP_TIMEOUT_SECONDS) if child else proc.wait(STOP_TIMEOUT_SECONDS)
        except (psutil.TimeoutExpired, subprocess.TimeoutExpired):
            log.warning("endpoint %s ignored SIGTERM, killing it", endpoint.name)
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._reap(pid)

    @staticmethod
    def _reap(pid: int) -> None:
        with _children_lock:
            process = _children.pop(pid, None)
        if process is not None:
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _stop_container(self, endpoint: Endpoint) -> None:
        from docker.errors import DockerException, NotFound
        try:
            client = docker_client_factory()
            container = client.containers.get(endpoint.container_id)
            container.stop(timeout=int(STOP_TIMEOUT_SECONDS))
            container.remove()
        except NotFound:
            pass  # already gone: stopped is what was wanted
        except DockerException as exc:
            raise self._fail(endpoint, f"cannot stop container: {exc}") from None

    # -- ollama load / unload -----------------------------------------------------------
    def _ollama_base(self, endpoint: Endpoint) -> str:
        # The openai API type's base URL ends in /v1; Ollama's own API lives at the root.
        return server_root(endpoint.base_url) if endpoint.base_url else ollama_base_url(self.settings.env)

    def _keep_alive(self, endpoint: Endpoint, keep_alive: int) -> dict:
        if endpoint.server != "ollama":
            raise OpError("load/unload is for Ollama endpoints; start/stop the others")
        if not endpoint.model:
            raise OpError("set the model to load first")
        try:
            # No prompt: Ollama only loads (keep_alive -1: until unloaded) or unloads (0) the model.
            return OllamaClient(self._ollama_base(endpoint)).keep_alive(endpoint.model, keep_alive)
        except OllamaError as exc:
            raise self._fail(endpoint, str(exc)) from None

    def load(self, endpoint_id: int, progress=None) -> str:
        endpoint = self._load(endpoint_id)
        self._update(endpoint.id, status="starting")
        self._keep_alive(endpoint, -1)
        self._update(endpoint.id, status="running", last_error="", started_at=utcnow())
        return f"{endpoint.model} loaded in Ollama"

    def unload(self, endpoint_id: int, progress=None) -> str:
        endpoint = self._load(endpoint_id)
        self._keep_alive(endpoint, 0)
        self._update(endpoint.id, status="stopped", stopped_at=utcnow())
        return f"{endpoint.model} unloaded from Ollama"


ACTIONS = {"start": EndpointOps.start, "stop": EndpointOps.stop,
           "load": EndpointOps.load, "unload": EndpointOps.unload}
