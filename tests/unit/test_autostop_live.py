"""Autostop and the budget guard against what they read and call over HTTP: a Prometheus on
loopback answering what a test sets (per-GPU series, NaN), a fake Vast.ai, a real SQLite file.

A decision is taken on what was read, then the stop goes to the provider: what the user does in
between ("keep running", turning autostop or the budget guard off) calls the stop off. A busy GPU
whose series stops while an idle one goes on, or NaN readings, are "don't know", never idle.
"""
from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from admin.cloud.autostop import check, keep_running
from admin.cloud.budget_guard import check_budget
from common.config import Settings
from common.store import connect, session_factory
from common.store.db import init_db
from common.store.alerts import BUDGET_STOP_SETTING
from common.store.settings import set_setting
from common.store.vms import BUDGET_SETTING, HostingPlatform, Vm, VmTemplate
from tests.fakes.cloud_providers import FakeVast
from tests.fakes.loopback import send_json, serving

W = 300.0  # the idle window: 5 minutes


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


class FakePrometheus:
    """/api/v1/query: a range vector of `series` (lists of (t, value-string) relative to the
    query's time), or an instant vector of `spend`; `during(expr)` runs before answering."""

    def __init__(self):
        self.series: list[list[tuple[float, str]]] = []
        self.spend: str | None = None
        self.during = None
        self.raw: tuple[int, str] | None = None  # (status, body) answered as it is

    def handler(self):
        fake = self

        class Handler(_Quiet):
            def do_GET(self):
                q = parse_qs(urlsplit(self.path).query)
                expr, now = q["query"][0], float(q["time"][0])
                if fake.during is not None:
                    fake.during(expr)
                if fake.raw is not None:
                    return send_json(self, fake.raw[0], fake.raw[1])
                if expr.startswith("wordslab_gpu_utilization_ratio"):
                    result = [{"metric": {"gpu": str(i)}, "values": [[now + t, v] for t, v in s]}
                              for i, s in enumerate(fake.series)]
                    body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
                else:
                    result = [] if fake.spend is None else [{"metric": {}, "value": [now, fake.spend]}]
                    body = {"status": "success", "data": {"resultType": "vector", "result": result}}
                send_json(self, 200, body)

        return Handler


def every_5s(value: str, since: float = -W, until: float = 0.0) -> list[tuple[float, str]]:
    return [(t, value) for t in range(int(since), int(until) + 1, 5)]


class AlertmanagerApi:
    """Alertmanager's POST /api/v2/alerts at its HTTP boundary: records what the admin posts."""

    def __init__(self):
        self.alerts: list[dict] = []

    def handler(self):
        api = self

        class Handler(_Quiet):
            def do_POST(self):
                api.alerts += json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                send_json(self, 200, None)

        return Handler


@pytest.fixture
def world(vm_env):
    prom, fake, am = FakePrometheus(), FakeVast(), AlertmanagerApi()
    with serving(prom.handler()) as prom_url, serving(fake.handler()) as provider_url, \
            serving(am.handler()) as am_url:
        env = {**vm_env, "WORDSLAB_PROMETHEUS_URL": prom_url, "WORDSLAB_ALERTMANAGER_URL": am_url,
               "WORDSLAB_VM_PROVIDER_TIMEOUT_SECONDS": "5"}
        settings = Settings.from_env(env)
        engine = connect(env["WORDSLAB_DASHBOARD_DB"])
        init_db(engine)
        sessions = session_factory(engine)
        fake.instances["1"] = {"id": 1, "label": "box", "actual_status": "running", "intended_status": "running",
                               "public_ipaddr": "127.0.0.1", "disk_space": 20, "ports": {}}
        with sessions.begin() as s:
            platform = HostingPlatform(name="vast", provider="vast.ai", api_key=fake.api_key, base_url=provider_url)
            template = VmTemplate(name="t", platform=platform, gpu="H100", compute_usd_per_hour=2.0)
            s.add(Vm(name="box", template=template, instance_id="1", status="running",
                     last_started_at=time.time() - 2 * W, autostop_idle_minutes=5, autostop_gpu_percent=10))
        fake.alertmanager = am
        yield settings, sessions, prom, fake
        engine.dispose()


