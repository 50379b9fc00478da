"""Jarvislabs instances through the API its `jlclient`/`jarvislabs` SDK calls
(https://backendprod.jarvislabs.net): GET users/fetch, POST templates/{framework}/create,
templates/{framework}/resume, misc/pause, misc/destroy. Key: JL_API_KEY, as a Bearer header.
Jarvislabs reports no per-instance billing, so costs stay our own arithmetic.
"""
from __future__ import annotations

from ...urls import public_url
from .base import CreateRequest, InstanceState, ProviderClient, ProviderError, expect

STATES = {"running": "running", "paused": "stopped", "failed": "error", "creating": "starting",
          "resuming": "starting", "pausing": "stopping", "destroying": "stopping",
          "destroyed": "terminated"}

FRAMEWORK = "pytorch"


def map_state(state: str | None) -> str:
    return STATES.get((state or "").lower(), "unknown")


class JarvislabsClient(ProviderClient):
    provider = "jarvislabs.ai"
    default_base_url = "https://backendprod.jarvislabs.net"

    def _state(self, inst: dict) -> InstanceState:
        machine_id = str(inst.get("machine_id"))
        state = str(inst.get("status") or "")
        status = map_state(state)
        urls: dict[int, str] = {}
        for endpoint in inst.get("endpoints") or []:
            # Exposed ports come back as https://<id>-<port>.<host>; keep the port's URL.
            url = public_url(str(endpoint))
            port = url.split("//", 1)[-1].split(".", 1)[0].rsplit("-", 1)[-1]
            if port.isdigit():
                urls[int(port)] = url
        # The instance URL is JupyterLab (with its terminal); its ?token= never leaves here.
        terminal = public_url(str(inst.get("url") or "")) if status == "running" else ""
        return InstanceState(machine_id, status, state, terminal_url=terminal,
                             public_urls=urls if status == "running" else {})

    def _post(self, path: str, body: dict) -> dict:
        answer = expect(self._call("POST", path, json=body), dict, f"jarvislabs {path}")
        if answer.get("success") is False:
            raise ProviderError(f"jarvislabs.ai: {answer.get('error') or answer.get('message') or 'refused'}")
        return answer

    def create(self, request: CreateRequest) -> InstanceState:
        body = {"gpu_type": request.gpu, "num_gpus": request.gpu_count,
                "hdd": int(request.volume_gb or request.container_gb), "region": request.region,
                "name": request.name, "is_spot": False, "duration": "hour",
                "http_ports": ",".join(str(p) for p in request.ports)}
        answer = self._post(f"/templates/{FRAMEWORK}/create", body)
        if answer.get("machine_id") is None:
            raise ProviderError("jarvislabs.ai: create answered without a machine_id")
        return InstanceState(str(answer["machine_id"]), "starting", "Creating")

    def start(self, instance_id: str) -> None:
        self._post(f"/templates/{FRAMEWORK}/resume", {"machine_id": instance_id})

    def stop(self, instance_id: str) -> None:
        self._post("/misc/pause", {"machine_id": instance_id})

    def terminate(self, instance_id: str) -> None:
        self._post("/misc/destroy", {"machine_id": instance_id})

    def statuses(self) -> dict[str, InstanceState]:
        payload = self._call("GET", "/users/fetch")
        instances = payload.get("instances") if isinstance(payload, dict) else payload
        instances = expect(instances or [], list, "jarvislabs instances")
        return {str(i.get("machine_id")): self._state(i) for i in instances if isinstance(i, dict)}
