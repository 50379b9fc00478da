"""Admin: platforms, templates and VMs through the Flask test client, actions against the fake
providers (create, start, stop, terminate with/without confirmation), bad input refused."""
import json

import pytest
from sqlalchemy import select

from common.store import connect, session_factory
from common.store.vms import HostingPlatform, Vm, VmInterval, VmMonthlyCost, VmTemplate
from tests.fakes.cloud_providers import API_KEY, FAKES, serve
from tests.support.admin import csrf_from, logged_in_client, make_admin_app


@pytest.fixture
def env(vm_env):
    # No polling thread: each action reads the state back itself.
    return {**vm_env, "WORDSLAB_VM_STATUS_INTERVAL_SECONDS": "0",
            "WORDSLAB_VM_PROVIDER_TIMEOUT_SECONDS": "2"}


@pytest.fixture
def client(env):
    app = make_admin_app(env, view_modules=("vms",))
    yield logged_in_client(app)
    app.extensions["wordslab_vm_refresher"].stop()


def _rows(env, model):
    engine = connect(env["WORDSLAB_DASHBOARD_DB"])
    try:
        with session_factory(engine)() as s:
            return s.scalars(select(model)).all()
    finally:
        engine.dispose()


def _post(client, url, data):
    token = csrf_from(client.get("/admin/vms/").text)
    return client.post(url, data={**data, "csrf_token": token}, follow_redirects=True)


def _platform(client, url, provider="runpod.io", **extra):
    return _post(client, "/admin/platforms/new/", {"name": "rp", "provider": provider, "api_key_var": "",
                                                   "base_url": url, "new_api_key": API_KEY, **extra})


TEMPLATE = {"name": "a6000", "region": "", "gpu": "RTX_4090", "gpu_count": "1", "vram_gb": "48",
            "vcpus": "8", "ram_gb": "50", "compute_usd_per_hour": "0.79",
            "container_usd_per_gb_month": "0.10", "volume_usd_per_gb_month": "0.10",
            "image": "wordslab/notebooks", "dashboard_port": "8888", "exporter_port": "9877"}


def _template(client, platform_id, **extra):
    return _post(client, "/admin/vm_templates/new/", {**TEMPLATE, "platform": str(platform_id), **extra})


def _vm(client, template_id, **extra):
    return _post(client, "/admin/vms/new/", {"name": "box", "template": str(template_id),
                                             "container_gb": "20", "volume_gb": "50",
                                             "max_running_hours": "", **extra})


def _action(client, vm_id, action, confirm=False):
    data = {"confirm": "1"} if confirm else {}
    return _post(client, f"/admin/vms/action/{vm_id}/{action}/", data)


def _vm_row(env) -> Vm:
    return _rows(env, Vm)[0]


