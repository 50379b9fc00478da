"""Cloud VMs world: a Runpod platform and template, one VM running and one stopped, with recorded
intervals, this month's cost rows, a budget and a running-time limit, so every VM panel, the
month-to-date cost total and the alert inputs have data."""
from __future__ import annotations

import time

from common.config import Settings
from admin.cloud import vm_status
from common.store.settings import set_setting
from common.store.vms import BUDGET_SETTING, HostingPlatform, Vm, VmTemplate

HOUR = 3600.0


def build(world) -> None:
    now = time.time()
    sessions = world.sessions()
    with sessions.begin() as s:
        platform = HostingPlatform(name="runpod", provider="runpod.io", api_key_var="RUNPOD_API_KEY")
        template = VmTemplate(name="a6000", platform=platform, region="EU-RO-1", gpu="NVIDIA RTX A6000",
                              gpu_count=1, vram_gb=48, vcpus=8, ram_gb=50, compute_usd_per_hour=0.79,
                              container_usd_per_gb_month=0.10, volume_usd_per_gb_month=0.10,
                              runs_dashboard=True)
        # Autostop on, two hours to go (the countdown panel's data).
        trainer = Vm(name="trainer", template=template, container_gb=20, volume_gb=100, instance_id="pod-trainer",
                     created_at=now - 5 * HOUR, max_running_hours=8, autostop_after_hours=6,
                     autostop_at=now + 2 * HOUR,
                     terminal_url="https://console.runpod.io/pods?id=pod-trainer",
                     dashboard_url="https://pod-trainer-8888.proxy.runpod.net")
        spare = Vm(name="spare", template=template, container_gb=20, volume_gb=50, instance_id="pod-spare",
                   created_at=now - 5 * HOUR, terminal_url="https://console.runpod.io/pods?id=pod-spare")
        s.add_all([trainer, spare])
        vm_status.record_status(trainer, "running", now - 4 * HOUR, "RUNNING")
        vm_status.record_status(spare, "running", now - 4 * HOUR, "RUNNING")
        vm_status.record_status(spare, "stopped", now - 2 * HOUR, "EXITED")
        for vm in (trainer, spare):
            vm.status_checked_at = now
        set_setting(s, BUDGET_SETTING, "100")
    vm_status.refresh_costs(sessions, Settings.from_env(world.env), clock=lambda: now, ask_provider=False)
