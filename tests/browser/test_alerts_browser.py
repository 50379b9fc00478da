"""Alerts in headless Chromium against the real admin and Debian's Alertmanager: add a webhook
receiver (its URL never shown again), send it a test notification, see a firing alert and
snooze it for 1 h, and press "keep running" under a VM's autostop countdown."""
from __future__ import annotations

import json
import time
import urllib.request

from playwright.sync_api import expect

from admin.alerting.alertmanager import Alertmanager, iso
from common.store.vms import HostingPlatform, Vm, VmTemplate
from tests.fakes.loopback import serving
from tests.support.admin_server import login
from tests.support.alertmanager import AlertmanagerServer, WebhookReceiver
from tests.support.prometheus import REPO_ROOT
from wordslab_dashboard.layout import Layout


def test_receiver_test_notification_snooze_and_keep_running(admin_server_factory, page, screenshot, tmp_path):
    root = tmp_path / "vm0"
    layout = Layout(repo=REPO_ROOT, state=root / "state")
    layout.prepare_alertmanager()
    am = AlertmanagerServer.start(layout.alertmanager_config, tmp_path)
    hook = WebhookReceiver()
    try:
        with serving(hook.handler()) as hook_url:
            server = admin_server_factory(root=root, env={"WORDSLAB_ALERTMANAGER_URL": am.url,
                                                          "WORDSLAB_VM_STATUS_INTERVAL_SECONDS": "0",
                                                          "WORDSLAB_AUTOSTOP_INTERVAL_SECONDS": "0"})
            login(page, server)

            page.goto(server.url + "/admin/alert_receivers/new/")
            page.fill("#name", "my-hook")
            page.select_option("#kind", "webhook")
            page.fill("#new_url", hook_url + "/alerts")
            page.click("form.admin-form input[type=submit], form.admin-form button[type=submit]")
            expect(page.locator(".alert-success", has_text="Alertmanager reloaded")).to_contain_text(
                "Alertmanager reloaded with 1 receiver(s)")
            assert hook_url not in page.content()

            page.locator("form.alert-test button").click()
            expect(page.locator(".alert-success").first).to_contain_text("test notification to my-hook delivered")
            assert any(p["body"]["commonLabels"].get("wordslab_receiver") == "my-hook" for p in hook.posts)
            screenshot("test-notification")

            now = time.time()
            Alertmanager(am.url).post_alerts([{
                "labels": {"alertname": "WordslabVmGpuIdle", "vm": "trainer", "severity": "warning"},
                "annotations": {"summary": "VM trainer is running with idle GPUs"},
                "startsAt": iso(now), "endsAt": iso(now + 600)}])
            page.goto(server.url + "/admin/alerts/")
            row = page.locator("tr.firing-alert[data-alertname=WordslabVmGpuIdle]")
            expect(row).to_contain_text("VM trainer is running with idle GPUs")
            expect(page.locator("tr.firing-alert")).to_have_count(1)  # the test notification is no problem
            screenshot("firing")
            row.locator("button", has_text="snooze 1 h").click()
            expect(page.locator(".alert-success").first).to_contain_text("WordslabVmGpuIdle snoozed for 1 hour")
            expect(row).to_have_count(0)
            silences = json.load(urllib.request.urlopen(f"{am.url}/api/v2/silences"))
            assert [s["status"]["state"] for s in silences] == ["active"]

            with server.sessions().begin() as s:
                template = VmTemplate(name="h100", gpu="H100", compute_usd_per_hour=2.0,
                                      platform=HostingPlatform(name="vast", provider="vast.ai"))
                s.add(Vm(name="trainer", template=template, instance_id="7", status="running",
                         last_started_at=now - 3600, autostop_idle_minutes=30, autostop_at=now + 12 * 60 + 20,
                         autostop_note="GPUs under 5 % since it (re)started"))
            page.goto(server.url + "/admin/vms/")
            expect(page.locator(".vm-autostop-countdown")).to_have_text("stops in 12 min unless used")
            page.locator("form.vm-keep button").click()
            expect(page.locator(".alert-success").first).to_contain_text("trainer kept running")
            expect(page.locator(".vm-autostop-countdown")).to_have_count(0)
            with server.sessions()() as s:
                assert s.query(Vm).one().autostop_kept_at >= now
    finally:
        am.stop()