@pytest.mark.parametrize("provider", list(FAKES))
def test_create_start_stop_terminate_against_the_fake_provider(client, env, provider):
    fake = FAKES[provider]()
    fake.watch_db = env["WORDSLAB_DASHBOARD_DB"]
    with serve(fake) as base_url:
        assert _platform(client, base_url, provider).status_code == 200
        platform = _rows(env, HostingPlatform)[0]
        assert platform.api_key == API_KEY
        page = client.get("/admin/platforms/").text
        assert API_KEY not in page and "••••" + API_KEY[-4:] in page
        assert API_KEY not in client.get(f"/admin/platforms/details/?id={platform.id}").text
        assert API_KEY not in client.get(f"/admin/platforms/edit/?id={platform.id}").text
        _template(client, platform.id)
        _vm(client, _rows(env, VmTemplate)[0].id)
        vm = _vm_row(env)
        assert (vm.status, vm.instance_id) == ("new", None)

        page = _action(client, vm.id, "create").text
        assert "tick the confirmation box" in page and not fake.instances
        page = _action(client, vm.id, "create", confirm=True).text
        assert f"create box: accepted by {provider}" in page
        assert len(fake.instances) == 1
        vm = _vm_row(env)
        assert vm.instance_id in {str(k) for k in fake.instances}
        assert vm.status in ("starting", "running")
        assert len(_rows(env, VmInterval)) == 1

        page = _action(client, vm.id, "stop").text
        vm = _vm_row(env)
        assert vm.status == "stopped", page
        assert vm.last_stopped_at is not None
        assert all(i.ended_at is not None for i in _rows(env, VmInterval))
        cost = _rows(env, VmMonthlyCost)[0]
        assert cost.total_usd == pytest.approx(cost.compute_usd + cost.storage_usd)

        assert "tick the confirmation box" in _action(client, vm.id, "start").text
        _action(client, vm.id, "start", confirm=True)
        assert _vm_row(env).status in ("starting", "running")
        # Tracks the instance the provider runs now (a Jarvislabs resume changes its id).
        assert _vm_row(env).instance_id in {str(k) for k in fake.instances}
        assert len(_rows(env, VmInterval)) == 2

        page = client.post(f"/admin/vms/delete/", data={"id": str(vm.id), "csrf_token": csrf_from(
            client.get("/admin/vms/").text)}, follow_redirects=True).text
        assert "terminate it first, nothing was deleted" in page
        assert len(_rows(env, Vm)) == 1

        page = _action(client, vm.id, "terminate").text
        assert "Terminate box and delete its 50 GB volume" in page
        assert len(fake.instances) == 1 and _vm_row(env).status != "terminated"
        _action(client, vm.id, "terminate", confirm=True)
        assert not fake.instances
        vm = _vm_row(env)
        assert vm.status == "terminated" and vm.terminated_at is not None
        list_page = client.get("/admin/vms/").text
        assert "terminated" in list_page and API_KEY not in list_page
        for _ in range(2):  # the status and cost refreshes, with billing
            _refresh(env)
            _refresh_costs(env)
        assert fake.requests and fake.calls_under_db_lock == []  # no provider call in a write transaction


def test_provider_failure_is_shown_and_changes_nothing(client, env):
    fake = FAKES["vast.ai"]()
    with serve(fake) as base_url:
        _platform(client, base_url, "vast.ai")
        _template(client, _rows(env, HostingPlatform)[0].id)
        _vm(client, _rows(env, VmTemplate)[0].id)
        vm = _vm_row(env)
        fake.fail = "500"
        page = _action(client, vm.id, "create", confirm=True).text
        assert "create box failed: vast.ai PUT" in page or "create box failed: vast.ai POST" in page
        vm = _vm_row(env)
        assert vm.instance_id is None and vm.status == "new" and "HTTP 500" in vm.last_error
        assert "HTTP 500" in client.get("/admin/vms/").text


@pytest.mark.parametrize("field, value, message", [
    ("provider", "aws", "unknown provider &#39;aws&#39;"),
    ("base_url", "ftp://example.org", "must be an http:// or https:// URL"),
    ("base_url", "https://user:secret@example.org", "must not carry credentials"),
    ("name", "../evil", "use letters, digits"),
    ("api_key_var", "BAD VAR;rm", "is not a variable name"),
])
def test_bad_platform_input_is_refused(client, env, field, value, message):
    page = _platform(client, "http://127.0.0.1:9", **{field: value}).text
    assert message in page
    assert _rows(env, HostingPlatform) == []


def test_duplicates_and_absurd_sizes_are_refused(client, env):
    _platform(client, "http://127.0.0.1:9")
    assert "Already exists." in _platform(client, "http://127.0.0.1:9").text
    platform_id = _rows(env, HostingPlatform)[0].id
    for field, value, message in (("vram_gb", "-1", "VRAM GB must be between 0 and 2048"),
                                  ("compute_usd_per_hour", "5000", "compute $/hour must be between 0 and 500"),
                                  ("volume_usd_per_gb_month", "-0.1", "volume storage $/GB-month must be between"),
                                  ("gpu", "A100; rm -rf /", "without quotes or shell characters")):
        page = _template(client, platform_id, **{field: value}).text
        assert message in page, field
    assert _rows(env, VmTemplate) == []
    _template(client, platform_id)
    template_id = _rows(env, VmTemplate)[0].id
    assert "must be between 0 and 100000" in _vm(client, template_id, volume_gb="-5").text
    assert "must be between 1 and 10000" in _vm(client, template_id, container_gb="1000000").text
    _vm(client, template_id)
    assert "Already exists." in _vm(client, template_id).text
    assert len(_rows(env, Vm)) == 1


