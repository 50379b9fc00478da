"""Runpod pods through its GraphQL API (the calls the `runpod` SDK's create_pod / resume_pod /
stop_pod / terminate_pod / get_pods make) and its REST pod billing history (GET /v2/billing/pods).
Both live under https://api.runpod.io; the key goes in the Authorization header, never the URL.

Verified against: runpod/runpod-python runpod/api/mutations/pods.py (podFindAndDeployOnDemand
input fields, podResume {podId, gpuCount}, podStop -> id desiredStatus, podTerminate with no
selection) and runpod/api/queries/pods.py (myself.pods, desiredStatus); `runtime { uptimeInSeconds }`
in utensil/runpod-python runpod/api_wrapper/queries/pod.py; the PodStatus values of
graphql-spec.runpod.io; docs.runpod.io/api-reference-v2/billing/get-pod-billing-history (host,
path, Bearer key, startTime/endTime RFC 3339, bucketSize, podId; records per pod per bucket, so
no `grouping`); record fields podId/startTime/endTime/totalAmount/gpuAmount/diskAmount as a
third-party v2 client in the code index parses them.
Not verified: `cpuAmount` on pod records (read when present), the input type names of the
GraphQL variables beyond what other clients use, the console terminal URL.
"""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from admin.cloud.providers.base import (BilledCost, CreateRequest, InstanceState, ProviderClient, ProviderRefused,
                                        StorageRule, expect)

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

# desiredStatus -> ours. RUNNING without a runtime yet means the container is still starting.
STATES = {"RUNNING": "running", "CREATED": "starting", "RESTARTING": "starting",
          "EXITED": "stopped", "PAUSED": "stopped", "TERMINATED": "terminated", "DEAD": "error"}

_PODS = "query Pods { myself { pods { id name desiredStatus runtime { uptimeInSeconds } } } }"
_CREATE = ("mutation Create($input: PodFindAndDeployOnDemandInput) "
           "{ podFindAndDeployOnDemand(input: $input) { id desiredStatus } }")
_RESUME = ("mutation Resume($input: PodResumeInput!) "
           "{ podResume(input: $input) { id desiredStatus } }")
_STOP = "mutation Stop($input: PodStopInput!) { podStop(input: $input) { id desiredStatus } }"
_TERMINATE = "mutation Terminate($input: PodTerminateInput!) { podTerminate(input: $input) }"


def map_state(desired: str, has_runtime: bool = True) -> str:
    status = STATES.get((desired or "").upper(), "unknown")
    return "starting" if status == "running" and not has_runtime else status


def proxy_url(pod_id: str, port: int) -> str:
    # Runpod's HTTP proxy: every exposed HTTP port of a pod at <pod>-<port>.proxy.runpod.net
    return f"https://{pod_id}-{port}.proxy.runpod.net"


class RunpodClient(ProviderClient):
    provider = "runpod.io"
    display_name = "Runpod"
    default_base_url = "https://api.runpod.io"
    key_var = "RUNPOD_API_KEY"
    gpu_example = "NVIDIA RTX A6000"
    # A stopped pod's container disk is gone; its volume bills at twice the running rate.
    storage_rule = StorageRule(container_billed_while_stopped=False, volume_stopped_factor=2.0)

    @classmethod
    def key_from_local_config(cls, home: Path) -> str | None:
        # `runpod config` writes ~/.runpod/config.toml: [default] api_key = "..."
        try:
            data = tomllib.loads((home / ".runpod" / "config.toml").read_text())
        except (OSError, tomllib.TOMLDecodeError):
            return None
        key = (data.get("default") or {}).get("api_key")
        return key if isinstance(key, str) and key else None

    def _graphql(self, query: str, variables: dict | None = None) -> dict:
        payload = self._call("POST", "/graphql", json={"query": query, "variables": variables or {}})
        payload = expect(payload, dict, "runpod graphql")
        if payload.get("errors"):
            first = payload["errors"][0]
            message = first.get("message") if isinstance(first, dict) else str(first)
            raise ProviderRefused(f"runpod: {message}")
        return expect(payload.get("data"), dict, "runpod graphql data")

    def _state(self, pod: dict) -> InstanceState:
        pod_id = str(pod.get("id"))
        desired = str(pod.get("desiredStatus") or "")
        status = map_state(desired, bool(pod.get("runtime")))
        urls = {p: proxy_url(pod_id, p) for p in self.ports} if status == "running" else {}
        return InstanceState(pod_id, status, desired,
                             terminal_url=f"https://console.runpod.io/pods?id={pod_id}",
                             public_urls=urls, name=str(pod.get("name") or ""))

    def create(self, request: CreateRequest) -> InstanceState:
        pod_input = {"cloudType": "ALL", "name": request.name, "gpuTypeId": request.gpu,
                     "gpuCount": request.gpu_count, "containerDiskInGb": int(request.container_gb),
                     "volumeInGb": int(request.volume_gb), "volumeMountPath": "/workspace",
                     "minVcpuCount": request.vcpus, "minMemoryInGb": int(request.ram_gb),
                     "imageName": request.image,
                     "ports": ",".join(f"{p}/http" for p in request.ports)}
        if request.region:
            pod_input["dataCenterId"] = request.region
        data = self._graphql(_CREATE, {"input": pod_input})
        pod = expect(data.get("podFindAndDeployOnDemand"), dict, "runpod create")
        return self._state({**pod, "runtime": None})

    def start(self, instance_id: str) -> str:
        self._graphql(_RESUME, {"input": {"podId": instance_id, "gpuCount": 1}})
        return instance_id

    def stop(self, instance_id: str) -> None:
        self._graphql(_STOP, {"input": {"podId": instance_id}})

    def terminate(self, instance_id: str) -> None:
        self._graphql(_TERMINATE, {"input": {"podId": instance_id}})

    def statuses(self) -> dict[str, InstanceState]:
        myself = expect(self._graphql(_PODS).get("myself"), dict, "runpod myself")
        pods = expect(myself.get("pods") or [], list, "runpod pods")
        return {str(p.get("id")): self._state(p) for p in pods if isinstance(p, dict)}

    def billing(self, instance_ids, start, end):
        params = {"startTime": _rfc3339(start), "endTime": _rfc3339(end), "bucketSize": "month"}
        payload = expect(self._call("GET", "/v2/billing/pods", params=params), dict, "runpod billing")
        result: dict[str, BilledCost] = {}
        for record in expect(payload.get("records") or [], list, "runpod billing records"):
            pod_id = str(record.get("podId"))
            if pod_id not in instance_ids:
                continue
            compute = float(record.get("gpuAmount") or 0) + float(record.get("cpuAmount") or 0)
            disk = float(record.get("diskAmount") or 0)
            total = float(record["totalAmount"] if record.get("totalAmount") is not None else compute + disk)
            previous = result.get(pod_id)
            if previous:  # several buckets: add them up
                compute += previous.compute_usd or 0
                disk += previous.storage_usd or 0
                total += previous.total_usd
            result[pod_id] = BilledCost(total, compute, disk)
        return result


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
