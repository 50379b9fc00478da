"""Admin: autostop settings on templates and VMs (bad values refused, nothing changed), the
countdown and "keep running" on the VMs page, the budget guard switch."""
import time

import pytest
from sqlalchemy import select

from common.store import connect, session_factory
from common.store.alerts import BUDGET_STOP_SETTING
from common.store.settings import get_setting
from common.store.vms import HostingPlatform, Vm, VmTemplate
from tests.support.admin import csrf_from, logged_in_client, make_admin_app


@pytest.fixture
def env(vm_env):
    return {**vm_env, "WORDSLAB_VM_STATUS_INTERVAL_SECONDS": "0", "WORDSLAB_AUTOSTOP_INTERVAL_SECONDS": "0"}


@pytest.fixture
def client(env):
    app = make_admin_app(env, view_modules=("vms",))
    yield logged_in_client(app)
    app.extensions["wordslab_vm_refresher"].stop()


@pytest.fixture
def sessions(env):
    engine = connect(env["WORDSLAB_DASHBOARD_DB"])
    yield session_factory(engine)
    engine.dispose()


def _post(client, url, data):
    token = csrf_from(client.get("/admin/vms/").text)
    return client.post(url, data={**data, "csrf_token": token}, follow_redirects=True)


def _running_vm(sessions, **fields) -> int:
    with sessions.begin() as s:
        t = VmTemplate(name="t", gpu="H100", compute_usd_per_hour=2.0,
                       platform=HostingPlatform(name="p", provider="vast.ai"))
        vm = Vm(name="box", template=t, instance_id="1", status="running", last_started_at=time.time(), **fields)
        s.add(vm)
        s.flush()
        return vm.id


def _vm(sessions) -> Vm:
    with sessions() as s:
        return s.scalar(select(Vm))


@pytest.mark.parametrize("field, value, message", [
    ("autostop_idle_minutes", "0.5", "autostop idle minutes must be between 1 and 10080"),
    ("autostop_gpu_percent", "150", "autostop GPU threshold (percent) must be between 0.1 and 100"),
    ("autostop_after_hours", "-2", "autostop running hours must be between 0.1 and 8784"),
])
def test_bad_autostop_values_are_refused(client, sessions, field, value, message):
    vm_id = _running_vm(sessions)
    data = {"name": "box", "template": "1", "container_gb": "20", "volume_gb": "0", "max_running_hours": "",
            "autostop_idle_minutes": "", "autostop_gpu_percent": "", "autostop_after_hours": "", field: value}
    page = _post(client, f"/admin/vms/edit/?id={vm_id}", data)
    assert message in page.text
    assert getattr(_vm(sessions), field) is None


def test_countdown_and_keep_running(client, sessions):
    now = time.time()
    vm_id = _running_vm(sessions, autostop_idle_minutes=30, autostop_at=now + 12 * 60 + 20,
                        autostop_note="GPUs under 5 % since it (re)started")
    page = client.get("/admin/vms/").text
    assert "stops in 12 min unless used" in page and "keep running" in page
    page = _post(client, f"/admin/vms/keep/{vm_id}/", {})
    assert "box kept running: autostop counts again from now" in page.text
    vm = _vm(sessions)
    assert vm.autostop_kept_at >= now and vm.autostop_at is None
    assert "no such VM" in _post(client, "/admin/vms/keep/999/", {}).text


def test_no_countdown_or_button_without_autostop(client, sessions):
    _running_vm(sessions)
    page = client.get("/admin/vms/").text
    assert "unless used" not in page and "keep running" not in page


def test_budget_guard_switch(client, sessions):
    for form, expected in (({"stop_all": "1"}, "1"), ({}, "0")):
        token = csrf_from(client.get("/admin/vm_settings/").text)
        client.post("/admin/vm_settings/", data={"budget": "50", "interval": "60", "csrf_token": token, **form})
        with sessions() as s:
            assert get_setting(s, BUDGET_STOP_SETTING) == expected