def test_actions_need_csrf_and_login(env):
    app = make_admin_app(env, view_modules=("vms",))
    try:
        anonymous = app.test_client()
        assert anonymous.get("/admin/vms/").status_code == 302
        client = logged_in_client(app)
        assert client.post("/admin/vms/action/1/terminate/", data={"confirm": "1"}).status_code == 400
    finally:
        app.extensions["wordslab_vm_refresher"].stop()


def test_budget_and_interval_settings(client, env):
    from common.store.settings import Setting
    vm_keys = ("vm_cost_budget_month_usd", "vm_status_interval_seconds")

    def saved() -> dict[str, str]:
        return {s.key: s.value for s in _rows(env, Setting) if s.key in vm_keys}

    page = _post(client, "/admin/vm_settings/", {"budget": "-3", "interval": "60"}).text
    assert "monthly budget must be between 0 and 1,000,000 USD" in page
    page = _post(client, "/admin/vm_settings/", {"budget": "120.5", "interval": "5"}).text
    assert "status interval must be between 10 and 86400 seconds" in page
    assert saved() == {}  # refused input saves nothing, not even its valid half
    _post(client, "/admin/vm_settings/", {"budget": "120.5", "interval": "90"})
    assert saved() == {"vm_cost_budget_month_usd": "120.5", "vm_status_interval_seconds": "90"}
    form = client.get("/admin/vm_settings/").text  # read back from the store
    assert 'name="budget" type="number" min="0" step="any" value="120.5"' in form
    assert 'step="any" value="90"' in form


def test_running_dashboard_vm_becomes_a_prometheus_target(client, env):
    fake = FAKES["vast.ai"]()
    with serve(fake) as base_url:
        _platform(client, base_url, "vast.ai")
        _template(client, _rows(env, HostingPlatform)[0].id, runs_dashboard="y")
        _vm(client, _rows(env, VmTemplate)[0].id)
        vm = _vm_row(env)
        _action(client, vm.id, "create", confirm=True)
        inst = next(iter(fake.instances.values()))
        inst["ports"] = {"9877/tcp": [{"HostIp": "0.0.0.0", "HostPort": "41977"}]}
        from common.config import Settings
        from admin.file_sd import targets_dir
        from admin.cloud.vm_status import refresh_statuses
        connect_engine = connect(env["WORDSLAB_DASHBOARD_DB"])
        settings = Settings.from_env(env)
        for _ in range(2):  # loading -> running
            refresh_statuses(session_factory(connect_engine), settings)
        target_file = targets_dir(settings) / "vm-box.json"
        assert json.loads(target_file.read_text()) == [
            {"targets": ["127.0.0.1:41977"], "labels": {"vm": "box", "__scheme__": "http"}}]
        _action(client, vm.id, "stop")
        assert not target_file.exists()
        connect_engine.dispose()


def _refresh(env, at: float | None = None) -> None:
    """One status refresh, as the admin's background thread does it (optionally at a given time)."""
    from common.config import Settings
    from admin.cloud.vm_status import refresh_statuses
    engine = connect(env["WORDSLAB_DASHBOARD_DB"])
    try:
        clock = (lambda: at) if at is not None else __import__("time").time
        refresh_statuses(session_factory(engine), Settings.from_env(env), clock)
    finally:
        engine.dispose()


def _refresh_costs(env) -> None:
    from common.config import Settings
    from admin.cloud.vm_status import refresh_costs
    engine = connect(env["WORDSLAB_DASHBOARD_DB"])
    try:
        refresh_costs(session_factory(engine), Settings.from_env(env))
    finally:
        engine.dispose()


def _delete(client, vm_id):
    return client.post("/admin/vms/delete/", data={"id": str(vm_id), "csrf_token": csrf_from(
        client.get("/admin/vms/").text)}, follow_redirects=True).text


def _created_vm(client, env, provider):
    fake = FAKES[provider]()
    stack = serve(fake)
    base_url = stack.__enter__()
    _platform(client, base_url, provider)
    _template(client, _rows(env, HostingPlatform)[0].id)
    _vm(client, _rows(env, VmTemplate)[0].id)
    return fake, stack, _vm_row(env)


