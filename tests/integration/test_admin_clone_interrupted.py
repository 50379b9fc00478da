"""A clone from a slow remote, interrupted: by kill -9 of the real admin process, or by Cancel on
the jobs page. Neither leaves a half clone listed as a project."""
from __future__ import annotations

import os
import signal

import psutil
import pytest

from common.store.jobs import Job
from tests.fakes.git_http import git_http_server
from tests.support.admin_http import AdminHttp
from tests.support.admin_server import start_admin
from tests.support.git_repos import make_remote
from tests.support.polling import wait_for

STAGING = ".wordslab-clone-big"


@pytest.fixture
def remote(tmp_path):
    remotes = tmp_path / "remotes"
    remotes.mkdir()
    # About 2 MB of pack, served 16 KiB every 50 ms: a clone that takes several seconds.
    make_remote(remotes, "big", {"blob.txt": os.urandom(2 * 1024 * 1024).hex()})
    with git_http_server(remotes, chunk_delay=0.05) as server:
        yield server


def _git_processes(staging) -> list[psutil.Process]:
    """git clone (named on its command line) and its helpers (index-pack runs inside it)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        cwd = proc.info["cwd"] or ""
        if str(staging) in (proc.info["cmdline"] or []) or cwd == str(staging) or cwd.startswith(f"{staging}/"):
            found.append(proc)
    return found


def _clone_job(server) -> Job:
    with server.sessions()() as s:
        return s.query(Job).filter_by(kind="clone").one()


def _start_clone(server, remote) -> tuple[AdminHttp, object]:
    """Log in and start cloning `big`; returns once git is receiving (web client, workspace)."""
    web, workspace = AdminHttp(server), server.root / "workspace"
    web.post("/admin/projects/new/", {"url": remote.url("big"), "name": "big", "branch": ""})
    wait_for(lambda: (workspace / STAGING / ".git").exists(), 60, "the clone to start receiving")
    return web, workspace


def _not_listed(web: AdminHttp, workspace) -> None:
    page = web.get("/admin/projects/").text
    assert '<tr id="project-' not in page  # no project row at all: neither big nor its staging copy
    assert not (workspace / "big").exists()


@pytest.mark.parametrize("git_killed_too", [True, False])
def test_kill_9_mid_clone_leaves_no_project_and_the_next_start_cleans_up(tmp_path, remote, git_killed_too):
    root = tmp_path / "vm"
    server = start_admin(root, env={"WORDSLAB_VM_STATUS_INTERVAL_SECONDS": "0"})
    try:
        web, workspace = _start_clone(server, remote)
        assert _clone_job(server).status == "running"
        _not_listed(web, workspace)  # in progress: not a project yet
        # kill -9 of the admin and of its git (as when the machine's OOM killer or a container
        # stop ends them all): the half clone stays on disk, where git left it.
        # Alone, the orphaned git ends by itself (its progress pipe is gone) or finishes into
        # the staging directory, which nobody renames.
        os.kill(server.process.pid, signal.SIGKILL)
        if git_killed_too:
            for proc in _git_processes(workspace / STAGING):
                proc.kill()
        server.process.wait(timeout=30)
        wait_for(lambda: not _git_processes(workspace / STAGING), 120, "git to end")
        assert not (workspace / "big").exists()
        if git_killed_too:
            assert (workspace / STAGING).is_dir()
    finally:
        server.stop()
    server = start_admin(root, env={"WORDSLAB_VM_STATUS_INTERVAL_SECONDS": "0"})
    try:
        web = AdminHttp(server)
        job = _clone_job(server)
        assert job.status == "failed" and job.message.startswith("interrupted")
        _not_listed(web, workspace)
        assert not (workspace / STAGING).exists()
        if git_killed_too:
            assert "removed the half clone of big" in server.log()
        # The name is free again: the same clone now completes.
        web.post("/admin/projects/new/", {"url": remote.url("big"), "name": "big", "branch": ""})
        wait_for(lambda: (workspace / "big" / "blob.txt").exists(), 120, "the second clone")
        assert 'id="project-big"' in web.get("/admin/projects/").text
    finally:
        server.stop()


def test_cancel_mid_clone_kills_git_and_leaves_nothing(tmp_path, remote):
    server = start_admin(tmp_path / "vm", env={"WORDSLAB_VM_STATUS_INTERVAL_SECONDS": "0"})
    try:
        web, workspace = _start_clone(server, remote)
        job_id = _clone_job(server).id
        assert f'action="/admin/jobs/{job_id}/cancel/"' in web.get("/admin/jobs/").text
        web.post(f"/admin/jobs/{job_id}/cancel/")
        job = wait_for(lambda: (j := _clone_job(server)).status not in ("queued", "running") and j, 60,
                       "the clone job to end")
        assert (job.status, job.message) == ("cancelled", "cancelled by the user")
        assert not _git_processes(workspace / STAGING)
        assert not (workspace / STAGING).exists()
        _not_listed(web, workspace)
    finally:
        server.stop()
