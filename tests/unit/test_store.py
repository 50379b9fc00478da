"""The config store: WAL for a concurrent reader, in-place upgrade, owner-only files."""
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap

from sqlalchemy import select, text

from common.store import connect, init_db, session_factory
from common.store.jobs import Job
from common.store.settings import get_setting, set_setting
from tests.support.world import REPO_ROOT


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _read_in_other_process(db_path, sql: str) -> subprocess.CompletedProcess:
    """Run `sql` through the exporter's read-only engine in a separate Python process."""
    code = textwrap.dedent(f"""
        from sqlalchemy import text
        from common.store import connect
        engine = connect({str(db_path)!r}, readonly=True)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout=0")  # fail at once instead of waiting for a lock
            print(conn.execute(text({sql!r})).scalar())
    """)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


def test_reader_process_reads_while_a_write_transaction_holds_the_database(tmp_path):
    db = tmp_path / "dashboard.db"
    engine = connect(db)
    init_db(engine)
    with session_factory(engine).begin() as s:
        s.add(Job(kind="clone", target="a", status="done"))
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        # A tiny page cache makes the writer spill pages before commit: in rollback-journal mode
        # that takes an exclusive lock on the file and a reader gets "database is locked".
        cur.execute("PRAGMA cache_size=1")
        cur.execute("BEGIN IMMEDIATE")
        for i in range(500):
            cur.execute("INSERT INTO jobs (kind, target, status, progress, message, created_at) "
                        "VALUES (?, ?, 'queued', 0, ?, '2026-01-01 00:00:00')",
                        ("download", f"model-{i}", "x" * 2000))
        mode = _read_in_other_process(db, "PRAGMA journal_mode")
        count = _read_in_other_process(db, "SELECT count(*) FROM jobs")
        raw.commit()
    finally:
        raw.close()
    assert mode.stdout.strip() == "wal", mode.stderr
    assert count.returncode == 0, count.stderr
    assert count.stdout.strip() == "1"  # the last committed state, not the open transaction
    after = _read_in_other_process(db, "SELECT count(*) FROM jobs")
    assert after.stdout.strip() == "501", after.stderr


def test_init_db_adds_missing_columns_and_keeps_rows(tmp_path):
    db = tmp_path / "old.db"
    # The jobs table of an older version: no status, message, bytes or timestamps columns.
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, kind VARCHAR(40) NOT NULL, "
                     "target VARCHAR(400) NOT NULL, progress FLOAT NOT NULL)")
        conn.executemany("INSERT INTO jobs (kind, target, progress) VALUES (?, ?, ?)",
                         [("clone", "https://example.org/a.git", 1.0), ("download", "llama3", 0.5)])
    conn.close()
    engine = connect(db)
    init_db(engine)
    init_db(engine)  # a second start changes nothing
    with session_factory(engine)() as s:
        jobs = s.scalars(select(Job).order_by(Job.id)).all()
        assert [(j.kind, j.target, j.progress) for j in jobs] == [
            ("clone", "https://example.org/a.git", 1.0), ("download", "llama3", 0.5)]
        assert [j.status for j in jobs] == ["queued", "queued"]  # the model's default
        assert [j.message for j in jobs] == ["", ""]
        assert jobs[0].bytes_total is None and jobs[0].finished_at is None
        # New rows use every column.
        s.add(Job(kind="clone", target="b", status="running", message="receiving", bytes_total=10))
        s.commit()
    with engine.connect() as conn:
        columns = {row[1] for row in conn.execute(text("PRAGMA table_info(jobs)"))}
        indexes = {row[1] for row in conn.execute(text("PRAGMA index_list(jobs)"))}
    assert {"status", "message", "bytes_done", "bytes_total", "created_at", "started_at",
            "finished_at"} <= columns
    assert "ix_jobs_status" in indexes


def test_database_and_wal_files_are_owner_only(tmp_path):
    old_umask = os.umask(0o022)
    try:
        db = tmp_path / "store" / "dashboard.db"
        engine = connect(db)
        init_db(engine)
        with session_factory(engine).begin() as s:
            set_setting(s, "api_key", "sk-secret")
        with engine.connect() as conn:  # an open connection keeps -wal and -shm in place
            conn.execute(text("SELECT 1"))
            for path in (db, f"{db}-wal", f"{db}-shm"):
                assert os.path.exists(path), path
                assert _mode(path) == 0o600, f"{path}: {oct(_mode(path))}"
            assert _mode(db.parent) == 0o700
    finally:
        os.umask(old_umask)


def test_init_db_tightens_a_database_left_world_readable(tmp_path):
    db = tmp_path / "dashboard.db"
    sqlite3.connect(db).close()
    os.chmod(db, 0o644)
    init_db(connect(db))
    assert _mode(db) == 0o600


def test_readonly_engine_does_not_create_the_file(tmp_path):
    db = tmp_path / "missing.db"
    engine = connect(db, readonly=True)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # sqlite refuses to open it
        assert "unable to open" in str(exc)
    else:
        raise AssertionError("a read-only engine opened a missing database")
    assert not db.exists()


def test_readonly_engine_cannot_write(tmp_path):
    db = tmp_path / "dashboard.db"
    init_db(connect(db))
    reader = connect(db, readonly=True)
    with reader.connect() as conn:
        try:
            conn.execute(text("INSERT INTO settings (key, value) VALUES ('x', 'y')"))
        except Exception as exc:
            assert "readonly" in str(exc)
        else:
            raise AssertionError("read-only engine wrote")


def test_settings_round_trip(tmp_path):
    engine = connect(tmp_path / "dashboard.db")
    init_db(engine)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        assert get_setting(s, "budget", "none") == "none"
        set_setting(s, "budget", "100")
    with sessions.begin() as s:
        set_setting(s, "budget", "120")
    with sessions() as s:
        assert get_setting(s, "budget") == "120"
