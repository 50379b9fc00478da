"""Clear errors from the real processes: a clone failure shows git's own `fatal:` line, and the
admin or exporter started on a damaged database says in one line which file and what to do."""
from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

import pytest

from common.store import connect, init_db, session_factory
from common.store.jobs import Job, utcnow
from tests.fakes.git_http import git_remote  # noqa: F401  (fixture)
from tests.fakes.hostile_http import AskingPassword, untrusted_tls
from tests.fakes.loopback import serving
from tests.support.admin_http import AdminHttp
from tests.support.admin_server import start_admin
from tests.support.env import free_port, wordslab_env
from tests.support.polling import wait_for
from tests.support.prometheus import start_exporter
from tests.support.world import REPO_ROOT

pytestmark = pytest.mark.integration


# --- clone failures --------------------------------------------------------------------------

@pytest.fixture
def admin(tmp_path):
    server = start_admin(tmp_path / "vm")
    yield server
    server.stop()


def _clone_message(admin, url: str) -> str:
    web = AdminHttp(admin)
    response = web.post("/admin/projects/new/", {"url": url, "name": "proj", "branch": ""})
    assert response.status_code == 200

    def finished():
        with admin.sessions()() as s:
            job = s.query(Job).filter(Job.kind == "clone").one_or_none()
            return job.message if job is not None and job.status == "failed" else None

    message = wait_for(finished, 60, "the clone job to fail", interval=0.3)
    assert "exit code" not in message and "Cmd(" not in message, message
    page = web.get("/admin/jobs/").text
    assert "fatal:" in page
    return message


def test_clone_of_a_missing_repository_shows_git_s_fatal_line(admin, git_remote):
    message = _clone_message(admin, git_remote.url("missing"))
    assert message.startswith("Clone failed: fatal: repository ") and "not found" in message


def test_clone_that_needs_a_password_shows_git_s_fatal_line(admin):
    with serving(AskingPassword) as url:
        message = _clone_message(admin, url + "/private/repo.git")
    assert "fatal: could not read Username" in message


def test_clone_over_untrusted_tls_shows_git_s_fatal_line(admin):
    with untrusted_tls() as url:
        message = _clone_message(admin, url + "/o/repo.git")
    assert "fatal: unable to access" in message and "certificate" in message


def test_clone_of_an_unknown_host_shows_git_s_fatal_line(admin):
    message = _clone_message(admin, "https://no-such-host.invalid/o/repo.git")
    assert "fatal: unable to access" in message and "Could not resolve host" in message


def test_clone_refused_by_the_server_shows_git_s_fatal_line(admin):
    message = _clone_message(admin, f"http://127.0.0.1:{free_port()}/o/repo.git")
    assert "fatal: unable to access" in message and "Failed to connect" in message


# --- a damaged database --------------------------------------------------------------------------

def _garbage_db(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not SQLite at all\n" * 2000)


def _damaged_db(path):
    """A real dashboard DB whose middle pages were overwritten (the header still says SQLite)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = connect(path)
    init_db(engine)
    with session_factory(engine).begin() as s:
        s.add_all(Job(kind="clone", target="x" * 300, status="done", created_at=utcnow(), message="m" * 500)
                  for _ in range(300))
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 8192] = b"\x13" * 8192
    path.write_bytes(bytes(data))


def _symlink_loop(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(path.name, path)


def _a_directory(path):
    path.mkdir(parents=True)


def _a_fifo(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)


@pytest.mark.parametrize("damage", [_garbage_db, _damaged_db, _symlink_loop, _a_directory, _a_fifo])
def test_admin_on_a_damaged_db_says_what_to_do_in_one_line(tmp_path, damage):
    db = tmp_path / "vm" / "dashboard.db"
    damage(db)
    env = {**wordslab_env(tmp_path / "vm"), "PYTHONPATH": str(REPO_ROOT), "WORDSLAB_DASHBOARD_DB": str(db)}
    done = subprocess.run([sys.executable, "-m", "admin", "--listen-address", "127.0.0.1:0", "--db", str(db)],
                          env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    lines = [l for l in (done.stdout + done.stderr).splitlines() if l.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"wordslab-admin: {db} is not a usable SQLite database (")
    assert f"mv {db} {db}.broken" in lines[0] and "restore it from a backup" in lines[0]
    assert "Traceback" not in done.stderr


def test_exporter_on_a_damaged_db_says_what_to_do_and_serves_the_rest(tmp_path):
    env = wordslab_env(tmp_path / "vm")
    db = tmp_path / "vm" / "dashboard.db"
    env["WORDSLAB_DASHBOARD_DB"] = str(db)
    _garbage_db(db)
    process, address = start_exporter(env, [], tmp_path)
    try:
        def config_db_failing():
            body = urllib.request.urlopen(f"http://{address}/metrics", timeout=30).read().decode()
            return 'wordslab_source_refresh_success{source="config_db"} 0.0' in body and body
        body = wait_for(config_db_failing, 30, "config_db reported failing", interval=0.5)
        assert "wordslab_memory_" in body or "wordslab_cpu_" in body  # the machine is still there
    finally:
        process.stop()
    log = process.log_path.read_text()
    assert f"{db} is not a usable SQLite database (file is not a database): move it aside" in log
    assert "Traceback" not in log and "[SQL:" not in log
