"""The alerting stack of one machine, all real but the remote VM: the admin (served on loopback
so Alertmanager reaches its relay), Debian's Alertmanager on the config the admin renders, the
local exporter reading the admin's DB, and Prometheus on the runner's runtime config with a
file_sd target for the VM's (fake) exporter.

    stack = AlertStack.start(tmp_path, rule_for={"WordslabVmGpuIdle": "5s"})
    vm_id = stack.add_vm("box", exporter_url, running=True)
    ...
    stack.close()
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit
import threading
import time
from pathlib import Path

from sqlalchemy import select

from admin.cloud.vm_status import record_status, sync_targets
from common.config import Settings
from common.store.vms import HostingPlatform, Vm, VmTemplate
from wordslab_dashboard.layout import Layout

from tests.support.admin import PASSWORD, csrf_from, logged_in_client, make_admin_app
from tests.support.alertmanager import AlertmanagerServer
from tests.support.env import free_port, wordslab_env
from tests.support.prometheus import REPO_ROOT, PrometheusServer, start_exporter


def wait_for(predicate, timeout: float, what: str):
    """The first truthy result of `predicate()`, polled every 0.5 s; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


RECEIVER_FORM = {"enabled": "y", "send_resolved": "y", "new_url": "", "new_token": "", "clear_token": "",
                 "email_to": "", "email_from": "", "smarthost": "", "smtp_username": "", "new_smtp_password": ""}


def shorten_for(rules_dir: Path, durations: dict[str, str]) -> None:
    """Give the named alert rules a shorter `for:` in the runtime copy (the rule's logic and
    its full duration are promtool-tested in prometheus/tests/; here delivery is under test)."""
    for path in rules_dir.glob("*.yml"):
        text = path.read_text()
        for alert, duration in durations.items():
            text = re.sub(rf"(- alert: {alert}\n(?:(?!\s+- alert:).*\n)*?\s+for: )\S+", rf"\g<1>{duration}", text)
        path.write_text(text)


class AlertStack:
    def __init__(self, root: Path, env: dict[str, str]):
        self.root = root
        self.env = env
        self.settings = Settings.from_env(env)
        self.cleanups = []

    @classmethod
    def start(cls, root: Path, rule_for: dict[str, str] | None = None, **extra_env: str) -> "AlertStack":
        admin_port = free_port()
        env = wordslab_env(root, WORDSLAB_ADMIN_URL=f"http://127.0.0.1:{admin_port}",
                           WORDSLAB_VM_STATUS_INTERVAL_SECONDS="0",
                           WORDSLAB_VM_PROVIDER_TIMEOUT_SECONDS="2", **extra_env)
        layout = Layout(repo=REPO_ROOT, state=Path(env["WORDSLAB_DASHBOARD_STATE_DIR"]))
        layout.prepare_alertmanager()
        stack = cls(root, env)
        try:
            stack.alertmanager = AlertmanagerServer.start(layout.alertmanager_config, root)
            stack.cleanups.append(stack.alertmanager.stop)
            env["WORDSLAB_ALERTMANAGER_URL"] = stack.alertmanager.url
            exporter, address = start_exporter(env, [], root)
            stack.cleanups.append(exporter.stop)
            stack.exporter_address = address
            layout.prepare_prometheus(address, stack.alertmanager.url.removeprefix("http://"))
            shorten_for(layout.prometheus_runtime / "rules", rule_for or {})
            stack.prometheus = PrometheusServer.start(layout.prometheus_runtime, root)
            stack.cleanups.append(stack.prometheus.stop)
            env["WORDSLAB_PROMETHEUS_URL"] = stack.prometheus.url
            stack.settings = Settings.from_env(env)
            stack._start_admin(admin_port)
        except Exception:
            stack.close()
            raise
        return stack

    def _start_admin(self, port: int) -> None:
        from werkzeug.serving import make_server
        self.app = make_admin_app(self.env)
        self.ctx = self.app.extensions["wordslab"]
        server = make_server("127.0.0.1", port, self.app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.cleanups.append(server.shutdown)
        self.cleanups.append(lambda: self.app.extensions["wordslab_vm_refresher"].stop())
        self.cleanups.append(lambda: self.app.extensions["wordslab_autostop"].stop())
        self.client = logged_in_client(self.app, PASSWORD)

    def post(self, url: str, data: dict, page: str = "/admin/"):
        token = csrf_from(self.client.get(page).text)
        return self.client.post(url, data={**data, "csrf_token": token}, follow_redirects=True)

    def add_receiver(self, **fields):
        """Create a receiver through the admin's form; returns the page it ends on."""
        return self.post("/admin/alert_receivers/new/", {**RECEIVER_FORM, **fields}, page="/admin/alert_receivers/")

    def add_vm(self, name: str, exporter_url: str, *, running: bool = True, price: float = 2.0,
               provider=None, provider_url: str | None = None, **vm_fields) -> int:
        """A VM on a vast.ai platform, running since now, its exporter (if any) a Prometheus target.
        With a FakeVast `provider` (tests/fakes/cloud_providers.py) serving at `provider_url`, the
        instance exists there too, mapping the exporter port to `exporter_url`'s, so the admin's
        status refresh keeps the target and its stop reaches the provider."""
        now = time.time()
        instance_id = f"i-{name}"
        if provider is not None:
            instance_id = provider.next_id()
            port = urlsplit(exporter_url).port if exporter_url else None
            provider.instances[instance_id] = {
                "id": int(instance_id), "label": name, "actual_status": "running", "intended_status": "running",
                "public_ipaddr": "127.0.0.1", "disk_space": 20,
                "ports": {"9877/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]} if port else {}}
        with self.ctx.sessions.begin() as s:
            platform = s.scalar(select(HostingPlatform)) or HostingPlatform(
                name="vast", provider="vast.ai", api_key=getattr(provider, "api_key", "k" * 24),
                base_url=provider_url)
            template = VmTemplate(name=f"t-{name}", platform=platform, gpu="H100", compute_usd_per_hour=price,
                                  runs_dashboard=True, exporter_port=9877)
            vm = Vm(name=name, template=template, instance_id=instance_id, created_at=now,
                    exporter_target=exporter_url, **vm_fields)
            s.add(vm)
            record_status(vm, "running" if running else "stopped", now)
            s.flush()
            sync_targets(self.settings, vm)
            return vm.id

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception:
                pass
