"""A fake at the docker SDK client boundary: `.containers.run/.get/.list`, `.ping()`.

No engine runs here. Like a real engine, `run()` makes the container serve: it starts the
fake vLLM server script on the host port the caller published, so the admin's health
wait sees a live "model server"; `stop()` ends it. Calls are recorded for assertions.
"""
from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

from docker.errors import NotFound

VLLM_SCRIPT = Path(__file__).with_name("vllm_server.py")
_ids = itertools.count(1)


class FakeContainer:
    def __init__(self, name: str, image: str, process: subprocess.Popen | None, kwargs: dict):
        self.id = f"{next(_ids):012x}" * 5 + "abcd"
        self.short_id = self.id[:12]
        self.name = name
        self.image = image
        self.kwargs = kwargs
        self._process = process
        self.removed = False

    @property
    def status(self) -> str:
        if self._process is None or self._process.poll() is None:
            return "running"
        return "exited"

    @property
    def attrs(self) -> dict:
        pid = self._process.pid if self._process and self._process.poll() is None else 0
        return {"Id": self.id, "Name": f"/{self.name}", "Config": {"Image": self.image},
                "State": {"Status": self.status, "Pid": pid}}

    def reload(self) -> None:
        pass

    def logs(self, tail: int | str = "all", **_) -> bytes:
        return f"fake container {self.name} running {self.image}\n".encode()

    def stop(self, timeout: int = 10) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=timeout)

    def remove(self, force: bool = False) -> None:
        if force:
            self.stop()
        self.removed = True


class FakeContainers:
    def __init__(self, client: "FakeDockerClient"):
        self._client = client

    def run(self, image: str, command=None, detach: bool = False, name: str | None = None,
            ports: dict | None = None, **kwargs) -> FakeContainer:
        self._client.calls.append({"image": image, "command": command, "detach": detach,
                                   "name": name, "ports": ports, **kwargs})
        process = None
        if self._client.serve_vllm and ports:
            binding = next(iter(ports.values()))
            host, port = binding if isinstance(binding, tuple) else ("127.0.0.1", binding)
            process = subprocess.Popen([sys.executable, str(VLLM_SCRIPT), "--host", host,
                                        "--port", str(port), "--model", "container-model"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        container = FakeContainer(name or "unnamed", image, process, kwargs)
        self._client.containers_by_id[container.id] = container
        return container

    def get(self, container_id: str) -> FakeContainer:
        for container in self._client.containers_by_id.values():
            if container_id in (container.id, container.name) and not container.removed:
                return container
        raise NotFound(f"No such container: {container_id}")

    def list(self, all: bool = False, **_) -> list[FakeContainer]:
        return [c for c in self._client.containers_by_id.values()
                if not c.removed and (all or c.status == "running")]


class FakeDockerClient:
    def __init__(self, serve_vllm: bool = True):
        self.serve_vllm = serve_vllm
        self.calls: list[dict] = []
        self.containers_by_id: dict[str, FakeContainer] = {}
        self.containers = FakeContainers(self)

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        for container in self.containers_by_id.values():
            container.stop()