def _vm(sessions) -> Vm:
    with sessions() as s:
        return s.scalar(select(Vm))


def _stopped(fake) -> bool:
    return fake.instances["1"]["intended_status"] == "stopped"


def test_idle_vm_is_stopped(world):
    settings, sessions, prom, fake = world
    prom.series = [every_5s("0.01"), every_5s("0")]
    assert check(sessions, settings) == ["box"]
    assert _stopped(fake) and _vm(sessions).status == "stopped"


def test_keep_running_pressed_while_the_decision_is_taken_calls_the_stop_off(world):
    settings, sessions, prom, fake = world
    prom.series = [every_5s("0")]
    prom.during = lambda expr: keep_running(sessions, _vm(sessions).id, time.time())
    assert check(sessions, settings) == []
    assert not _stopped(fake) and _vm(sessions).status == "running"
    assert "kept running" in _vm(sessions).autostop_note


def test_autostop_turned_off_while_the_decision_is_taken_calls_the_stop_off(world):
    settings, sessions, prom, fake = world
    prom.series = [every_5s("0")]

    def turn_off(expr):
        with sessions.begin() as s:
            s.scalar(select(Vm)).autostop_idle_minutes = None

    prom.during = turn_off
    assert check(sessions, settings) == []
    assert not _stopped(fake) and _vm(sessions).status == "running"


def test_a_busy_gpu_whose_series_stops_is_not_idle(world):
    """GPU 1 worked at 90 % until its reading failed 2 minutes ago; GPU 0 idles on: don't know."""
    settings, sessions, prom, fake = world
    prom.series = [every_5s("0"), every_5s("0.9", until=-W - 10) + every_5s("0", since=-W, until=-W + 20)]
    assert check(sessions, settings) == []
    assert not _stopped(fake)
    assert "of one GPU" in _vm(sessions).autostop_note


@pytest.mark.parametrize("value", ["NaN", "+Inf"])
def test_gpu_readings_that_are_not_numbers_are_no_data(world, value):
    settings, sessions, prom, fake = world
    prom.series = [every_5s(value)]
    assert check(sessions, settings) == []
    assert not _stopped(fake) and "no GPU data" in _vm(sessions).autostop_note


def _budget(sessions, budget="10", stop_all="1"):
    with sessions.begin() as s:
        set_setting(s, BUDGET_SETTING, budget)
        set_setting(s, BUDGET_STOP_SETTING, stop_all)


@pytest.mark.parametrize("spend", ["NaN", "+Inf", None])
def test_budget_guard_does_not_stop_on_a_spend_that_is_not_a_number(world, spend):
    settings, sessions, prom, fake = world
    _budget(sessions)
    prom.spend = spend
    assert check_budget(sessions, settings) == []
    assert not _stopped(fake)


def test_budget_guard_stops_over_budget_unless_turned_off_meanwhile(world):
    settings, sessions, prom, fake = world
    _budget(sessions)
    prom.spend = "12.5"
    prom.during = lambda expr: _budget(sessions, stop_all="0")
    assert check_budget(sessions, settings) == []
    assert not _stopped(fake)
    prom.during = None
    _budget(sessions)
    assert check_budget(sessions, settings) == ["box"]
    assert _stopped(fake)


@pytest.mark.parametrize("status, body", [
    (200, "[]"),
    (200, '{"status": "success"}'),
    (200, '{"status": "success", "data": {"result": [{"values": [["soon", "idle"]]}]}}'),
    (200, '{"status": "success", "data": {"result": {"values": []}}}'),
    (500, "<html>proxy error</html>"),
    (200, "x" * 3_000_000),
])
def test_prometheus_answering_garbage_never_stops_for_idleness_but_the_hours_limit_still_applies(
        world, status, body):
    settings, sessions, prom, fake = world
    prom.raw = (status, body)
    assert check(sessions, settings) == []
    assert not _stopped(fake)
    assert "idle check not possible" in _vm(sessions).autostop_note
    with sessions.begin() as s:
        s.scalar(select(Vm)).autostop_after_hours = 0.1  # 6 min: it has run 10
    assert check(sessions, settings) == ["box"]
    assert _stopped(fake)


