"""Create / start / stop / terminate a cloud VM at its provider, and record what follows.

Each action is one provider call (bounded by the client's timeout), made with no database
transaction open (SQLite's write lock is never held across the network): a short transaction
checks and claims the row, the call runs, a short transaction records its result. A create
records its intent ("creating", committed) BEFORE the call, so an instance the provider
accepted is never lost: if recording its id fails, the status refresh adopts it by name.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Callable, Iterator

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from common.config import Settings
from admin.formatting import usd
from admin.cloud import vm_status
from admin.cloud.providers import CreateRequest, ProviderClient, ProviderError, ProviderRefused
from common.store.vms import MAY_BILL_STATUSES, Vm

log = logging.getLogger(__name__)

ACTIONS = ("create", "start", "stop", "terminate")
# Actions that spend money or lose data: refused unless the user ticked "confirm".
NEEDS_CONFIRMATION = ("create", "start", "terminate")
# What the VM becomes as soon as the provider accepted the call.
_EXPECTED = {"start": "starting", "stop": "stopped", "terminate": "terminated"}


class VmActionError(Exception):
    """The action was refused or failed; the message is for the user."""


class VmActionCalledOff(VmActionError):
    """A background action's `still` check found its decision no longer holds; nothing was done."""


def allowed_actions(vm: Vm) -> tuple[str, ...]:
    if vm.status == "creating":
        return ()  # no instance id yet: the status refresh completes or undoes it
    if not vm.instance_id:
        return ("create",) if vm.status != "terminated" else ()
    if vm.status == "terminated":
        return ()
    actions = []
    if vm.status in ("stopped", "error", "unknown"):
        actions.append("start")
    if vm.status in ("starting", "running", "stopping", "unknown", "missing"):
        actions.append("stop")
    actions.append("terminate")
    return tuple(actions)


def may_bill(vm: Vm) -> bool:
    """The provider may still bill for it: its row must stay until it is terminated or gone."""
    return vm.status in MAY_BILL_STATUSES and (bool(vm.instance_id) or vm.status == "creating")


def confirmation_text(vm: Vm, action: str) -> str | None:
    t = vm.template
    if action == "create":
        return f"Rent {vm.name} at {usd(t.compute_usd_per_hour, '/h')} plus storage"
    if action == "start":
        return f"Start {vm.name}: {usd(t.compute_usd_per_hour, '/h')} while it runs"
    if action == "terminate":
        return f"Terminate {vm.name} and delete its {vm.volume_gb:g} GB volume and all its data"
    return None


# VMs with a provider call in flight in this process (the admin's one process: its requests and its
# autostop/budget loop), so a stop pressed while autostop's stop waits on a slow provider, or a
# terminate during a start, is refused instead of sent a second time.
_in_flight: set[int] = set()
_in_flight_lock = threading.Lock()


@contextlib.contextmanager
def _one_call_at_a_time(vm_id: int) -> Iterator[None]:
    with _in_flight_lock:
        if vm_id in _in_flight:
            raise VmActionError("another action on this VM is already in progress at its provider: "
                                "reload the page in a moment")
        _in_flight.add(vm_id)
    try:
        yield
    finally:
        with _in_flight_lock:
            _in_flight.discard(vm_id)


# Test seam: runs in the transaction that records a create's result (a test makes it raise).
before_create_recorded: Callable[[Vm], None] = lambda vm: None


def run_action(sessions: sessionmaker, settings: Settings, vm_id: int, action: str, confirmed: bool,
               clock: Callable[[], float] = time.time,
               still: Callable[[Session, Vm], str | None] | None = None) -> str:
    """Do `action` on VM `vm_id`. Returns a message for the user; raises VmActionError.
    `still(session, vm)`: checked in the claiming transaction, right before the provider call;
    a reason it returns refuses the action (a background decision that the row, or a setting,
    has changed since it was taken: "keep running" pressed, autostop turned off)."""
    if action not in ACTIONS:
        raise VmActionError(f"unknown action {action!r}")
    with _one_call_at_a_time(vm_id):
        return _run(sessions, settings, vm_id, action, confirmed, clock, still)


