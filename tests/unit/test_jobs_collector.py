"""Jobs collector: progress and state-set status of recent jobs, read-only from the DB."""
import sqlite3
import subprocess
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from exporter.collectors.jobs import MAX_JOBS, JobsCollector
from common.config import Settings
from exporter.exposition import Exposition
from common.store import connect, init_db, session_factory
from common.store.jobs import JOB_STATUSES, Job, utcnow
from tests.support.metrics import refreshed


def _samples(collector) -> dict[str, list]:
    text = Exposition([refreshed(collector)]).render().decode()
    by_name: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            by_name.setdefault(sample.name, []).append(sample)
    return by_name


def _sessions(vm_env):
    engine = connect(Settings.from_env(vm_env).db_path)
    init_db(engine)
    return session_factory(engine)


def test_missing_database_means_no_series_not_a_failure(vm_env):
    collector = JobsCollector(Settings.from_env(vm_env))
    samples = _samples(collector)
    assert "wordslab_job_status" not in samples and "wordslab_job_progress_ratio" not in samples
    assert [s.value for s in samples["wordslab_collector_success"]] == [1.0]
    assert not Settings.from_env(vm_env).db_path.exists()  # reading never creates it


def test_database_without_the_jobs_table_means_no_series(vm_env):
    db_path = Settings.from_env(vm_env).db_path
    sqlite3.connect(db_path).close()
    samples = _samples(JobsCollector(Settings.from_env(vm_env)))
    assert "wordslab_job_status" not in samples
    assert [s.value for s in samples["wordslab_collector_success"]] == [1.0]


def test_recent_jobs_with_progress_and_one_status_each(vm_env):
    sessions = _sessions(vm_env)
    now = utcnow()
    with sessions.begin() as s:
        s.add_all([
            Job(id=1, kind="clone", target="https://example.org/a.git", status="running", progress=0.4,
                created_at=now),
            Job(id=2, kind="download", target="ollama/llama3", status="queued", created_at=now),
            Job(id=3, kind="download", target="hf/qwen", status="done", progress=1.0, created_at=now,
                finished_at=now - timedelta(minutes=10)),
            Job(id=4, kind="clone", target="old", status="failed", created_at=now - timedelta(hours=3),
                finished_at=now - timedelta(hours=2)),
        ])
    samples = _samples(JobsCollector(Settings.from_env(vm_env)))
    progress = {s.labels["job"]: (s.labels, s.value) for s in samples["wordslab_job_progress_ratio"]}
    assert set(progress) == {"1", "2", "3"}  # job 4 ended two hours ago
    assert progress["1"] == ({"job": "1", "kind": "clone", "target": "https://example.org/a.git"}, 0.4)
    assert progress["3"][1] == 1.0
    status = {}
    for sample in samples["wordslab_job_status"]:
        status.setdefault(sample.labels["job"], {})[sample.labels["status"]] = sample.value
    assert status["1"] == {"queued": 0.0, "running": 1.0, "done": 0.0, "failed": 0.0, "cancelled": 0.0}
    assert status["2"]["queued"] == 1.0 and status["3"]["done"] == 1.0
    assert all(sorted(s) == sorted(JOB_STATUSES) and sum(s.values()) == 1.0 for s in status.values())


def test_cardinality_is_bounded(vm_env):
    sessions = _sessions(vm_env)
    with sessions.begin() as s:
        s.add_all(Job(kind="download", target=f"m{i}", status="running", created_at=utcnow())
                  for i in range(MAX_JOBS + 20))
    samples = _samples(JobsCollector(Settings.from_env(vm_env)))
    jobs = {int(s.labels["job"]) for s in samples["wordslab_job_progress_ratio"]}
    assert len(jobs) == MAX_JOBS and max(jobs) == MAX_JOBS + 20  # the newest ones


def test_credentials_never_reach_metrics(vm_env):
    sessions = _sessions(vm_env)
    with sessions.begin() as s:  # a row written by something other than JobRunner.submit
        s.add(Job(kind="clone", target="https://bob:ghp_SECRET@example.org/x.git", status="running",
                  created_at=utcnow()))
    text = Exposition([refreshed(JobsCollector(Settings.from_env(vm_env)))]).render().decode()
    assert "ghp_SECRET" not in text and 'target="https://example.org/x.git"' in text


def test_exposition_passes_promtool(vm_env, tmp_path):
    sessions = _sessions(vm_env)
    with sessions.begin() as s:
        s.add(Job(kind="clone", target="a", status="running", progress=0.5, created_at=utcnow()))
    text = Exposition([refreshed(JobsCollector(Settings.from_env(vm_env)))]).render()
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert result.returncode == 0 and not result.stdout and not result.stderr, result.stdout + result.stderr


def test_the_database_appearing_later_is_picked_up(vm_env):
    collector = JobsCollector(Settings.from_env(vm_env))
    assert "wordslab_job_status" not in _samples(collector)
    with _sessions(vm_env).begin() as s:
        s.add(Job(kind="clone", target="a", status="running", created_at=utcnow()))
    assert len(_samples(collector)["wordslab_job_status"]) == len(JOB_STATUSES)
    collector.stop()