@pytest.mark.parametrize("status", ["missing", "starting"])
def test_a_vm_the_provider_may_still_bill_runs_into_its_limits(world, status):
    """Left out of the provider's list answers (missing) or stuck booting: still billed, still stopped
    at its running-hours limit, and by the budget guard."""
    settings, sessions, prom, fake = world
    with sessions.begin() as s:
        vm = s.scalar(select(Vm))
        vm.status, vm.autostop_idle_minutes, vm.autostop_after_hours = status, None, 0.1
    assert check(sessions, settings) == ["box"]
    assert _stopped(fake) and _vm(sessions).status == "stopped"


def test_budget_guard_stops_a_missing_vm(world):
    settings, sessions, prom, fake = world
    with sessions.begin() as s:
        s.scalar(select(Vm)).status = "missing"
    _budget(sessions)
    prom.spend = "12.5"
    assert check_budget(sessions, settings) == ["box"]
    assert _stopped(fake)


def test_a_stop_button_pressed_while_autostop_stops_makes_no_second_provider_call(world):
    """A slow provider: while autostop's stop call is in flight, the user's stop (or terminate)
    is refused with a clear message instead of reaching the provider a second time."""
    import threading

    from admin.ops.vm_ops import VmActionError, run_action

    settings, sessions, prom, fake = world
    prom.series = [every_5s("0")]
    fake.delay_seconds = 2.0
    done = threading.Thread(target=check, args=(sessions, settings))
    done.start()
    deadline = time.monotonic() + 10
    while not fake.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # autostop's stop call waits at the provider now
    with pytest.raises(VmActionError, match="already in progress"):
        run_action(sessions, settings, _vm(sessions).id, "stop", True)
    done.join(15)
    assert sum(1 for m, path, _ in fake.requests if m == "PUT") == 1
    assert _stopped(fake) and _vm(sessions).status == "stopped"


def test_a_stop_the_provider_refuses_is_notified_not_only_noted(world):
    """The VM still bills: the receivers hear that autostop failed, without the provider's key."""
    settings, sessions, prom, fake = world
    prom.series = [every_5s("0")]
    fake.fail = "echo_key"
    assert check(sessions, settings) == []
    assert "autostop could not stop it" in _vm(sessions).autostop_note
    failed = [a for a in fake.alertmanager.alerts if a["labels"]["alertname"] == "WordslabVmAutostopFailed"]
    assert failed and failed[0]["labels"]["vm"] == "box"
    text = failed[0]["annotations"]["description"]
    assert "stop failed" in text and "$2.00/h" in text and fake.api_key not in json.dumps(fake.alertmanager.alerts)
    fake.fail = None
    assert check(sessions, settings) == ["box"]
    assert any(a["labels"]["alertname"] == "WordslabVmAutostopped" for a in fake.alertmanager.alerts)


@pytest.mark.parametrize("interval_open, stopped", [(True, True), (False, False)])
def test_a_failed_status_read_does_not_suspend_autostop(world, interval_open, stopped):
    """'unknown' after the provider's API failed a status read: last seen running (its billed
    interval open), it still runs into its limits; last seen stopped, it is left alone."""
    from common.store.vms import VmInterval

    settings, sessions, prom, fake = world
    with sessions.begin() as s:
        vm = s.scalar(select(Vm))
        vm.intervals.append(VmInterval(started_at=vm.last_started_at,
                                       ended_at=None if interval_open else vm.last_started_at + 60))
        vm.status, vm.autostop_idle_minutes, vm.autostop_after_hours = "unknown", None, 0.1
    assert check(sessions, settings) == (["box"] if stopped else [])
    assert _stopped(fake) is stopped
