"""Jarvislabs instances through the API its `jarvislabs` SDK calls
(https://backendprod.jarvislabs.net): GET users/fetch and users/fetch/{id}, POST
templates/{template}/create and templates/{template}/resume, misc/pause, misc/destroy.
Key: JL_API_KEY, as a Bearer header. Jarvislabs reports no per-instance billing, so costs stay
our own arithmetic.

Verified against jarvislabsai/JLClient jarvislabs/client.py, transport.py and models.py:
Bearer header; users/fetch -> success + instances[] (machine_id, status, url, endpoints,
template|framework, gpu_type, num_gpus, hdd, name); create's JSON body (gpu_type, num_gpus, hdd,
region, name, is_reserved, duration, http_ports) and answer machine_id; pause/destroy take
machine_id as a query parameter; resume posts the instance's own settings to its template's
resume; "success" may come as "sucess" or the string "True".
Not verified / not done: the SDK routes each region to its own backend host (we use one base
URL), and a resume may answer a new machine_id (we keep tracking the old one).
"""
from __future__ import annotations

from common.urls import public_url
from admin.cloud.providers.base import (CreateRequest, InstanceState, ProviderClient, ProviderError, ProviderRefused,
                                        StorageRule, expect)

STATES = {"running": "running", "paused": "stopped", "failed": "error", "creating": "starting",
          "resuming": "starting", "pausing": "stopping", "destroying": "stopping",
          "destroyed": "terminated"}

FRAMEWORK = "pytorch"


def map_state(state: str | None) -> str:
    return STATES.get((state or "").lower(), "unknown")


class JarvislabsClient(ProviderClient):
    provider = "jarvislabs.ai"
    display_name = "Jarvislabs"
    default_base_url = "https://backendprod.jarvislabs.net"
    key_var = "JL_API_KEY"
    gpu_example = "A100"
    # A paused instance keeps its storage and bills it as when running.
    storage_rule = StorageRule(container_billed_while_stopped=True, volume_stopped_factor=1.0)

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
                             public_urls=urls if status == "running" else {},
                             name=str(inst.get("name") or ""))

    def _post(self, path: str, body: dict | None = None, params: dict | None = None) -> dict:
        answer = expect(self._call("POST", path, json=body, params=params), dict, f"jarvislabs {path}")
        if not _succeeded(answer):
            raise ProviderRefused(f"jarvislabs.ai: {answer.get('error') or answer.get('message') or 'refused'}")
        return answer

    def create(self, request: CreateRequest) -> InstanceState:
        body = {"gpu_type": request.gpu, "num_gpus": request.gpu_count,
                "hdd": int(request.volume_gb or request.container_gb), "region": request.region,
                "name": request.name, "is_reserved": True, "duration": "hour",
                "http_ports": ",".join(str(p) for p in request.ports)}
        answer = self._post(f"/templates/{FRAMEWORK}/create", body)
        if answer.get("machine_id") is None:
            raise ProviderError("jarvislabs.ai: create answered without a machine_id")
        return InstanceState(str(answer["machine_id"]), "starting", "Creating")

    def start(self, instance_id: str) -> str:
        # As the SDK: resume sends the paused instance's own settings to its template.
        answer = expect(self._call("GET", f"/users/fetch/{instance_id}"), dict, "jarvislabs instance")
        inst = answer.get("instance")
        if not _succeeded(answer) or not isinstance(inst, dict):
            raise ProviderError(f"jarvislabs.ai: instance {instance_id} not found")
        template = inst.get("template") or inst.get("framework") or FRAMEWORK
        body = {"machine_id": inst.get("machine_id", instance_id), "gpu_type": inst.get("gpu_type"),
                "num_gpus": inst.get("num_gpus"), "hdd": inst.get("storage_gb", inst.get("hdd")),
                "name": inst.get("name", inst.get("instance_name")), "is_reserved": True,
                "duration": "hour", "arguments": ""}
        answer = self._post(f"/templates/{template}/resume", body)
        # A resume may land on another machine with a new id: the caller must track that one.
        return str(answer.get("machine_id") or instance_id)

    def stop(self, instance_id: str) -> None:
        self._post("/misc/pause", params={"machine_id": instance_id})

    def terminate(self, instance_id: str) -> None:
        self._post("/misc/destroy", params={"machine_id": instance_id})

    def statuses(self) -> dict[str, InstanceState]:
        payload = self._call("GET", "/users/fetch")
        if isinstance(payload, dict) and not _succeeded(payload):
            raise ProviderError(f"jarvislabs.ai: instances not listed: {payload.get('message') or 'refused'}")
        instances = payload.get("instances") if isinstance(payload, dict) else payload
        instances = expect(instances or [], list, "jarvislabs instances")
        return {str(i.get("machine_id")): self._state(i) for i in instances if isinstance(i, dict)}


def _succeeded(answer: dict) -> bool:
    """The backend's flag: absent means no refusal; "sucess" and the string "True" occur too."""
    if "success" not in answer and "sucess" not in answer:
        return True
    flag = answer.get("success", answer.get("sucess"))
    return flag.lower() == "true" if isinstance(flag, str) else bool(flag)
