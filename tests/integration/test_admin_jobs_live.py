"""The real admin's job runner: endpoints stuck "starting" hold up neither Stop nor a clone, and
a running job can be cancelled from the jobs page (CSRF-protected), which really stops its work."""
from __future__ import annotations

import re

import psutil

from common.store.jobs import Job
from common.store.services import Endpoint
from tests.fakes.git_http import git_http_server
from tests.support.admin_http import AdminHttp
from tests.support.admin_server import start_admin
from tests.support.env import free_port
from tests.support.git_repos import make_remote
from tests.support.polling import wait_for

# A server that never answers on its port: its start waits (READY_TIMEOUT_SECONDS, 15 min).
NEVER_READY = "sleep 3600"


def _endpoint(web: AdminHttp, name: str) -> None:
    page = web.post("/admin/endpoints/new/", {
        "name": name, "model": "", "service_type": "LLM", "server": "fastapi", "api_type": "openai",
        "internal_port": str(free_port()), "base_url": "", "health_url": "", "command": NEVER_READY,
        "image": "", "gpu_memory_share": ""}).text
    assert "Record was successfully created" in page, page[-3000:]


def _rows(server, model):
    with server.sessions()() as s:
        return s.query(model).order_by(model.id).all()


def _job(server, job_id: int) -> Job:
    return next(j for j in _rows(server, Job) if j.id == job_id)


def _endpoint_row(server, name: str) -> Endpoint:
    return next(e for e in _rows(server, Endpoint) if e.name == name)


def _act(web: AdminHttp, server, name: str, op: str) -> int:
    page = web.post(f"/admin/endpoints/action/{_endpoint_row(server, name).id}/{op}").text
    match = re.search(r"job #(\d+) started", page)
    assert match, page[-3000:]
    return int(match.group(1))


def test_stuck_starts_hold_up_neither_stop_nor_a_clone_and_a_start_can_be_cancelled(tmp_path):
    remotes = tmp_path / "remotes"
    remotes.mkdir()
    make_remote(remotes, "demo")
    server = start_admin(tmp_path / "vm", env={"WORDSLAB_VM_STATUS_INTERVAL_SECONDS": "0"})
    try:
        web = AdminHttp(server)
        for name in ("a", "b", "c"):
            _endpoint(web, name)
        starts = {name: _act(web, server, name, "start") for name in ("a", "b", "c")}
        for name in starts:
            wait_for(lambda: _endpoint_row(server, name).status == "starting" and _endpoint_row(server, name).pid,
                     120, f"endpoint {name} to be starting")
        pid_a, pid_b = _endpoint_row(server, "a").pid, _endpoint_row(server, "b").pid

        # More starts wait than there are job workers: Stop and a clone still run now.
        stop_a = _act(web, server, "a", "stop")
        wait_for(lambda: _job(server, stop_a).status == "done", 120, "Stop to run while starts wait")
        assert _endpoint_row(server, "a").status == "stopped" and not psutil.pid_exists(pid_a)
        assert _job(server, starts["a"]).status in ("failed", "running")
        with git_http_server(remotes) as remote:
            web.post("/admin/projects/new/", {"url": remote.url("demo"), "name": "demo", "branch": ""})
            clone_id = max(j.id for j in _rows(server, Job) if j.kind == "clone")
            wait_for(lambda: _job(server, clone_id).status == "done", 120, "the clone to run while starts wait")

        # Cancel from the jobs page: the start job ends "cancelled" and its server process is gone.
        page = web.get("/admin/jobs/").text
        assert f'action="/admin/jobs/{starts["b"]}/cancel/"' in page
        assert web.http.post(server.url + f"/admin/jobs/{starts['b']}/cancel/", timeout=30).status_code == 400
        assert _job(server, starts["b"]).status == "running"  # no CSRF token, nothing cancelled
        page = web.post(f"/admin/jobs/{starts['b']}/cancel/").text
        assert f"job {starts['b']}: cancel requested" in page
        job = wait_for(lambda: (j := _job(server, starts["b"])).status == "cancelled" and j, 120,
                       "the start job to end cancelled")
        assert job.message == "cancelled by the user" and job.finished_at is not None
        wait_for(lambda: not psutil.pid_exists(pid_b) or psutil.Process(pid_b).status() == psutil.STATUS_ZOMBIE,
                 120, "the cancelled start's process to end")
        assert _endpoint_row(server, "b").status == "stopped"
        page = web.post(f"/admin/jobs/{starts['b']}/cancel/").text
        assert "is not queued or running: nothing to cancel" in page
        assert _job(server, starts["c"]).status == "running"
    finally:
        server.stop()
