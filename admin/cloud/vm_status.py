"""Cloud VM status and cost refresher: asks the providers, records running intervals and
monthly costs in SQLite.

It runs in the ADMIN process (the config store's writer): the exporter only reads the
tables, so it never needs provider keys or write access, and a restart of either loses
nothing (intervals and costs are rows; an interval left open while nobody watched is
closed at the first observation of the stop, never earlier, so cost is not under-counted).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from common.log_changes import ChangeLog
from common.background import BackgroundSource
from common.config import Settings
from admin.file_sd import remove_targets, write_targets
from common.store.settings import get_setting
from common.store.vms import (BILLED_STATUSES, COST_INTERVAL_SECONDS, DEFAULT_STATUS_INTERVAL_SECONDS,
                              MISSING_ANSWERS, MISSING_MIN_SECONDS, STATUS_INTERVAL_SETTING,
                              HostingPlatform, Vm, VmInterval, VmMonthlyCost, VmTemplate)
from common.sources import vm_costs
from admin.cloud.providers import CLIENTS, InstanceState, ProviderClient, ProviderError, make_client, resolve_api_key

log = logging.getLogger(__name__)
# Repeated at every refresh: a problem is logged when it starts or changes, not each time.
_problems = ChangeLog(log)

Clock = Callable[[], float]
# States in which compute is surely not billed: an open interval closes.
_NOT_BILLED = ("stopped", "terminated", "gone", "error")


def client_for(platform: HostingPlatform, template: VmTemplate | None, settings: Settings,
               timeout: float | None = None) -> ProviderClient:
    home = Path(settings.get("HOME") or os.path.expanduser("~"))
    key = resolve_api_key(platform.provider, platform.api_key, platform.api_key_var, settings.env, home)
    ports = (template.dashboard_port, template.exporter_port) if template else ()
    kwargs = {"ports": ports}
    if timeout is not None:
        kwargs["timeout"] = timeout
    return make_client(platform.provider, key, platform.base_url, **kwargs)


def provider_timeout(settings: Settings) -> float | None:
    return settings.vm_provider_timeout_seconds


def record_status(vm: Vm, status: str, now: float, provider_state: str = "") -> None:
    """Apply an observed status: open/close the running interval, stamp start/stop times."""
    open_interval = next((i for i in vm.intervals if i.ended_at is None), None)
    if status in BILLED_STATUSES and open_interval is None:
        vm.intervals.append(VmInterval(started_at=now))
        vm.last_started_at = now
    elif status in _NOT_BILLED and open_interval is not None:
        open_interval.ended_at = now
        vm.last_stopped_at = now
    if status in ("terminated", "gone") and vm.terminated_at is None:
        vm.terminated_at = now
    vm.status = status
    if provider_state:
        vm.provider_state = provider_state


def apply_state(vm: Vm, state: InstanceState, now: float) -> None:
    record_status(vm, state.status, now, state.provider_state)
    vm.last_error = ""
    vm.status_checked_at = now
    vm.missing_answers, vm.missing_since, vm.create_requested_at = 0, None, None
    if state.terminal_url:
        vm.terminal_url = state.terminal_url
    template = vm.template
    dashboard = state.public_urls.get(template.dashboard_port, "")
    exporter = state.public_urls.get(template.exporter_port, "")
    vm.dashboard_url = dashboard or (vm.dashboard_url if state.status == "running" else "")
    vm.exporter_target = exporter if template.runs_dashboard else ""


def apply_failure(vm: Vm, error: str, now: float) -> None:
    """Keep intervals as they are (we do not know), say what went wrong."""
    if vm.status == "gone":  # presumed terminated stays so: only a listing brings it back
        return
    if vm.status != "creating":  # a half-done create stays one until the provider lists it
        vm.status = "unknown"
    vm.last_error = error
    vm.status_checked_at = now


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def apply_missing(vm: Vm, provider: str, now: float) -> None:
    """A successful answer left the instance out: "missing" until the rule of
    common.store.vms (MISSING_ANSWERS answers over MISSING_MIN_SECONDS) says it is gone."""
    vm.status_checked_at = now
    vm.missing_answers = (vm.missing_answers or 0) + 1
    if vm.missing_since is None:
        vm.missing_since = now
    seen = f"{vm.missing_answers} answer(s) since {_when(vm.missing_since)}"
    settled = vm.missing_answers >= MISSING_ANSWERS and now - vm.missing_since >= MISSING_MIN_SECONDS
    if vm.status == "creating":
        if settled:
            vm.status, vm.create_requested_at = "new", None
            vm.missing_answers, vm.missing_since = 0, None
            vm.last_error = (f"the create sent earlier never appeared at {provider} ({seen}): "
                             "nothing was rented; you can create it again")
        else:
            vm.last_error = (f"create sent, instance id not recorded yet: waiting for {provider} to list "
                             f"an instance named {vm.name} ({seen}); check its console if this lasts")
        return
    if settled:
        record_status(vm, "gone", now, "not listed")
        vm.last_error = (f"not listed by {provider} in {seen}: presumed terminated, billing presumed "
                         "ended; check the provider's console before deleting this row")
    else:
        vm.status, vm.provider_state = "missing", "not listed"
        vm.last_error = (f"not listed by {provider} ({seen}): it may still bill; stop or terminate it, "
                         "or wait for the next answers")


@dataclass
class _Poll:
    """What one platform's refresh asks for, read before the provider call."""
    provider: str
    client: ProviderClient | None
    # vm id -> (instance id, status) as read: a row changed meanwhile is left to whoever changed it.
    vms: dict[int, tuple[str | None, str]]
    error: str = ""
    states: dict[str, InstanceState] | None = None