@pytest.mark.parametrize("provider", list(FAKES))
def test_one_answer_that_leaves_a_live_instance_out_never_loses_the_vm(client, env, provider):
    fake, stack, vm = _created_vm(client, env, provider)
    try:
        _action(client, vm.id, "create", confirm=True)
        vm = _vm_row(env)
        fake.hidden = {vm.instance_id}  # the provider lies once
        _refresh(env)
        vm = _vm_row(env)
        assert vm.status == "missing" and vm.terminated_at is None
        assert "it may still bill" in vm.last_error
        page = client.get("/admin/vms/").text
        assert 'data-action="stop"' in page and 'data-action="terminate"' in page
        assert "may still exist" in _delete(client, vm.id) and len(_rows(env, Vm)) == 1
        assert [i.ended_at for i in _rows(env, VmInterval)] == [None]  # still counted as billing
        fake.hidden = set()
        _refresh(env)
        vm = _vm_row(env)
        assert vm.status == "running" and vm.missing_answers == 0 and vm.last_error == ""
        assert len(_rows(env, VmInterval)) == 1  # the same interval, never closed
    finally:
        stack.__exit__(None, None, None)


def test_an_instance_left_out_long_enough_is_gone_and_shown_so(client, env):
    from common.store.vms import MISSING_ANSWERS, MISSING_MIN_SECONDS
    fake, stack, vm = _created_vm(client, env, "runpod.io")
    try:
        _action(client, vm.id, "create", confirm=True)
        fake.hidden = {_vm_row(env).instance_id}
        t0 = 2_000_000_000.0
        for i in range(MISSING_ANSWERS + 2):  # enough answers, but all within the minimum time
            _refresh(env, t0 + i)
        assert _vm_row(env).status == "missing"
        assert "may still exist" in _delete(client, vm.id)
        _refresh(env, t0 + MISSING_MIN_SECONDS)
        vm = _vm_row(env)
        assert vm.status == "gone" and vm.terminated_at == t0 + MISSING_MIN_SECONDS
        assert "presumed terminated" in vm.last_error
        assert all(i.ended_at is not None for i in _rows(env, VmInterval))
        page = client.get("/admin/vms/").text
        assert ">gone<" in page and "presumed terminated" in page
        assert 'data-action="terminate"' in page  # still offered, in case the rule was wrong
        fake.fail = "500"  # a provider outage does not make a gone VM undeletable again
        _refresh(env, t0 + MISSING_MIN_SECONDS + 30)
        assert _vm_row(env).status == "gone" and "presumed terminated" in _vm_row(env).last_error
        fake.fail = None
        fake.hidden = set()  # the rule was wrong after all: it is listed again, and bills again
        _refresh(env, t0 + MISSING_MIN_SECONDS + 60)
        vm = _vm_row(env)
        assert vm.status == "running" and vm.terminated_at is None
        assert [i.ended_at is None for i in _rows(env, VmInterval)] == [False, True]
        fake.instances.clear()  # terminated at the provider for real
        for i in range(MISSING_ANSWERS):
            _refresh(env, t0 + 2 * MISSING_MIN_SECONDS + i * MISSING_MIN_SECONDS)
        assert _vm_row(env).status == "gone"
        assert "may still exist" not in _delete(client, vm.id) and _rows(env, Vm) == []
    finally:
        stack.__exit__(None, None, None)


def test_a_create_the_provider_accepted_but_that_could_not_be_recorded_is_adopted(client, env, monkeypatch):
    from admin.ops import vm_ops

    def fail(vm):
        raise RuntimeError("disk full")
    monkeypatch.setattr(vm_ops, "before_create_recorded", fail)
    fake, stack, vm = _created_vm(client, env, "vast.ai")
    try:
        page = _action(client, vm.id, "create", confirm=True).text
        (instance_id,) = fake.instances
        assert f"accepted by vast.ai (instance {instance_id}) but not recorded yet" in page
        vm = _vm_row(env)
        assert (vm.status, vm.instance_id) == ("creating", None) and vm.create_requested_at
        page = client.get("/admin/vms/").text
        assert ">creating<" in page
        assert "may still exist" in _delete(client, vm.id)
        _refresh(env)
        vm = _vm_row(env)
        assert (vm.status, vm.instance_id) in {("starting", instance_id), ("running", instance_id)}
        assert vm.created_at is not None and vm.create_requested_at is None
        assert len(_rows(env, VmInterval)) == 1
    finally:
        stack.__exit__(None, None, None)


