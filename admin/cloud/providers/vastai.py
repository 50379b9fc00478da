"""Vast.ai instances through its REST API (https://console.vast.ai/api/v0, what the `vastai`
CLI calls): search offers (POST bundles/), rent one (PUT asks/{id}/), PUT instances/{id}/
{"state": "running"|"stopped"}, DELETE instances/{id}/, GET instances/, and the account's
charges (GET users/me/invoices, as `vastai show invoices`). Key: VAST_API_KEY, as a Bearer header.

Verified against vast-ai/vast-python vast.py: search__offers (POST /bundles/ with the query
dict, "order", "type", answer "offers"; string values have "_" turned into " " by parse_query,
so gpu_name is "RTX 4090"), create__instance (PUT /asks/{id}/ with client_id "me", image, env
"-p N:N", disk, label, runtype; answer success/new_contract), start/stop (PUT /instances/{id}/
{"state": ...}), destroy (DELETE /instances/{id}/), show__invoices (GET /users/me/invoices with
owner, sdate, edate, inc_charges; rows with type "charge"/"payment", instance_id, amount,
timestamp), actual_status/intended_status and the actual_status words running/exited/created/
offline used by its machine tester.
Not verified: "loading"/"stopped"/"destroying" as actual_status words, the docker-style
`ports` mapping with public_ipaddr, Bearer auth (the CLI's older versions put the key in the URL).
"""
from __future__ import annotations

from admin.cloud.providers.base import (BilledCost, CreateRequest, InstanceState, ProviderClient, ProviderError,
                                        ProviderRefused, StorageRule, expect)

# actual_status -> ours; "loading" is the image pull/boot, already billed.
STATES = {"created": "starting", "loading": "starting", "running": "running",
          "stopped": "stopped", "exited": "stopped", "offline": "unknown", "destroying": "stopping"}


def map_state(actual: str | None, intended: str | None = None) -> str:
    status = STATES.get((actual or "").lower(), "unknown")
    if status == "running" and (intended or "").lower() == "stopped":
        return "stopping"
    if actual is None and (intended or "").lower() == "running":
        return "starting"
    return status


class VastClient(ProviderClient):
    provider = "vast.ai"
    display_name = "Vast.ai"
    default_base_url = "https://console.vast.ai/api/v0"
    key_var = "VAST_API_KEY"
    gpu_example = "RTX_4090"
    # A stopped instance keeps its disk and bills it as when running.
    storage_rule = StorageRule(container_billed_while_stopped=True, volume_stopped_factor=1.0)

    def _state(self, inst: dict) -> InstanceState:
        inst_id = str(inst.get("id"))
        actual = inst.get("actual_status")
        status = map_state(actual, inst.get("intended_status"))
        urls: dict[int, str] = {}
        host = inst.get("public_ipaddr")
        ports = inst.get("ports") if isinstance(inst.get("ports"), dict) else {}
        for key, mappings in ports.items():
            private = key.split("/")[0]
            if host and private.isdigit() and isinstance(mappings, list) and mappings:
                urls[int(private)] = f"http://{host}:{mappings[0].get('HostPort')}"
        return InstanceState(inst_id, status, str(actual or inst.get("intended_status") or ""),
                             terminal_url="https://cloud.vast.ai/instances/", public_urls=urls,
                             name=str(inst.get("label") or ""))

    def create(self, request: CreateRequest) -> InstanceState:
        # As the CLI's parse_query: "RTX_4090" in a query means the gpu_name "RTX 4090".
        query = {"gpu_name": {"eq": request.gpu.replace("_", " ")}, "num_gpus": {"eq": request.gpu_count},
                 "rentable": {"eq": True}, "type": "on-demand", "order": [["dph_total", "asc"]]}
        if request.region:
            query["geolocation"] = {"eq": request.region.replace("_", " ")}
        try:
            offers = expect(self._call("POST", "/bundles/", json=query), dict, "vast offers").get("offers")
            offers = expect(offers or [], list, "vast offers")
        except ProviderError as exc:  # only a search so far: nothing was rented
            raise ProviderRefused(str(exc)) from None
        if not offers:
            raise ProviderRefused(f"vast.ai: no rentable offer for {request.gpu_count} x {request.gpu}")
        ask_id = offers[0].get("id")
        body = {"client_id": "me", "image": request.image, "disk": request.container_gb + request.volume_gb,
                "label": request.name, "runtype": "jupyter_direct ssh_direct",
                "env": {f"-p {p}:{p}": "1" for p in request.ports}}
        answer = expect(self._call("PUT", f"/asks/{ask_id}/", json=body), dict, "vast create")
        if not answer.get("success") or answer.get("new_contract") is None:
            raise ProviderRefused(f"vast.ai: offer {ask_id} not rented: {answer.get('msg') or answer}")
        return InstanceState(str(answer["new_contract"]), "starting", "created",
                             terminal_url="https://cloud.vast.ai/instances/")

    def _set_state(self, instance_id: str, state: str) -> None:
        answer = self._call("PUT", f"/instances/{instance_id}/", json={"state": state})
        if isinstance(answer, dict) and answer.get("success") is False:
            raise ProviderRefused(f"vast.ai: instance {instance_id}: {answer.get('msg') or 'refused'}")

    def start(self, instance_id: str) -> str:
        self._set_state(instance_id, "running")
        return instance_id

    def stop(self, instance_id: str) -> None:
        self._set_state(instance_id, "stopped")

    def terminate(self, instance_id: str) -> None:
        self._call("DELETE", f"/instances/{instance_id}/")

    def statuses(self) -> dict[str, InstanceState]:
        payload = expect(self._call("GET", "/instances/", params={"owner": "me"}), dict, "vast instances")
        instances = expect(payload.get("instances") or [], list, "vast instances")
        return {str(i.get("id")): self._state(i) for i in instances if isinstance(i, dict)}

    def billing(self, instance_ids, start, end):
        params = {"owner": "me", "sdate": int(start), "edate": int(end), "inc_charges": "true"}
        payload = expect(self._call("GET", "/users/me/invoices", params=params), dict, "vast invoices")
        totals: dict[str, float] = {}
        for item in expect(payload.get("invoices") or [], list, "vast invoices"):
            inst = str(item.get("instance_id"))
            if item.get("type") != "charge" or inst not in instance_ids:
                continue
            if not start <= float(item.get("timestamp") or 0) < end:
                continue
            totals[inst] = totals.get(inst, 0.0) + float(item.get("amount") or 0)
        # Charges are not split by kind: total only.
        return {inst: BilledCost(total) for inst, total in totals.items()}
