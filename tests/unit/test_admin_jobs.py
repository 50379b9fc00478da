"""Background jobs: run outside the request, report throttled progress, survive restarts."""
import threading

import pytest
from sqlalchemy import event, select

from admin.jobs import INTERRUPTED_MESSAGE, JobFailed, JobRunner, Progress
from common.store import connect, init_db, session_factory
from common.store.jobs import Job, utcnow
from tests.support.admin import logged_in_client, make_admin_app


@pytest.fixture
def store(tmp_path):
    engine = connect(tmp_path / "dashboard.db")
    init_db(engine)
    yield engine, session_factory(engine)
    engine.dispose()


def _job(sessions, job_id) -> Job:
    with sessions() as s:
        return s.get(Job, job_id)


def test_job_runs_in_the_background_and_reports_progress(store):
    _, sessions = store
    runner = JobRunner(sessions)
    reported, release = threading.Event(), threading.Event()

    def work(progress):
        progress.update(bytes_done=256, bytes_total=1024, message="receiving objects")
        reported.set()
        release.wait(30)
        return "cloned into demo"

    job_id = runner.submit("clone", "https://example.org/demo.git", work)
    assert reported.wait(30)
    job = _job(sessions, job_id)
    assert (job.status, job.progress, job.bytes_done, job.bytes_total, job.message) == (
        "running", 0.25, 256, 1024, "receiving objects")
    assert job.started_at is not None and job.finished_at is None
    release.set()
    assert runner.wait_idle(30)
    job = _job(sessions, job_id)
    assert (job.status, job.progress, job.message) == ("done", 1.0, "cloned into demo")
    assert job.finished_at is not None
    runner.shutdown()


def test_job_failed_keeps_the_user_message(store):
    _, sessions = store
    runner = JobRunner(sessions)

    def work(progress):
        progress.update(0.4)
        raise JobFailed("remote refused the connection")

    job_id = runner.submit("clone", "https://example.org/x.git", work)
    assert runner.wait_idle(30)
    job = _job(sessions, job_id)
    assert (job.status, job.message, job.progress) == ("failed", "remote refused the connection", 0.4)


def test_unexpected_error_fails_the_job_not_the_admin(store):
    _, sessions = store
    runner = JobRunner(sessions)
    bad = runner.submit("download", "llama3", lambda progress: 1 / 0)
    good = runner.submit("download", "qwen3", lambda progress: "pulled")
    assert runner.wait_idle(30)
    assert _job(sessions, bad).status == "failed"
    assert _job(sessions, bad).message == "unexpected error: ZeroDivisionError: division by zero"
    assert _job(sessions, good).status == "done"


def test_credentials_in_targets_and_messages_are_never_stored(store):
    _, sessions = store
    runner = JobRunner(sessions)

    def work(progress):
        raise JobFailed("git clone https://bob:ghp_SECRET@example.org/x.git: not found")

    job_id = runner.submit("clone", "https://bob:ghp_SECRET@example.org/x.git", work)
    assert runner.wait_idle(30)
    job = _job(sessions, job_id)
    assert job.target == "https://example.org/x.git"
    assert "ghp_SECRET" not in job.message and "bob" not in job.message


def test_progress_writes_are_throttled_and_the_last_values_kept(store):
    engine, sessions = store
    with sessions.begin() as s:
        job = Job(kind="download", target="m", status="running", created_at=utcnow())
        s.add(job)
        s.flush()
        job_id = job.id
    writes = []

    @event.listens_for(engine, "before_cursor_execute")
    def count(conn, cursor, statement, *args):
        if statement.startswith("UPDATE jobs"):
            writes.append(statement)

    now = [0.0]
    progress = Progress(sessions, job_id, clock=lambda: now[0])
    for i in range(1, 1001):  # 1000 updates within 0.1 s: one write, the first
        now[0] = i / 10000
        progress.update(bytes_done=i, bytes_total=1000)
    assert len(writes) == 1
    assert _job(sessions, job_id).bytes_done == 1
    now[0] += Progress.min_interval  # time passes: the next update is written
    progress.update(bytes_done=1000, bytes_total=1000, message="verifying")
    assert len(writes) == 2
    progress.update(message="almost")  # throttled, kept pending
    assert _job(sessions, job_id).message == "verifying"
    progress.flush()
    assert len(writes) == 3
    job = _job(sessions, job_id)
    assert (job.progress, job.bytes_done, job.message) == (1.0, 1000, "almost")


def test_unfinished_jobs_survive_an_admin_restart_as_interrupted(vm_env):
    app = make_admin_app(vm_env, view_modules=("jobs",))
    sessions = app.extensions["wordslab"].sessions
    with sessions.begin() as s:
        s.add_all([
            Job(kind="clone", target="running-one", status="running", progress=0.3, created_at=utcnow()),
            Job(kind="download", target="queued-one", status="queued", created_at=utcnow()),
            Job(kind="download", target="done-one", status="done", progress=1.0, message="pulled",
                created_at=utcnow(), finished_at=utcnow()),
        ])
    restarted = make_admin_app(vm_env, view_modules=("jobs",))  # a new admin process on the same DB
    with restarted.extensions["wordslab"].sessions() as s:
        jobs = {j.target: j for j in s.scalars(select(Job))}
    assert jobs["running-one"].status == "failed" and jobs["queued-one"].status == "failed"
    assert jobs["running-one"].message == INTERRUPTED_MESSAGE
    assert jobs["running-one"].message.startswith("interrupted")
    assert jobs["running-one"].progress == 0.3 and jobs["running-one"].finished_at is not None
    assert (jobs["done-one"].status, jobs["done-one"].message) == ("done", "pulled")