def _run(sessions, settings, vm_id, action, confirmed, clock, still) -> str:
    name, provider, client, request, seen = _claim(sessions, settings, vm_id, action, confirmed, clock, still)
    try:
        if action == "create":
            state = client.create(request)
        elif action == "start":
            new_id = client.start(seen[0])
        else:
            getattr(client, action)(seen[0])
    except ProviderError as exc:
        surely_nothing = isinstance(exc, ProviderRefused)
        _record_failure(sessions, vm_id, action, str(exc), surely_nothing)
        if action == "create" and not surely_nothing:
            raise VmActionError(f"create {name}: {provider} may have created it ({exc}); it is shown as "
                                "creating until the status refresh finds it or finds it never was") from None
        raise VmActionError(f"{action} {name} failed: {exc}") from None
    try:
        with sessions.begin() as session:
            vm = session.get(Vm, vm_id)
            if action == "create":
                before_create_recorded(vm)
                vm.instance_id = state.instance_id
                vm.created_at = clock()
                vm_status.apply_state(vm, state, vm.created_at)
            elif vm is not None and vm.instance_id == seen[0]:
                if action == "start":
                    vm.instance_id = new_id
                vm_status.record_status(vm, _EXPECTED[action], clock())
                vm.last_error = ""
    except Exception:
        if action != "create":
            raise
        # The provider runs it: never lose its id. The row stays "creating"; the refresh adopts it.
        log.exception("VM %s: %s created instance %s but recording it failed; the status refresh "
                      "adopts it by name", name, provider, state.instance_id)
        return (f"create {name}: accepted by {provider} (instance {state.instance_id}) but not recorded yet; "
                "it shows as creating until the status refresh adopts it")
    _follow_up(sessions, settings, clock)
    return f"{action} {name}: accepted by {provider}"


def _claim(sessions: sessionmaker, settings: Settings, vm_id: int, action: str, confirmed: bool,
           clock, still=None) -> tuple[str, str, ProviderClient, CreateRequest | None, tuple[str | None, str]]:
    """Check the action and take the row for it in one short transaction (a create commits its
    intent here); returns what the provider call needs. Raises VmActionError."""
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
        changed = still(session, vm) if still is not None else None
        if changed:
            raise VmActionCalledOff(f"{action} {name} not done: {changed}")
        try:
            client = vm_status.client_for(vm.template.platform, vm.template, settings,
                                          vm_status.provider_timeout(settings))
        except ProviderError as exc:
            raise VmActionError(f"{action} {name} failed: {exc}") from None
        seen = (vm.instance_id, vm.status)
        request = _create_request(vm) if action == "create" else None
        if action == "create":
            # Conditional: of two concurrent creates, one claims the row, the other is refused.
            claimed = session.execute(
                update(Vm).where(Vm.id == vm_id, Vm.instance_id.is_(None), Vm.status == vm.status)
                .values(status="creating", create_requested_at=clock(), last_error="",
                        missing_answers=0, missing_since=None)
                .execution_options(synchronize_session=False)).rowcount
            if not claimed:
                raise VmActionError(f"cannot create {name}: it changed meanwhile, reload the page")
    return name, provider, client, request, seen


def _record_failure(sessions: sessionmaker, vm_id: int, action: str, error: str, surely_nothing: bool) -> None:
    with sessions.begin() as session:
        vm = session.get(Vm, vm_id)
        if vm is None:
            return
        vm.last_error = error
        if action != "create" or vm.status != "creating" or vm.instance_id:
            return
        if surely_nothing:
            vm.status, vm.create_requested_at = "new", None
        else:
            vm.last_error = (f"create sent, answer lost ({error}): the provider may have rented it; the "
                             f"status refresh adopts an instance named {vm.name} when the provider lists one, "
                             "else it goes back to new")


def _create_request(vm: Vm) -> CreateRequest:
    t = vm.template
    return CreateRequest(name=vm.name, gpu=t.gpu, gpu_count=t.gpu_count, region=t.region,
                         vcpus=t.vcpus, ram_gb=t.ram_gb, container_gb=vm.container_gb,
                         volume_gb=vm.volume_gb, image=t.image,
                         ports=(t.dashboard_port, t.exporter_port) if t.runs_dashboard else (t.dashboard_port,))


def _follow_up(sessions: sessionmaker, settings: Settings, clock) -> None:
    """Read the real state back and recompute costs now, so the pages move at once."""
    vm_status.refresh_statuses(sessions, settings, clock)
    vm_status.refresh_costs(sessions, settings, clock, ask_provider=False)
