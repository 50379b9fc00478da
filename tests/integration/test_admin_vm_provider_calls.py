"""The real admin process against a slow or failing fake provider: no provider call holds the
SQLite write lock (VM pages keep saving during a slow status refresh), and a create the
provider accepted is never lost, even when the DB is locked at the moment it is recorded."""
from __future__ import annotations

import re
import sqlite3
import threading
import time

import pytest

from common.store.vms import Vm
from tests.fakes.cloud_providers import API_KEY, FakeRunpod, FakeVast, serve
from tests.support.admin_http import AdminHttp
from tests.support.admin_server import start_admin
from tests.support.polling import wait_for

# What the admin's SQLite connections wait for a lock before "database is locked" (db.py).
ADMIN_BUSY_TIMEOUT_S = 5.0



def _ok(response) -> str:
    assert response.status_code == 200, response.text[-2000:]
    assert "database is locked" not in response.text and "Internal Server Error" not in response.text
    return response.text


def _vm_rows(server) -> dict[str, Vm]:
    with server.sessions()() as s:
        return {vm.name: vm for vm in s.query(Vm).all()}


def _setup(web: AdminHttp, base_url: str, provider: str, vms: tuple[str, ...]) -> None:
    _ok(web.post("/admin/platforms/new/", {"name": "p", "provider": provider, "api_key_var": "",
                                           "base_url": base_url, "new_api_key": API_KEY}))
    _ok(web.post("/admin/vm_templates/new/", {
        "name": "t", "platform": "1", "region": "", "gpu": "RTX_4090", "gpu_count": "1", "vram_gb": "24",
        "vcpus": "8", "ram_gb": "32", "compute_usd_per_hour": "0.5", "container_usd_per_gb_month": "0.1",
        "volume_usd_per_gb_month": "0.1", "image": "img", "dashboard_port": "8888", "exporter_port": "9877"}))
    for name in vms:
        _ok(web.post("/admin/vms/new/", {"name": name, "template": "1", "container_gb": "20",
                                         "volume_gb": "10", "max_running_hours": ""}))


@pytest.fixture
def fake():
    return FakeRunpod()


def test_vm_pages_save_while_a_slow_status_refresh_waits_on_the_provider(tmp_path, fake):
    with serve(fake) as base_url:
        server = start_admin(tmp_path / "vm", env={"WORDSLAB_VM_STATUS_INTERVAL_SECONDS": "1"})
        try:
            web = AdminHttp(server)
            _setup(web, base_url, "runpod.io", ("box", "other"))
            ids = {name: vm.id for name, vm in _vm_rows(server).items()}
            _ok(web.post(f"/admin/vms/action/{ids['box']}/create/", {"confirm": "1"}))
            assert _vm_rows(server)["box"].instance_id
            fake.delay_seconds = ADMIN_BUSY_TIMEOUT_S + 3  # each provider call outlasts a lock wait
            listed = len(fake.requests)
            wait_for(lambda: len(fake.requests) > listed, 120, "the status refresh to ask the provider")
            # The refresh is inside its slow call now: every write must still go through.
            _ok(web.post(f"/admin/vms/edit/?id={ids['box']}", {
                "name": "box", "template": "1", "container_gb": "20", "volume_gb": "10",
                "max_running_hours": "5"}))
            _ok(web.post("/admin/vm_settings/", {"budget": "50", "interval": "60"}))
            page = _ok(web.post(f"/admin/vms/action/{ids['other']}/create/", {"confirm": "1"}))
            assert "create other: accepted by runpod.io" in page
            rows = _vm_rows(server)
            assert rows["box"].max_running_hours == 5
            assert rows["other"].instance_id in fake.instances
            assert "database is locked" not in server.log()
        finally:
            fake.delay_seconds = 0
            server.stop()


def test_a_create_recorded_while_the_db_is_locked_is_not_lost(tmp_path):
    fake = FakeVast()
    with serve(fake) as base_url:
        server = start_admin(tmp_path / "vm", env={"WORDSLAB_VM_STATUS_INTERVAL_SECONDS": "1"})
        holders: list[threading.Thread] = []
        try:
            web = AdminHttp(server)
            _setup(web, base_url, "vast.ai", ("box",))
            vm_id = _vm_rows(server)["box"].id

            def lock_the_db(method, path):
                if not (method == "PUT" and path.startswith("/asks/")):
                    return
                # Another process' writer holds the lock longer than the admin waits for it.
                conn = sqlite3.connect(server.db_path, isolation_level=None, check_same_thread=False)
                conn.execute("BEGIN IMMEDIATE")

                def release():
                    time.sleep(ADMIN_BUSY_TIMEOUT_S + 3)
                    conn.execute("ROLLBACK")
                    conn.close()
                holders.append(threading.Thread(target=release))
                holders[-1].start()
            fake.on_call = lock_the_db
            page = _ok(web.post(f"/admin/vms/action/{vm_id}/create/", {"confirm": "1"}))
            fake.on_call = None
            (instance_id,) = fake.instances
            assert f"accepted by vast.ai (instance {instance_id}) but not recorded yet" in page
            assert re.search(rf"created instance {instance_id} but recording it failed", server.log())
            holders[0].join()
            # The status refresh finds it by name and records it.
            vm = wait_for(lambda: (v := _vm_rows(server)["box"]).instance_id and v, 120,
                           "the status refresh to adopt the instance")
            assert vm.instance_id == instance_id and vm.status in ("starting", "running")
            page = _ok(web.get("/admin/vms/"))
            assert 'data-action="terminate"' in page
        finally:
            for holder in holders:
                holder.join()
            server.stop()


def test_a_provider_that_lies_once_never_loses_a_live_vm(tmp_path):
    fake = FakeRunpod()
    with serve(fake) as base_url:
        server = start_admin(tmp_path / "vm", env={"WORDSLAB_VM_STATUS_INTERVAL_SECONDS": "1"})
        try:
            web = AdminHttp(server)
            _setup(web, base_url, "runpod.io", ("box",))
            vm_id = _vm_rows(server)["box"].id
            _ok(web.post(f"/admin/vms/action/{vm_id}/create/", {"confirm": "1"}))
            instance_id = _vm_rows(server)["box"].instance_id
            wait_for(lambda: _vm_rows(server)["box"].status == "running", 120, "the VM to run")
            fake.hidden = {instance_id}  # the provider's list leaves the live pod out
            wait_for(lambda: _vm_rows(server)["box"].status == "missing", 120, "the refresh to see it missing")
            page = _ok(web.get("/admin/vms/"))
            assert 'data-action="stop"' in page and 'data-action="terminate"' in page
            assert "it may still bill" in page
            page = _ok(web.post("/admin/vms/delete/", {"id": str(vm_id)}))
            assert "terminate it first, nothing was deleted" in page and "box" in _vm_rows(server)
            fake.hidden = set()
            vm = wait_for(lambda: (v := _vm_rows(server)["box"]).status == "running" and v, 120,
                          "the VM to be listed again")
            assert vm.instance_id == instance_id and vm.terminated_at is None and vm.last_error == ""
            page = _ok(web.post(f"/admin/vms/action/{vm_id}/terminate/", {"confirm": "1"}))
            assert "terminate box: accepted by runpod.io" in page and not fake.instances
        finally:
            server.stop()
