"""The vms collector: VM facts, status state set, sizes, prices, times, monthly costs and the
limits the alert rules use, read from a real SQLite store; no DB means no VMs, not a failure."""
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collectors.vms import GB, GIB, VmsCollector
from common.config import Settings
from admin.cloud import vm_status
from common.store import connect, init_db, session_factory
from common.store.settings import set_setting
from common.store.vms import BUDGET_SETTING, VM_STATUSES, HostingPlatform, Vm, VmTemplate
from common.sources import config_db
from exporter.exposition import Exposition
from tests.support.metrics import promtool_problems, refreshed, scrape

HOUR = 3600.0


@pytest.fixture
def settings(vm_env):
    return Settings.from_env(vm_env)


def _populate(settings, now):
    engine = connect(settings.db_path)
    init_db(engine)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        platform = HostingPlatform(name="rp", provider="runpod.io", api_key="secret-key-never-exported")
        template = VmTemplate(name="a6000", platform=platform, region="EU-RO-1", gpu="NVIDIA RTX A6000",
                              gpu_count=2, vram_gb=48, vcpus=16, ram_gb=62, compute_usd_per_hour=1.5,
                              container_usd_per_gb_month=0.10, volume_usd_per_gb_month=0.10)
        running = Vm(name="trainer", template=template, container_gb=20, volume_gb=100, instance_id="pod1",
                     created_at=now - 3 * HOUR, max_running_hours=8, terminal_url="https://console/pod1",
                     dashboard_url="https://pod1-8888.proxy.runpod.net")
        stopped = Vm(name="spare", template=template, container_gb=10, volume_gb=0, instance_id="pod2",
                     created_at=now - 2 * HOUR)
        s.add_all([running, stopped])
        vm_status.record_status(running, "running", now - 2 * HOUR)
        vm_status.record_status(stopped, "running", now - 2 * HOUR)
        vm_status.record_status(stopped, "stopped", now - HOUR)
        set_setting(s, BUDGET_SETTING, "250")
    vm_status.refresh_costs(sessions, settings, clock=lambda: now, ask_provider=False)
    engine.dispose()


def test_vm_metrics_from_the_store(settings):
    now = time.time()
    _populate(settings, now)
    result = scrape(refreshed(VmsCollector(settings)))
    assert promtool_problems(result.text) == ""
    assert result.value("wordslab_collector_success", collector="vms") == 1.0
    assert result.labels("wordslab_vm_info")[0] == {
        "vm": "spare", "provider": "runpod.io", "region": "EU-RO-1", "gpu": "NVIDIA RTX A6000",
        "terminal_url": "", "dashboard_url": ""}
    assert result.value("wordslab_vm_info", vm="trainer", dashboard_url="https://pod1-8888.proxy.runpod.net") == 1
    for status in VM_STATUSES:
        assert result.value("wordslab_vm_status", vm="trainer", status=status) == (1.0 if status == "running" else 0.0)
    assert result.value("wordslab_vm_status", vm="spare", status="stopped") == 1.0
    assert result.value("wordslab_vm_gpu_memory_bytes", vm="trainer") == 96 * GIB
    assert result.value("wordslab_vm_cpus", vm="trainer") == 16
    assert result.value("wordslab_vm_memory_bytes", vm="trainer") == 62 * GIB
    assert result.value("wordslab_vm_price_usd_per_hour", vm="trainer") == 1.5
    assert result.value("wordslab_vm_storage_bytes", vm="trainer", kind="volume") == 100 * GB
    assert result.value("wordslab_vm_storage_bytes", vm="spare", kind="container") == 10 * GB
    assert result.value("wordslab_vm_last_started_timestamp_seconds", vm="trainer") == pytest.approx(now - 2 * HOUR)
    assert result.value("wordslab_vm_last_stopped_timestamp_seconds", vm="spare") == pytest.approx(now - HOUR)
    assert result.value("wordslab_vm_last_stopped_timestamp_seconds", vm="trainer") is None
    # Compute: trainer 2 h, spare 1 h at 1.5 $/h (the month may have begun less than 3 h ago).
    compute = result.value("wordslab_vm_cost_month_usd", vm="trainer", kind="compute")
    storage = result.value("wordslab_vm_cost_month_usd", vm="trainer", kind="storage")
    assert 0 < compute <= 3.0 and storage > 0
    assert result.value("wordslab_vm_cost_month_usd", vm="trainer", kind="total") == pytest.approx(compute + storage)
    assert result.value("wordslab_vm_cost_from_provider", vm="trainer") == 0.0
    assert result.value("wordslab_vm_max_running_seconds", vm="trainer") == 8 * HOUR
    assert result.value("wordslab_vm_max_running_seconds", vm="spare") is None
    assert result.value("wordslab_cost_budget_month_usd") == 250.0
    assert result.value("wordslab_vm_provider_ok", vm="trainer") == 1.0
    assert "secret-key-never-exported" not in result.text


def test_full_month_cost_figures_are_exported_exactly(settings):
    # A VM created before this month and running all month so far: compute = hours x rate.
    now = time.time()
    _populate(settings, now)
    from common.sources.vm_costs import month_bounds
    start, end = month_bounds(now)
    engine = connect(settings.db_path)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        vm = s.query(Vm).filter_by(name="trainer").one()
        vm.intervals[0].started_at = start - 10 * HOUR
        vm.created_at = start - 20 * HOUR
    vm_status.refresh_costs(sessions, settings, clock=lambda: now, ask_provider=False)
    engine.dispose()
    result = scrape(refreshed(VmsCollector(settings)))
    elapsed = now - start
    expected_compute = elapsed / HOUR * 1.5
    expected_storage = (20 + 100) * 0.10 * elapsed / (end - start)  # running: both disks at 0.10
    assert result.value("wordslab_vm_cost_month_usd", vm="trainer", kind="compute") == pytest.approx(expected_compute)
    assert result.value("wordslab_vm_cost_month_usd", vm="trainer", kind="storage") == pytest.approx(expected_storage)


def test_no_database_means_no_vms_and_no_failure(settings):
    assert not settings.db_path.exists()
    result = scrape(refreshed(VmsCollector(settings)))
    assert result.series("wordslab_vm_info") == []
    assert result.value("wordslab_cost_budget_month_usd") is None
    assert result.value("wordslab_collector_success", collector="vms") == 1.0
    assert promtool_problems(result.text) == ""


def test_the_autostop_countdown_goes_down_while_the_db_stays_the_same(settings, monkeypatch):
    """The vms text is rendered when the DB snapshot changes, not at each scrape: a countdown
    worked out from the clock while rendering stood still in /metrics until some row changed."""
    now = time.time()
    _populate(settings, now)
    engine = connect(settings.db_path)
    with session_factory(engine).begin() as s:
        s.query(Vm).filter_by(name="trainer").one().autostop_at = now + HOUR
    engine.dispose()
    collector = refreshed(VmsCollector(settings))
    exposition = Exposition([collector])

    def countdown() -> float:
        families = text_string_to_metric_families(exposition.render().decode())
        return next(s.value for f in families for s in f.samples
                    if s.name == "wordslab_vm_autostop_seconds_remaining" and s.labels["vm"] == "trainer")

    assert countdown() == pytest.approx(HOUR, abs=60)
    monkeypatch.setattr(time, "time", lambda: now + 600)  # ten minutes on, nothing written to the DB
    monkeypatch.setattr(config_db, "FORCED_READ_SECONDS", 0.0)  # its periodic re-read is due
    collector.config.source.refresh_now()
    assert countdown() == pytest.approx(HOUR - 600, abs=1)