@pytest.mark.parametrize("provider", list(FAKES))
def test_a_create_whose_answer_was_lost_shows_as_creating_and_is_adopted(client, env, provider):
    fake, stack, vm = _created_vm(client, env, provider)
    try:
        fake.lose_create_answer = 502  # the provider rents it, the answer never arrives intact
        page = _action(client, vm.id, "create", confirm=True).text
        assert f"create box: {provider} may have created it" in page
        assert len(fake.instances) == 1
        assert _vm_row(env).status == "creating"
        assert "may have rented it" in _vm_row(env).last_error and "HTTP 502" in _vm_row(env).last_error
        assert 'data-action="create"' not in client.get("/admin/vms/").text  # no second rent
        _refresh(env)
        vm = _vm_row(env)
        assert vm.instance_id == next(iter(fake.instances)) and vm.status in ("starting", "running")
    finally:
        stack.__exit__(None, None, None)


def test_a_create_that_never_appears_goes_back_to_new_under_the_rule(client, env):
    from common.store.vms import MISSING_ANSWERS, MISSING_MIN_SECONDS
    fake, stack, vm = _created_vm(client, env, "runpod.io")
    try:
        fake.lose_create_answer = 502
        _action(client, vm.id, "create", confirm=True)
        fake.instances.clear()  # it never existed after all
        t0 = 2_000_000_000.0
        _refresh(env, t0)
        vm = _vm_row(env)
        assert vm.status == "creating" and "waiting for runpod.io to list an instance named box" in vm.last_error
        page = client.get("/admin/vms/").text
        assert 'data-action="create"' not in page  # no second rent while the first may exist
        for i in range(1, MISSING_ANSWERS - 1):
            _refresh(env, t0 + i)
        _refresh(env, t0 + MISSING_MIN_SECONDS)
        vm = _vm_row(env)
        assert vm.status == "new" and "nothing was rented" in vm.last_error
        assert 'data-action="create"' in client.get("/admin/vms/").text
    finally:
        stack.__exit__(None, None, None)


def test_a_refused_create_changes_nothing_and_can_be_retried(client, env):
    fake, stack, vm = _created_vm(client, env, "jarvislabs.ai")
    try:
        fake.fail = "401"
        page = _action(client, vm.id, "create", confirm=True).text
        assert "create box failed: jarvislabs.ai POST" in page and "API key refused" in page
        vm = _vm_row(env)
        assert (vm.status, vm.instance_id) == ("new", None) and not fake.instances
        fake.fail = None
        _action(client, vm.id, "create", confirm=True)
        assert len(fake.instances) == 1
    finally:
        stack.__exit__(None, None, None)


def test_refreshing_several_platforms_never_calls_a_provider_inside_a_write_transaction(client, env):
    fakes = [FAKES["runpod.io"](), FAKES["vast.ai"]()]
    with serve(fakes[0]) as url_a, serve(fakes[1]) as url_b:
        _platform(client, url_a, "runpod.io")
        _platform(client, url_b, "vast.ai", name="vast")
        for platform in _rows(env, HostingPlatform):
            _template(client, platform.id, name=f"t-{platform.name}")
        for template in _rows(env, VmTemplate):
            _vm(client, template.id, name=f"vm-{template.name}")
        for vm in _rows(env, Vm):
            _action(client, vm.id, "create", confirm=True)
        assert all(vm.instance_id for vm in _rows(env, Vm))
        for fake in fakes:
            fake.watch_db = env["WORDSLAB_DASHBOARD_DB"]
            fake.requests.clear()
        for _ in range(2):
            _refresh(env)
            _refresh_costs(env)
        for vm in _rows(env, Vm):
            _action(client, vm.id, "stop")
        assert all(fake.requests for fake in fakes)
        assert [fake.calls_under_db_lock for fake in fakes] == [[], []]


