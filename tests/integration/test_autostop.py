"""Autostop and the budget guard against real Prometheus and Alertmanager and a fake Runpod:
an idle VM is stopped (never terminated) once its idle window is fully covered by GPU data and
the receivers hear what it saved; "keep running" restarts the window; a flapping GPU metric
(one low sample amid busy ones) and a VM without GPU data are left running, with the reason shown.

Time is compressed: WORDSLAB_AUTOSTOP_TIME_SCALE=0.1 makes a 5-minute idle window 30 s, and the
admin's own background loop checks every 2 s.
"""
from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest
from sqlalchemy import select

from common.store.vms import Vm
from tests.fakes.cloud_providers import FakeVast
from tests.fakes.loopback import serving
from tests.fakes.vm_exporter import FakeVmExporter
from tests.support.alert_stack import AlertStack, wait_for
from tests.support.alertmanager import WebhookReceiver

pytestmark = pytest.mark.integration

WINDOW_S = 30  # 5 min x 0.1
AUTOSTOP = {"autostop_idle_minutes": 5, "autostop_gpu_percent": 10}



def _vm(stack, name) -> Vm:
    with stack.ctx.sessions() as s:
        return s.scalar(select(Vm).where(Vm.name == name))


@pytest.fixture
def stack(tmp_path):
    stack = AlertStack.start(tmp_path, WORDSLAB_AUTOSTOP_TIME_SCALE="0.1", WORDSLAB_AUTOSTOP_INTERVAL_SECONDS="2")
    yield stack
    stack.close()


def test_idle_vm_stops_busy_flapping_kept_and_blind_vms_keep_running(stack):
    fake, hook = FakeVast(), WebhookReceiver()
    idle, busy, kept = FakeVmExporter(0.0), FakeVmExporter(0.9, gpus=2), FakeVmExporter(0.0)
    with serving(fake.handler()) as provider_url, serving(hook.handler()) as hook_url, \
            serving(idle.handler()) as idle_url, serving(busy.handler()) as busy_url, \
            serving(kept.handler()) as kept_url:
        stack.add_receiver(name="hook", kind="webhook", new_url=hook_url, send_resolved="")
        started = time.time()
        ids = {name: stack.add_vm(name, url, provider=fake, provider_url=provider_url, price=2.0, **AUTOSTOP)
               for name, url in (("idle", idle_url), ("busy", busy_url), ("kept", kept_url), ("blind", ""))}
        instance = {name: _vm(stack, name).instance_id for name in ids}

        # One low scrape amid busy ones on one GPU: the max over the window stays high.
        busy.wait_scrapes(2, 20)
        busy.utilization = 0.0
        busy.wait_scrapes(1, 20)
        busy.utilization = 0.9

        # "keep running" on the idle VM "kept" two thirds into its window: it counts again from there.
        time.sleep(max(0.0, started + WINDOW_S * 2 / 3 - time.time()))
        page = stack.client.get("/admin/vms/").text
        assert "unless used" in page and "keep running" in page
        page = stack.post(f"/admin/vms/keep/{ids['kept']}/", {}, page="/admin/vms/")
        assert "kept running: autostop counts again from now" in page.text
        pressed = time.time()

        wait_for(lambda: _vm(stack, "idle").status == "stopped", WINDOW_S + 40, "autostop to stop the idle VM")
        stopped_after = time.time() - started
        assert stopped_after >= WINDOW_S
        # Stopped at the provider, not terminated.
        assert fake.instances[instance["idle"]]["intended_status"] == "stopped"
        assert "every GPU under 10 %" in _vm(stack, "idle").autostop_note

        # Until the kept VM's new window ends, nothing else is stopped.
        time.sleep(max(0.0, pressed + WINDOW_S - 5 - time.time()))
        for name in ("busy", "kept", "blind"):
            assert _vm(stack, name).status == "running", (name, _vm(stack, name).autostop_note)
        assert "GPU at 90 %" in _vm(stack, "busy").autostop_note
        assert "no GPU data" in _vm(stack, "blind").autostop_note and _vm(stack, "blind").autostop_at is None
        assert _vm(stack, "busy").autostop_at > time.time()

        # The countdown is a metric too (the dashboard panel's query).
        q = urllib.parse.quote('wordslab_vm_autostop_seconds_remaining{vm="busy"}')
        result = json.load(urllib.request.urlopen(f"{stack.prometheus.url}/api/v1/query?query={q}"))["data"]["result"]
        assert result and 0 < float(result[0]["value"][1]) <= WINDOW_S

        # The receivers hear what the stop saved.
        post = wait_for(lambda: next((p["body"] for p in hook.posts
                                   if p["body"]["commonLabels"].get("alertname") == "WordslabVmAutostopped"), None),
                     45, "the autostop notification")
        text = post["alerts"][0]["annotations"]["description"]
        assert post["commonLabels"]["vm"] == "idle"
        assert "$2.00/h" in text and "$48.00 saved for each day" in text and "disks are kept" in text

        # Left idle after "keep running", the kept VM is stopped in its turn.
        wait_for(lambda: _vm(stack, "kept").status == "stopped", WINDOW_S, "autostop to stop the kept VM later")
        assert time.time() - pressed >= WINDOW_S
        assert _vm(stack, "busy").status == "running" and _vm(stack, "blind").status == "running"
        assert set(fake.instances) == set(instance.values())


def test_budget_guard_stops_every_running_vm_once_the_budget_is_passed(stack):
    from common.sources.vm_costs import month_key
    from common.store.vms import VmMonthlyCost

    fake, hook = FakeVast(), WebhookReceiver()
    with serving(fake.handler()) as provider_url, serving(hook.handler()) as hook_url:
        stack.add_receiver(name="hook", kind="webhook", new_url=hook_url, send_resolved="")
        ids = [stack.add_vm(name, "", provider=fake, provider_url=provider_url, price=1.5) for name in ("a", "b")]
        with stack.ctx.sessions.begin() as s:
            s.add(VmMonthlyCost(vm_id=ids[0], month=month_key(time.time()), compute_usd=12, total_usd=12))
        # Over budget, guard off: nothing is stopped.
        page = stack.post("/admin/vm_settings/", {"budget": "10", "interval": "60"}, page="/admin/vm_settings/")
        assert "VM settings saved" in page.text
        q = urllib.parse.quote("instance:wordslab_cost_month_usd:sum > on (instance) wordslab_cost_budget_month_usd")
        wait_for(lambda: json.load(urllib.request.urlopen(f"{stack.prometheus.url}/api/v1/query?query={q}"))["data"]["result"],
              30, "Prometheus to see the spend over budget")
        time.sleep(5)  # two guard passes
        assert {_vm(stack, n).status for n in ("a", "b")} == {"running"}

        page = stack.post("/admin/vm_settings/", {"budget": "10", "interval": "60", "stop_all": "1"},
                          page="/admin/vm_settings/")
        assert 'id="stop_all" name="stop_all" value="1" checked' in stack.client.get("/admin/vm_settings/").text
        wait_for(lambda: all(_vm(stack, n).status == "stopped" for n in ("a", "b")), 20, "the budget guard to stop both VMs")
        assert all(i["intended_status"] == "stopped" for i in fake.instances.values()) and len(fake.instances) == 2
        post = wait_for(lambda: next((p["body"] for p in hook.posts
                                   if p["body"]["commonLabels"].get("alertname") == "WordslabBudgetGuardStopped"), None),
                     45, "the budget guard's notification")
        assert "passed the budget $10.00" in post["alerts"][0]["annotations"]["description"]
