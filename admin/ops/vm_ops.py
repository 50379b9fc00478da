"""Create / start / stop / terminate a cloud VM at its provider, and record what follows.

Each action is one provider call (bounded by the client's timeout), then the recorded
status, running intervals, this month's cost and Prometheus' file_sd targets follow.
"""
from __future__ import annotations

import time
from typing import Callable

from sqlalchemy.orm import sessionmaker

from common.config import Settings
from admin.cloud import vm_status
from admin.cloud.providers import CreateRequest, ProviderError
from common.store.vms import Vm

ACTIONS = ("create", "start", "stop", "terminate")
# Actions that spend money or lose data: refused unless the user ticked "confirm".
NEEDS_CONFIRMATION = ("create", "start", "terminate")
# What the VM becomes as soon as the provider accepted the call.
_EXPECTED = {"start": "starting", "stop": "stopped", "terminate": "terminated"}


class VmActionError(Exception):
    """The action was refused or failed; the message is for the user. Nothing was changed."""


def allowed_actions(vm: Vm) -> tuple[str, ...]:
    if not vm.instance_id:
        return ("create",) if vm.status != "terminated" else ()
    if vm.status == "terminated":
        return ()
    actions = []
    if vm.status in ("stopped", "error", "unknown"):
        actions.append("start")
    if vm.status in ("starting", "running", "stopping", "unknown"):
        actions.append("stop")
    actions.append("terminate")
    return tuple(actions)


def confirmation_text(vm: Vm, action: str) -> str | None:
    t = vm.template
    if action == "create":
        return f"Rent {vm.name} at {t.compute_usd_per_hour:.2f} $/h plus storage"
    if action == "start":
        return f"Start {vm.name}: {t.compute_usd_per_hour:.2f} $/h while it runs"
    if action == "terminate":
        return f"Terminate {vm.name} and delete its {vm.volume_gb:g} GB volume and all its data"
    return None


def run_action(sessions: sessionmaker, settings: Settings, vm_id: int, action: str, confirmed: bool,
               clock: Callable[[], float] = time.time) -> str:
    """Do `action` on VM `vm_id`. Returns a message for the user; raises VmActionError."""
    if action not in ACTIONS:
        raise VmActionError(f"unknown action {action!r}")
    name = f"VM {vm_id}"
    try:
        with sessions.begin() as session:
            vm = session.get(Vm, vm_id)
            if vm is None:
                raise VmActionError("no such VM")
            name, provider = vm.name, vm.template.platform.provider
            if action not in allowed_actions(vm):
                raise VmActionError(f"cannot {action} {name} while it is {vm.status}")
            if action in NEEDS_CONFIRMATION and not confirmed:
                raise VmActionError(f"{action} {name} not done: tick the confirmation box first "
                                    f"({confirmation_text(vm, action)})")
            _call_provider(vm, action, settings, clock)
    except ProviderError as exc:
        # The transaction rolled back: the row is as it was; the error is noted on the VM.
        _note_error(sessions, vm_id, str(exc))
        raise VmActionError(f"{action} {name} failed: {exc}") from None
    _follow_up(sessions, settings, clock)
    return f"{action} {name}: accepted by {provider}"


def _call_provider(vm: Vm, action: str, settings: Settings, clock) -> None:
    client = vm_status.client_for(vm.template.platform, vm.template, settings,
                                  vm_status.provider_timeout(settings))
    if action == "create":
        state = client.create(_create_request(vm))
        vm.instance_id = state.instance_id
        vm.created_at = clock()
        vm_status.apply_state(vm, state, vm.created_at)
    else:
        if action == "start":
            vm.instance_id = client.start(vm.instance_id)
        else:
            getattr(client, action)(vm.instance_id)
        vm_status.record_status(vm, _EXPECTED[action], clock())
        vm.last_error = ""


def _create_request(vm: Vm) -> CreateRequest:
    t = vm.template
    return CreateRequest(name=vm.name, gpu=t.gpu, gpu_count=t.gpu_count, region=t.region,
                         vcpus=t.vcpus, ram_gb=t.ram_gb, container_gb=vm.container_gb,
                         volume_gb=vm.volume_gb, image=t.image,
                         ports=(t.dashboard_port, t.exporter_port) if t.runs_dashboard else (t.dashboard_port,))


def _note_error(sessions: sessionmaker, vm_id: int, error: str) -> None:
    with sessions.begin() as session:
        vm = session.get(Vm, vm_id)
        if vm is not None:
            vm.last_error = error


def _follow_up(sessions: sessionmaker, settings: Settings, clock) -> None:
    """Read the real state back and recompute costs now, so the pages move at once."""
    vm_status.refresh_statuses(sessions, settings, clock)
    vm_status.refresh_costs(sessions, settings, clock, ask_provider=False)
