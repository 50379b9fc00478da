"""The exporter's one DB read path: a background snapshot over one long-lived read-only engine.

Real SQLite files written by the admin's own store code; a real second process holds the lock.
"""
import os
import time
from contextlib import contextmanager

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

from admin.cloud import vm_status
from common.config import Settings
from common.sources import config_db
from common.store import connect, init_db, session_factory
from common.store.jobs import Job, utcnow
from common.store.settings import set_setting
from common.store.vms import BUDGET_SETTING, HostingPlatform, Vm, VmTemplate
from exporter.collectors.jobs import JobsCollector
from exporter.collectors.vms import VmsCollector
from exporter.exposition import Exposition
from tests.support.sqlite_lock import exclusive_lock
from tests.support.metrics import refreshed


@contextmanager
def counting(target, name):
    """Count SQLAlchemy events of `name` on every engine/pool of the process while inside."""
    calls = []

    def listener(*_args, **_kwargs):
        calls.append(1)

    event.listen(target, name, listener)
    try:
        yield calls
    finally:
        event.remove(target, name, listener)


def _store(settings):
    engine = connect(settings.db_path)
    init_db(engine)
    return engine, session_factory(engine)


def _add_vm(sessions, name, budget="100"):
    with sessions.begin() as s:
        platform = s.query(HostingPlatform).first() or HostingPlatform(name="rp", provider="runpod.io",
                                                                         api_key="k")
        template = s.query(VmTemplate).first() or VmTemplate(
            name="t", platform=platform, gpu="A6000", gpu_count=1, vram_gb=48, vcpus=8, ram_gb=32,
            compute_usd_per_hour=1.0)
        vm = Vm(name=name, template=template, container_gb=10, volume_gb=0, instance_id=name,
                created_at=time.time())
        s.add(vm)
        vm_status.record_status(vm, "running", time.time())
        set_setting(s, BUDGET_SETTING, budget)


@pytest.fixture
def settings(vm_env):
    return Settings.from_env(vm_env)


def test_a_scrape_never_touches_the_db(settings):
    engine, sessions = _store(settings)
    _add_vm(sessions, "trainer")
    with sessions.begin() as s:
        s.add(Job(kind="clone", target="https://u:pw@host/r.git", status="running", created_at=utcnow()))
    vms, jobs = refreshed(VmsCollector(settings)), refreshed(JobsCollector(settings))
    exposition = Exposition([vms, jobs])
    with counting(Engine, "before_cursor_execute") as statements, counting(Pool, "connect") as opened:
        text = exposition.render().decode() + exposition.render(gzipped=True).hex()
    assert statements == [] and opened == []
    assert 'wordslab_vm_info{' in text and 'wordslab_job_status{' in text
    assert "pw@" not in text
    engine.dispose()


def test_one_engine_read_again_only_when_the_file_changes(settings):
    engine, sessions = _store(settings)
    _add_vm(sessions, "trainer")
    db = config_db.ConfigDb(settings.db_path)
    db.add_read("vms", lambda s: s.query(Vm.name).order_by(Vm.name).all(), [])
    with counting(Pool, "connect") as opened, counting(Engine, "before_cursor_execute") as statements:
        first = db.source.refresh_now()
        reads = len(statements)
        assert reads > 0 and [tuple(r) for r in db.value("vms")] == [("trainer",)]
        unchanged = db.source.refresh_now()  # nothing written: a stat, no SQL
        assert len(statements) == reads
        assert unchanged.version == first.version and unchanged.value is first.value
        _add_vm(sessions, "spare")
        changed = db.source.refresh_now()
        assert [tuple(r) for r in db.value("vms")] == [("spare",), ("trainer",)]
        assert changed.version == first.version + 1
    # Only ours opened a connection (the admin's was open already), once, kept across reads.
    assert len(opened) == 1
    db.close()
    engine.dispose()


def test_missing_db_is_empty_and_never_created(settings):
    db = config_db.ConfigDb(settings.db_path)
    db.add_read("jobs", lambda s: ["never"], ())
    snapshot = db.source.refresh_now()
    assert snapshot.ok and db.value("jobs") == ()
    assert not settings.db_path.exists()


def test_a_replaced_db_file_is_reopened(settings, tmp_path):
    engine, sessions = _store(settings)
    _add_vm(sessions, "old")
    engine.dispose()
    db = config_db.ConfigDb(settings.db_path)
    db.add_read("vms", lambda s: [n for (n,) in s.query(Vm.name)], [])
    db.source.refresh_now()
    assert db.value("vms") == ["old"]
    other = Settings.from_env(dict(settings.env, WORDSLAB_DASHBOARD_DB=str(tmp_path / "other.db")))
    engine, sessions = _store(other)
    _add_vm(sessions, "new")
    engine.dispose()
    for suffix in ("-wal", "-shm"):
        if os.path.exists(f"{settings.db_path}{suffix}"):
            os.unlink(f"{settings.db_path}{suffix}")
    os.replace(other.db_path, settings.db_path)  # e.g. restored from a backup
    db.source.refresh_now()
    assert db.value("vms") == ["new"]
    db.close()


def test_a_lock_holder_fails_the_reader_not_the_scrape(settings):
    engine, sessions = _store(settings)
    _add_vm(sessions, "trainer", budget="250")
    engine.dispose()
    vms = refreshed(VmsCollector(settings))
    exposition = Exposition([vms])
    # Our idle connection keeps an exclusive-mode writer from locking at all; let go of it so the
    # holder gets the lock, as when the exporter starts while another process holds it.
    vms.config.close()
    with exclusive_lock(settings.db_path):
        os.utime(settings.db_path)  # make sure the reader sees a change and tries to read
        failed = vms.config.source.refresh_now()
        with counting(Engine, "before_cursor_execute") as statements:
            text = exposition.render().decode()
    assert not failed.ok and "locked" in failed.error
    assert statements == []
    assert 'wordslab_source_refresh_success{source="config_db"} 0.0' in text
    assert 'wordslab_vm_info{' in text  # the last good rows stay published
    assert "wordslab_cost_budget_month_usd 250.0" in text
    assert vms.config.source.refresh_now().ok  # the holder went away: reads work again