def _watched(vm: Vm) -> bool:
    """Polled: live instances, half-done creates, and "gone" ones (in case they come back)."""
    if vm.status == "creating":
        return True
    return bool(vm.instance_id) and vm.status != "terminated"


def _plan(sessions: sessionmaker, settings: Settings) -> list[_Poll]:
    polls = []
    with sessions() as session:
        for platform in session.scalars(select(HostingPlatform)):
            vms = [vm for t in platform.templates for vm in t.vms if _watched(vm)]
            if not vms:
                continue
            poll = _Poll(platform.provider, None, {vm.id: (vm.instance_id, vm.status) for vm in vms})
            try:
                poll.client = client_for(platform, vms[0].template, settings, provider_timeout(settings))
            except ProviderError as exc:
                poll.error = str(exc)
            polls.append(poll)
    return polls


def _adopt(vm: Vm, states: dict[str, InstanceState], tracked: set[str]) -> InstanceState | None:
    """The one listed instance named like this VM that no row tracks: a create whose id was lost,
    or an instance resumed under a new id (Jarvislabs) whose id was not recorded."""
    found = [s for i, s in states.items() if s.name == vm.name and i not in tracked]
    return found[0] if len(found) == 1 else None


def _apply(session: Session, poll: _Poll, now: float) -> int:
    tracked = set(session.scalars(select(Vm.instance_id).where(Vm.instance_id.is_not(None))))
    count = 0
    for vm_id, seen in poll.vms.items():
        vm = session.get(Vm, vm_id)
        if vm is None or (vm.instance_id, vm.status) != seen:
            continue  # deleted, or an action changed it while we asked
        if poll.states is None:
            apply_failure(vm, poll.error, now)
            continue
        state = poll.states.get(vm.instance_id) if vm.instance_id else None
        if state is None:  # a create, or a resume that gave a new id, whose id was not recorded
            state = _adopt(vm, poll.states, tracked)
        if state is None:
            if vm.status != "gone":
                apply_missing(vm, poll.provider, now)
            continue
        if vm.status == "gone":  # the rule was wrong: it bills again from now on
            log.warning("VM %s: instance %s is listed by %s again", vm.name, vm.instance_id, poll.provider)
            vm.terminated_at = None
        if vm.instance_id != state.instance_id:
            log.warning("VM %s: adopting instance %s found by name at %s (recorded: %s)", vm.name,
                        state.instance_id, poll.provider, vm.instance_id or "none")
            tracked.discard(vm.instance_id)
            tracked.add(state.instance_id)
            vm.instance_id = state.instance_id
            if vm.created_at is None:
                vm.created_at = vm.create_requested_at or now
        apply_state(vm, state, now)
        count += 1
    return count


def sync_targets(settings: Settings, vm: Vm) -> None:
    """A running VM that runs wordslab-dashboard gets scraped under its own instance."""
    name = f"vm-{vm.name}"
    if vm.status == "running" and vm.exporter_target:
        scheme, _, target = vm.exporter_target.rpartition("://")
        labels = {"vm": vm.name, "__scheme__": scheme or "http"}
        write_targets(settings, name, [target], labels)
    else:
        remove_targets(settings, name)