def test_status_json_needs_login_and_reports_the_job(vm_env):
    app = make_admin_app(vm_env, view_modules=("jobs",))
    ctx = app.extensions["wordslab"]
    job_id = ctx.jobs.submit("download", "llama3", lambda p: p.update(bytes_done=3 << 30, bytes_total=4 << 30))
    assert ctx.jobs.wait_idle(30)
    anonymous = app.test_client()
    assert anonymous.get(f"/admin/jobs/{job_id}/status.json").status_code == 401
    assert anonymous.get("/admin/jobs/status.json").status_code == 401
    client = logged_in_client(app)
    body = client.get(f"/admin/jobs/{job_id}/status.json").get_json()
    assert body["status"] == "done" and body["progress"] == 1.0
    assert body["progress_text"] == "100 % · 3.0 GiB / 4.0 GiB"
    assert body["finished_at"].endswith("Z")
    assert client.get("/admin/jobs/999/status.json").status_code == 404
    assert client.get("/admin/jobs/status.json").get_json() == {"latest_id": job_id, "active": []}


def test_list_page_shows_current_progress_not_a_stale_copy(vm_env):
    app = make_admin_app(vm_env, view_modules=("jobs",))
    sessions = app.extensions["wordslab"].sessions
    with sessions.begin() as s:
        job = Job(kind="download", target="qwen3", status="running", progress=0.2, created_at=utcnow())
        s.add(job)
    client = logged_in_client(app)
    page = client.get("/admin/jobs/").text
    assert 'style="width: 20%"' in page and 'data-job-status="running"' in page
    with sessions.begin() as s:  # the worker moves on between two page loads
        s.get(Job, job.id).progress = 0.8
    page = client.get("/admin/jobs/").text
    assert 'style="width: 80%"' in page and "80 %" in page
    assert f'data-jobs-latest-id="{job.id}"' in page  # what jobs.js compares with status.json


def test_an_unfinished_job_cannot_be_deleted(vm_env):
    from tests.support.admin import csrf_from
    app = make_admin_app(vm_env, view_modules=("jobs",))
    sessions = app.extensions["wordslab"].sessions
    with sessions.begin() as s:
        running = Job(kind="clone", target="busy", status="running", created_at=utcnow())
        s.add(running)
    client = logged_in_client(app)
    token = csrf_from(client.get("/admin/jobs/").text)
    response = client.post("/admin/jobs/delete/", data={"id": running.id, "csrf_token": token},
                           follow_redirects=True)
    assert "wait until it ends to delete it" in response.text
    assert _job(sessions, running.id) is not None


def test_cancel_stops_a_waiting_job_and_runs_its_cancel_callbacks(store):
    from admin.jobs import CANCELLED_MESSAGE
    _, sessions = store
    runner = JobRunner(sessions, workers=1)
    waiting, killed = threading.Event(), threading.Event()

    def work(progress):
        progress.on_cancel(killed.set)
        waiting.set()
        while True:
            progress.sleep(3600)

    running = runner.submit("endpoint-start", "a", work)
    queued = runner.submit("clone", "b", lambda progress: "never runs")
    assert waiting.wait(30)
    assert _job(sessions, queued).status == "queued"  # the only worker is taken
    assert runner.cancel(queued) == f"job {queued}: cancelled"
    assert runner.cancel(running) == f"job {running}: cancel requested"
    assert runner.wait_idle(30) and killed.is_set()
    for job_id in (running, queued):
        job = _job(sessions, job_id)
        assert (job.status, job.message) == ("cancelled", CANCELLED_MESSAGE) and job.finished_at
    with pytest.raises(JobFailed, match="nothing to cancel"):
        runner.cancel(running)
    runner.shutdown()


def test_control_jobs_do_not_wait_for_busy_workers(store):
    _, sessions = store
    runner = JobRunner(sessions, workers=1)
    release = threading.Event()
    busy = runner.submit("clone", "big", lambda progress: release.wait(60) and "done")
    assert _wait_status(sessions, busy, "running")  # the only worker is taken
    stop = runner.submit("endpoint-stop", "a", lambda progress: "stopped", lane="control")
    assert _wait_status(sessions, stop, "done")
    assert _job(sessions, busy).status == "running"
    release.set()
    assert runner.wait_idle(30)
    runner.shutdown()


def _wait_status(sessions, job_id, status, timeout=30.0) -> bool:
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _job(sessions, job_id).status == status:
            return True
        time.sleep(0.05)
    return False


def test_a_cancelled_job_stops_at_its_next_progress_report(store):
    _, sessions = store
    runner = JobRunner(sessions)
    reported, cancelled, reports = threading.Event(), threading.Event(), []

    def work(progress):
        for i in range(1000):
            progress.update(i / 1000, message=f"chunk {i}")
            reports.append(i)
            reported.set()
            cancelled.wait(30)
        return "downloaded"

    job_id = runner.submit("download", "model", work)
    assert reported.wait(30)
    runner.cancel(job_id)
    cancelled.set()
    assert runner.wait_idle(30)
    assert _job(sessions, job_id).status == "cancelled" and len(reports) == 1
    runner.shutdown()