def test_a_refresh_leaves_rows_changed_or_deleted_during_its_provider_call_alone(client, env):
    fake, stack, vm = _created_vm(client, env, "runpod.io")
    try:
        _vm(client, _rows(env, VmTemplate)[0].id, name="other")
        for row in _rows(env, Vm):
            _action(client, row.id, "create", confirm=True)
        box, other = sorted(_rows(env, Vm), key=lambda v: v.name)
        engine = connect(env["WORDSLAB_DASHBOARD_DB"])

        def meanwhile(method, path):
            # While the refresh waits for the list: an action records box stopped, other goes away.
            fake.on_call = None
            with session_factory(engine).begin() as s:
                s.get(Vm, box.id).status = "stopped"
                s.delete(s.get(Vm, other.id))
        fake.on_call = meanwhile
        try:
            _refresh(env)
        finally:
            engine.dispose()
        rows = _rows(env, Vm)
        assert [(v.name, v.status) for v in rows] == [("box", "stopped")]
    finally:
        stack.__exit__(None, None, None)


def test_an_instance_resumed_under_a_new_id_behind_our_back_is_followed_by_name(client, env):
    fake, stack, vm = _created_vm(client, env, "jarvislabs.ai")
    try:
        _action(client, vm.id, "create", confirm=True)
        old_id = _vm_row(env).instance_id
        # Resumed from the provider's console: the same machine, a new id (as Jarvislabs does).
        inst = fake.instances.pop(old_id)
        inst["machine_id"] = 77
        fake.instances["77"] = inst
        _refresh(env)
        vm = _vm_row(env)
        assert (vm.instance_id, vm.status, vm.missing_answers) == ("77", "running", 0)
    finally:
        stack.__exit__(None, None, None)


def test_a_delete_rechecks_the_row_under_the_write_lock(client, env, monkeypatch):
    from admin.views.vms import VmView
    _platform(client, "http://127.0.0.1:9")
    _template(client, _rows(env, HostingPlatform)[0].id)
    _vm(client, _rows(env, VmTemplate)[0].id)
    vm = _vm_row(env)
    token = csrf_from(client.get("/admin/vms/").text)
    get_one = VmView.get_one

    def loaded_then_claimed(self, id):
        model = get_one(self, id)  # read as "new"...
        engine = connect(env["WORDSLAB_DASHBOARD_DB"])
        with session_factory(engine).begin() as s:  # ...then a create claims it
            s.get(Vm, vm.id).status = "creating"
        engine.dispose()
        return model
    monkeypatch.setattr(VmView, "get_one", loaded_then_claimed)
    page = client.post("/admin/vms/delete/", data={"id": str(vm.id), "csrf_token": token},
                       follow_redirects=True).text
    assert "may still exist" in page and len(_rows(env, Vm)) == 1


def test_an_edit_rechecks_the_row_under_the_write_lock(client, env, monkeypatch):
    from admin.views.vms import VmView
    _platform(client, "http://127.0.0.1:9")
    _template(client, _rows(env, HostingPlatform)[0].id)
    template_id = _rows(env, VmTemplate)[0].id
    _vm(client, template_id)
    vm = _vm_row(env)
    token = csrf_from(client.get("/admin/vms/").text)
    get_one = VmView.get_one

    def loaded_then_claimed(self, id):
        model = get_one(self, id)
        engine = connect(env["WORDSLAB_DASHBOARD_DB"])
        with session_factory(engine).begin() as s:
            s.get(Vm, vm.id).status = "creating"
        engine.dispose()
        return model
    monkeypatch.setattr(VmView, "get_one", loaded_then_claimed)
    page = client.post(f"/admin/vms/edit/?id={vm.id}", data={
        "name": "renamed", "template": str(template_id), "container_gb": "20", "volume_gb": "50",
        "max_running_hours": "", "csrf_token": token}, follow_redirects=True).text
    assert "exists at the provider: its name cannot change" in page
    assert [(v.name, v.status) for v in _rows(env, Vm)] == [("box", "creating")]
    monkeypatch.setattr(VmView, "get_one", get_one)
    page = client.post(f"/admin/vms/edit/?id={vm.id}", data={  # a limit may change at any time
        "name": "box", "template": str(template_id), "container_gb": "20", "volume_gb": "50",
        "max_running_hours": "3", "csrf_token": token}, follow_redirects=True).text
    assert _vm_row(env).max_running_hours == 3