def refresh_statuses(sessions: sessionmaker, settings: Settings, clock: Clock = time.time) -> int:
    """Ask every platform for its instances and record what they say. Returns VMs updated.

    Never holds a transaction across a provider call: read what to ask (session closed), ask
    with no transaction open, then write the answers in one short transaction that re-reads
    each row and skips one deleted or changed meanwhile.
    """
    polls = _plan(sessions, settings)
    for poll in polls:
        if poll.client is not None:
            try:
                poll.states = poll.client.statuses()
            except ProviderError as exc:
                poll.error = str(exc)
    now = clock()
    count = 0
    with sessions.begin() as session:
        for poll in polls:
            count += _apply(session, poll, now)
    with sessions() as session:
        for vm in session.scalars(select(Vm)):
            sync_targets(settings, vm)
    return count


def vm_rates(vm: Vm) -> vm_costs.Rates:
    t = vm.template
    return vm_costs.Rates(CLIENTS[t.platform.provider].storage_rule, t.compute_usd_per_hour, vm.container_gb,
                          t.container_usd_per_gb_month, vm.volume_gb, t.volume_usd_per_gb_month)


def estimate_month(vm: Vm, now: float) -> vm_costs.MonthCost:
    start, end = vm_costs.month_bounds(now)
    intervals = [(i.started_at, i.ended_at) for i in vm.intervals]
    return vm_costs.month_cost(vm_rates(vm), intervals, vm.created_at, vm.terminated_at, start, end, now)


def store_cost(session: Session, vm: Vm, cost: vm_costs.MonthCost, now: float) -> None:
    month = vm_costs.month_key(now)
    row = session.scalar(select(VmMonthlyCost).where(VmMonthlyCost.vm_id == vm.id,
                                                     VmMonthlyCost.month == month))
    if row is None:
        row = VmMonthlyCost(vm_id=vm.id, month=month)
        session.add(row)
    row.compute_usd, row.storage_usd, row.total_usd = cost.compute_usd, cost.storage_usd, cost.total_usd
    row.source, row.computed_at = cost.source, now


def refresh_costs(sessions: sessionmaker, settings: Settings, clock: Clock = time.time,
                  ask_provider: bool = True) -> int:
    """This month's cost of every VM that exists or existed; provider billing where offered.

    The billing calls run with no transaction open; the costs are written in a short one after.
    """
    now = clock()
    start, end = vm_costs.month_bounds(now)
    billed: dict[int, dict] = {}  # platform id -> instance id -> BilledCost
    if ask_provider:
        asks = []
        with sessions() as session:
            for platform in session.scalars(select(HostingPlatform)):
                vms = [vm for t in platform.templates for vm in t.vms if vm.created_at is not None]
                if vms:
                    try:
                        client = client_for(platform, vms[0].template, settings, provider_timeout(settings))
                    except ProviderError as exc:
                        _problems.report(f"billing:{platform.name}", str(exc), "billing of %s unavailable: %s",
                                         platform.name, exc)
                        continue
                    asks.append((platform.id, platform.name, client, [vm.instance_id for vm in vms]))
        for platform_id, name, client, instance_ids in asks:
            try:
                billed[platform_id] = client.billing(instance_ids, start, min(end, now)) or {}
            except ProviderError as exc:  # the estimate stands
                _problems.report(f"billing:{name}", str(exc), "billing of %s unavailable: %s", name, exc)
    count = 0
    with sessions.begin() as session:
        for platform in session.scalars(select(HostingPlatform)):
            for vm in (vm for t in platform.templates for vm in t.vms if vm.created_at is not None):
                cost = vm_costs.reconcile(estimate_month(vm, now), billed.get(platform.id, {}).get(vm.instance_id))
                store_cost(session, vm, cost, now)
                count += 1
    return count


def status_interval(sessions: sessionmaker, settings: Settings) -> float:
    with sessions() as session:
        value = get_setting(session, STATUS_INTERVAL_SETTING)
    if value:
        return float(value)
    configured = settings.vm_status_interval_seconds
    return DEFAULT_STATUS_INTERVAL_SECONDS if configured is None else configured


class VmRefresher:
    """The admin's background threads: status every `status_interval`, costs hourly."""

    def __init__(self, sessions: sessionmaker, settings: Settings, clock: Clock = time.time):
        self.status = BackgroundSource("vm_status", lambda: refresh_statuses(sessions, settings, clock),
                                       status_interval(sessions, settings))
        self.costs = BackgroundSource("vm_costs", lambda: refresh_costs(sessions, settings, clock),
                                      COST_INTERVAL_SECONDS)

    def start(self) -> None:
        if self.status.interval_seconds > 0:  # 0 disables polling (tests drive refresh_now)
            self.status.start()
            self.costs.start()

    def stop(self) -> None:
        self.status.stop()
        self.costs.stop()

    def set_interval(self, seconds: float) -> None:
        self.status.interval_seconds = seconds
        self.status.request_refresh()
