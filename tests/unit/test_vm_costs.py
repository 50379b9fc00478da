"""VM cost arithmetic: exact figures across month boundaries, stop/start cycles, storage while
stopped (per provider), share of the month, restarts (intervals kept in SQLite), reconciliation."""
from datetime import datetime, timezone

import pytest

from common.sources import vm_costs
from admin.cloud import vm_status
from admin.cloud.providers import CLIENTS, BilledCost
from common.sources.vm_costs import MonthCost, Rates, month_bounds, month_cost, reconcile
from common.store import connect, init_db, session_factory
from common.store.vms import HostingPlatform, Vm, VmInterval, VmTemplate


def ts(*args) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


MARCH = month_bounds(ts(2026, 3, 15))
FEB = month_bounds(ts(2026, 2, 15))
HOUR = 3600.0
DAY = 86400.0


def rates(provider="runpod.io", per_hour=0.0, container_gb=0.0, container_rate=0.0, volume_gb=0.0,
          volume_rate=0.0) -> Rates:
    return Rates(CLIENTS[provider].storage_rule, per_hour, container_gb, container_rate, volume_gb, volume_rate)


def test_month_bounds_follow_the_calendar_in_utc():
    assert MARCH == (ts(2026, 3, 1), ts(2026, 4, 1))
    assert MARCH[1] - MARCH[0] == 31 * DAY
    assert FEB[1] - FEB[0] == 28 * DAY
    assert month_bounds(ts(2026, 12, 31, 23, 59)) == (ts(2026, 12, 1), ts(2027, 1, 1))
    assert vm_costs.month_key(ts(2026, 12, 31, 23, 59)) == "2026-12"


def test_compute_interval_across_a_month_boundary_is_split_exactly():
    r = rates(per_hour=1.5)
    interval = [(ts(2026, 2, 28, 22), ts(2026, 3, 1, 2))]  # 4 h, 2 in each month
    feb = month_cost(r, interval, None, None, *FEB, now=ts(2026, 3, 20))
    march = month_cost(r, interval, None, None, *MARCH, now=ts(2026, 3, 20))
    assert feb.compute_usd == pytest.approx(3.0)
    assert march.compute_usd == pytest.approx(3.0)


def test_stop_start_cycles_and_an_open_interval_running_until_now():
    start = ts(2026, 3, 2)
    intervals = [(start, start + HOUR), (start + 2 * HOUR, start + 2.5 * HOUR), (start + 3 * HOUR, None)]
    cost = month_cost(rates(per_hour=2.0), intervals, start, None, *MARCH, now=start + 3.5 * HOUR)
    assert cost.compute_usd == pytest.approx(2 * 2.0)  # 1 h + 0.5 h + 0.5 h so far
    assert cost.total_usd == pytest.approx(cost.compute_usd)


def test_runpod_container_disk_only_while_running_volume_double_while_stopped():
    # 10 days into March, ran 2 days: container billed 2/31 of a month, volume 2/31 + 2 x 8/31.
    created, now = ts(2026, 3, 1), ts(2026, 3, 11)
    r = rates("runpod.io", per_hour=1.0, container_gb=50, container_rate=0.10, volume_gb=100, volume_rate=0.10)
    cost = month_cost(r, [(created, created + 2 * DAY)], created, None, *MARCH, now=now)
    assert cost.compute_usd == pytest.approx(48.0)
    assert cost.storage_usd == pytest.approx(50 * 0.10 * 2 / 31 + 100 * 0.10 * 18 / 31)  # 190/31
    assert cost.storage_usd == pytest.approx(190 / 31)
    assert cost.total_usd == pytest.approx(48 + 190 / 31)


def test_vast_disk_billed_for_the_share_of_the_month_it_existed():
    created, now = ts(2026, 3, 1), ts(2026, 3, 11)
    r = rates("vast.ai", per_hour=0.4, container_gb=50, container_rate=0.10)
    cost = month_cost(r, [(created, created + 2 * DAY)], created, None, *MARCH, now=now)
    assert cost.storage_usd == pytest.approx(50 * 0.10 * 10 / 31)
    assert cost.compute_usd == pytest.approx(0.4 * 48)


def test_storage_stops_at_termination_and_starts_at_creation():
    r = rates("jarvislabs.ai", volume_gb=200, volume_rate=0.30)
    terminated = month_cost(r, [], ts(2026, 3, 1), ts(2026, 3, 16), *MARCH, now=ts(2026, 3, 31))
    assert terminated.storage_usd == pytest.approx(200 * 0.30 * 15 / 31)
    # Created in February: March only counts from March 1st.
    older = month_cost(r, [], ts(2026, 2, 20), None, *MARCH, now=ts(2026, 3, 3))
    assert older.storage_usd == pytest.approx(200 * 0.30 * 2 / 31)
    # A whole month of existence is exactly GB x rate.
    whole = month_cost(r, [], ts(2026, 1, 1), None, *FEB, now=ts(2026, 3, 3))
    assert whole.storage_usd == pytest.approx(200 * 0.30)


def test_reconcile_prefers_the_providers_figures():
    estimate = MonthCost(10.0, 2.0, 12.0)
    split = reconcile(estimate, BilledCost(11.5, compute_usd=9.0, storage_usd=2.5))
    assert split == MonthCost(9.0, 2.5, 11.5, "provider")
    total_only = reconcile(estimate, BilledCost(13.0))
    assert total_only == MonthCost(11.0, 2.0, 13.0, "provider")
    tiny_total = reconcile(estimate, BilledCost(1.5))
    assert tiny_total == MonthCost(0.0, 1.5, 1.5, "provider")
    assert reconcile(estimate, None) is estimate


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "dashboard.db"


def _sessions(db_path):
    engine = connect(db_path)
    init_db(engine)
    return engine, session_factory(engine)


def test_running_intervals_survive_an_admin_restart(db_path):
    engine, sessions = _sessions(db_path)
    with sessions.begin() as s:
        platform = HostingPlatform(name="rp", provider="runpod.io")
        template = VmTemplate(name="a6000", platform=platform, gpu="NVIDIA RTX A6000",
                              compute_usd_per_hour=0.8, container_usd_per_gb_month=0.10)
        vm = Vm(name="box", template=template, container_gb=20, volume_gb=0, instance_id="pod1",
                created_at=ts(2026, 3, 1))
        s.add(vm)
        vm_status.record_status(vm, "running", ts(2026, 3, 1, 8))
        vm_status.record_status(vm, "running", ts(2026, 3, 1, 9))  # still running: no new interval
    engine.dispose()  # the admin stops while the VM runs

    engine, sessions = _sessions(db_path)
    with sessions.begin() as s:
        vm = s.query(Vm).one()
        vm_status.record_status(vm, "stopped", ts(2026, 3, 1, 18))
        vm_status.record_status(vm, "starting", ts(2026, 3, 2, 8))
        vm_status.record_status(vm, "stopped", ts(2026, 3, 2, 10))
        cost = vm_status.estimate_month(vm, ts(2026, 3, 3))
        rows = [(i.started_at, i.ended_at) for i in s.query(VmInterval).order_by(VmInterval.started_at)]
    engine.dispose()
    assert rows == [(ts(2026, 3, 1, 8), ts(2026, 3, 1, 18)), (ts(2026, 3, 2, 8), ts(2026, 3, 2, 10))]
    assert cost.compute_usd == pytest.approx(12 * 0.8)
    # Runpod bills the container disk only while running: 12 h of March's 744.
    assert cost.storage_usd == pytest.approx(20 * 0.10 * 12 / 744)
