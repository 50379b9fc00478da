"""Cloud VMs (Runpod, Vast.ai, Jarvislabs): what they are, their status and this month's cost.

Read from the config store's shared snapshot (common/sources/config_db.py), never on the
scrape path: the admin's refresher asks the providers and writes status, intervals and costs;
nothing here calls out.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from common.sources.vm_costs import month_key
from sqlalchemy.orm import Session

from common.sources import config_db
from common.store.settings import get_setting
from common.store.vms import BUDGET_SETTING, VM_STATUSES, Vm, VmMonthlyCost, VmTemplate
from exporter.collectors.base import PREFIX, WordslabCollector, add_state_set, gauge

GIB = 1024 ** 3   # VRAM and RAM "GB" are binary, as GPU and instance specs mean them
GB = 1000 ** 3    # disk sizes are decimal GB, as providers bill them


@dataclass(frozen=True)
class VmFacts:
    name: str
    provider: str
    region: str
    gpu: str
    terminal_url: str
    dashboard_url: str
    status: str
    vram_gb: float
    vcpus: int
    ram_gb: float
    usd_per_hour: float
    container_gb: float
    volume_gb: float
    last_started_at: float | None
    last_stopped_at: float | None
    max_running_hours: float | None
    status_checked_at: float | None
    provider_ok: bool
    cost: tuple[float, float, float, str] | None  # compute, storage, total, source
    # Seconds until autostop stops it unless used (admin/cloud/autostop.py), as of the read: worked
    # out here, not while rendering, whose text is kept until the read's value changes.
    autostop_remaining: float | None = None


def _facts(vm: Vm, cost: VmMonthlyCost | None, now: float) -> VmFacts:
    t = vm.template
    return VmFacts(vm.name, t.platform.provider, t.region or "", t.gpu, vm.terminal_url or "",
                   vm.dashboard_url or "", vm.status, t.vram_gb * t.gpu_count, t.vcpus, t.ram_gb,
                   t.compute_usd_per_hour, vm.container_gb, vm.volume_gb, vm.last_started_at,
                   vm.last_stopped_at, vm.max_running_hours, vm.status_checked_at, not vm.last_error,
                   (cost.compute_usd, cost.storage_usd, cost.total_usd, cost.source) if cost else None,
                   max(0.0, vm.autostop_at - now) if vm.autostop_at is not None and vm.status == "running"
                   else None)


def load(session: Session, now: float | None = None) -> tuple[tuple[VmFacts, ...], float | None]:
    """Every VM with its current-month cost row, and the monthly budget (USD, None when unset).
    Read again at least every config_db.FORCED_READ_SECONDS, which keeps the countdowns going."""
    now = time.time() if now is None else now
    month = month_key(now)
    costs = {c.vm_id: c for c in session.scalars(
        select(VmMonthlyCost).where(VmMonthlyCost.month == month))}
    vms = session.scalars(select(Vm).order_by(Vm.name).options(
        selectinload(Vm.template).selectinload(VmTemplate.platform))).all()
    facts = tuple(_facts(vm, costs.get(vm.id), now) for vm in vms)
    budget = get_setting(session, BUDGET_SETTING)
    return facts, float(budget) if budget else None


VM = ("vm",)


class VmsCollector(WordslabCollector):
    name = "vms"
    output_from_sources_only = True

    def __init__(self, settings):
        super().__init__(settings)
        self.config = config_db.shared(settings.db_path)
        self.config.add_read("vms", load, ((), None))
        self.sources = [self.config.source]

    def collect_metrics(self) -> Iterable[Metric]:
        vms, budget = self.config.value("vms")
        info = gauge("vm_info", "Cloud VM configured in the admin, value 1.",
                     ("vm", "provider", "region", "gpu", "terminal_url", "dashboard_url"))
        status = gauge("vm_status", "VM status as a state set: 1 for its current status "
                       f"({'/'.join(VM_STATUSES)}).", ("vm", "status"))
        vram = gauge("vm_gpu_memory_bytes", "GPU memory of the VM's instance type (all its GPUs).", VM)
        cpus = gauge("vm_cpus", "vCPUs of the VM's instance type.", VM)
        memory = gauge("vm_memory_bytes", "RAM of the VM's instance type.", VM)
        price = gauge("vm_price_usd_per_hour", "Compute price of the VM while running, USD per hour.", VM)
        storage = gauge("vm_storage_bytes", "Disk size of the VM by kind (container/volume).", ("vm", "kind"))
        started = gauge("vm_last_started_timestamp_seconds", "Unix time the VM last started running.", VM)
        stopped = gauge("vm_last_stopped_timestamp_seconds", "Unix time the VM last stopped running.", VM)
        cost = gauge("vm_cost_month_usd", "VM cost this calendar month (UTC) by kind "
                     "(compute/storage/total), refreshed hourly and after each admin action.", ("vm", "kind"))
        from_provider = gauge("vm_cost_from_provider", "1 when this month's VM cost comes from the "
                              "provider's billing, 0 when from recorded intervals x template rates.", VM)
        max_running = gauge("vm_max_running_seconds", "Configured longest run of the VM before the "
                            "alert fires; absent when unlimited.", VM)
        provider_ok = gauge("vm_provider_ok", "1 if the last provider call for the VM succeeded.", VM)
        checked = gauge("vm_status_checked_timestamp_seconds",
                        "Unix time the VM's status was last read from its provider.", VM)
        autostop = gauge("vm_autostop_seconds_remaining", "Seconds until autostop stops the running VM "
                         "unless it is used (0: due now); absent without a countdown.", VM)
        for vm in vms:
            info.add_metric([vm.name, vm.provider, vm.region, vm.gpu, vm.terminal_url, vm.dashboard_url], 1.0)
            add_state_set(status, [vm.name], VM_STATUSES, vm.status)
            vram.add_metric([vm.name], vm.vram_gb * GIB)
            cpus.add_metric([vm.name], vm.vcpus)
            memory.add_metric([vm.name], vm.ram_gb * GIB)
            price.add_metric([vm.name], vm.usd_per_hour)
            storage.add_metric([vm.name, "container"], vm.container_gb * GB)
            storage.add_metric([vm.name, "volume"], vm.volume_gb * GB)
            if vm.last_started_at is not None:
                started.add_metric([vm.name], vm.last_started_at)
            if vm.last_stopped_at is not None:
                stopped.add_metric([vm.name], vm.last_stopped_at)
            compute_usd, storage_usd, total_usd, source = vm.cost or (0.0, 0.0, 0.0, "recorded")
            cost.add_metric([vm.name, "compute"], compute_usd)
            cost.add_metric([vm.name, "storage"], storage_usd)
            cost.add_metric([vm.name, "total"], total_usd)
            from_provider.add_metric([vm.name], 1.0 if source == "provider" else 0.0)
            if vm.max_running_hours:
                max_running.add_metric([vm.name], vm.max_running_hours * 3600.0)
            provider_ok.add_metric([vm.name], 1.0 if vm.provider_ok else 0.0)
            if vm.status_checked_at is not None:
                checked.add_metric([vm.name], vm.status_checked_at)
            if vm.autostop_remaining is not None:
                autostop.add_metric([vm.name], vm.autostop_remaining)
        yield from (info, status, vram, cpus, memory, price, storage, started, stopped, cost,
                    from_provider, max_running, provider_ok, checked, autostop)
        if budget is not None:
            yield GaugeMetricFamily(PREFIX + "cost_budget_month_usd",
                                    "Monthly budget for cloud VMs plus external AI APIs, set in the admin, USD.", value=budget)
