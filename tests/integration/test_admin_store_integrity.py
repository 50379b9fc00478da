"""The real admin process keeps every write it reports as saved while other processes read its
SQLite file (the sqlite3 CLI, the exporter's read-only engine), across a restart."""
from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest
import requests

from tests.support.admin_http import AdminHttp
from tests.support.admin_server import start_admin
from tests.support.polling import wait_for
from tests.support.prometheus import start_exporter
from tests.support.sqlite_lock import exclusive_lock


def _sqlite3(db, sql: str) -> str:
    """Another process reading the file, as a user would with the sqlite3 CLI."""
    return subprocess.run(["sqlite3", str(db), sql], check=True, capture_output=True, text=True,
                          timeout=30).stdout.strip()


def _budget_from_file(db) -> str:
    return _sqlite3(db, "select value from settings where key = 'vm_cost_budget_month_usd'")


def _save_budget(web: AdminHttp, value: str) -> None:
    response = web.post("/admin/vm_settings/", {"budget": value, "interval": "60"})
    assert response.status_code == 200 and "VM settings saved." in response.text, response.text


@pytest.fixture
def root(tmp_path):
    return tmp_path / "vm"


def test_writes_after_another_process_read_the_file_survive_a_restart(root):
    server = start_admin(root)
    try:
        web = AdminHttp(server)
        _save_budget(web, "11")
        assert int(_sqlite3(server.db_path, "select count(*) from sqlite_master")) > 0
        _save_budget(web, "22")
        assert _budget_from_file(server.db_path) == "22"
        assert int(_sqlite3(server.db_path, "select count(*) from sqlite_master")) > 0
        _save_budget(web, "33")
        assert _budget_from_file(server.db_path) == "33"
    finally:
        server.stop()
    assert _budget_from_file(server.db_path) == "33"
    server = start_admin(root)
    try:
        assert 'value="33"' in AdminHttp(server).get("/admin/vm_settings/").text
    finally:
        server.stop()


# A reader that opens and closes the file in a loop, as a backup script or a second tool would.
_READER_LOOP = """
import sqlite3, sys, time
db = sys.argv[1]
while True:
    conn = sqlite3.connect(db, timeout=10)
    conn.execute("select count(*) from sqlite_master").fetchone()
    conn.execute("select value from settings where key = 'vm_cost_budget_month_usd'").fetchall()
    conn.close()
    time.sleep(0.02)
"""


def _metric_budget(address: str) -> str | None:
    text = requests.get(f"http://{address}/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith("wordslab_cost_budget_month_usd "):
            return line.split()[1]
    return None



def test_admin_writes_survive_reader_processes_and_the_exporter_and_a_restart(root, tmp_path):
    server = start_admin(root)
    readers = [subprocess.Popen([sys.executable, "-c", _READER_LOOP, str(server.db_path)])
               for _ in range(2)]
    exporter = None
    try:
        web = AdminHttp(server)
        exporter, address = start_exporter(server.env, [], tmp_path)
        for value in range(1, 13):
            _save_budget(web, str(value))
            if value % 4 == 0:
                _sqlite3(server.db_path, "select count(*) from sqlite_master")
                wait_for(lambda: _metric_budget(address) == f"{value:.1f}", 120,
                          f"the exporter to read budget {value}")
            assert _budget_from_file(server.db_path) == str(value)
        for reader in readers:
            assert reader.poll() is None, "a reader process died"
    finally:
        for reader in readers:
            reader.kill()
            reader.wait()
        if exporter is not None:
            exporter.stop()
        server.stop()
    assert _budget_from_file(server.db_path) == "12"
    assert _sqlite3(server.db_path, "pragma integrity_check") == "ok"
    server = start_admin(root)
    try:
        assert 'value="12"' in AdminHttp(server).get("/admin/vm_settings/").text
    finally:
        server.stop()


def test_a_write_refused_by_a_locked_database_says_so_and_saves_nothing(root):
    server = start_admin(root)
    try:
        web = AdminHttp(server)
        _save_budget(web, "5")
        holder = sqlite3.connect(server.db_path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another program's long write transaction
        try:
            response = web.post("/admin/vm_settings/", {"budget": "6", "interval": "60"})
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert "Nothing was saved" in response.text and "saved." not in response.text
        assert _budget_from_file(server.db_path) == "5"
        _save_budget(web, "6")  # the lock is gone: the same write goes through
        assert _budget_from_file(server.db_path) == "6"
    finally:
        server.stop()


def _scrape_timed(address: str) -> tuple[float, str]:
    import time
    started = time.monotonic()
    text = requests.get(f"http://{address}/metrics", timeout=30).text
    return time.monotonic() - started, text


def test_a_locked_db_shows_as_a_failed_source_on_a_prompt_scrape_of_the_running_exporter(root, tmp_path):
    server = start_admin(root)
    try:
        _save_budget(AdminHttp(server), "44")
    finally:
        server.stop()
    exporter = None
    try:
        with exclusive_lock(server.db_path) as holder:
            exporter, address = start_exporter(server.env, [], tmp_path)
            failed = 'wordslab_source_refresh_success{source="config_db"} 0.0'
            wait_for(lambda: failed in _scrape_timed(address)[1], timeout=30,
                     what="the exporter to report the locked DB as a failed source")
            seconds, text = _scrape_timed(address)
            # The read waits for the lock in the background source, never in the scrape.
            assert seconds < 1.0, f"a scrape took {seconds:.2f} s while the DB was locked"
            assert 'wordslab_collector_success{collector="vms"} 1.0' in text
            holder.stdin.close()
            holder.wait(timeout=30)
        wait_for(lambda: _metric_budget(address) == "44.0", timeout=30,
                 what="the budget once the lock is released")
        assert 'wordslab_source_refresh_success{source="config_db"} 1.0' in _scrape_timed(address)[1]
    finally:
        if exporter is not None:
            exporter.stop()
