"""Admin list pages read the watched snapshots: a page view runs no git, scans no model folder,
asks Ollama nothing, and builds one CSRF token however many buttons it shows."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from admin import security
from common.background import NOT_REFRESHED
from common.sources import file_models, git_status, hf_models
from tests.fakes.model_files import hf_llm, provider_file
from tests.support.admin import logged_in_client, make_admin_app
from tests.support.env import free_port
from tests.support.git_repos import init_repo
from tests.support.waiting import eventually


@pytest.fixture
def counted(monkeypatch):
    """How many git commands, model-folder reads and CSRF forms the product made."""
    counts = {"git": 0, "hf": 0, "files": 0, "csrf_forms": 0}

    def wrap(module, name, key):
        real = getattr(module, name)

        def counting(*args, **kwargs):
            counts[key] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, counting)

    wrap(git_status, "run_git", "git")
    wrap(hf_models, "scan_hf_repo", "hf")
    wrap(file_models, "scan_dir", "files")
    real_form = security.CSRFForm

    class CountingForm(real_form):
        def __init__(self, *args, **kwargs):
            counts["csrf_forms"] += 1
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(security, "CSRFForm", CountingForm)
    return counts


@pytest.fixture
def admin(vm_env):
    vm_env["OLLAMA_API_BASE"] = f"http://127.0.0.1:{free_port()}"  # no Ollama
    for name in ("alpha", "beta", "gamma"):
        init_repo(Path(vm_env["WORDSLAB_WORKSPACE"]) / name)
    for i in range(3):
        hf_llm(vm_env, f"org/model-{i}")
        provider_file(vm_env, "torch", f"net-{i}.pth", b"\0" * 1024)
    app = make_admin_app(vm_env, view_modules=("jobs", "projects", "models", "endpoints"))
    ctx = app.extensions["wordslab"]
    client = logged_in_client(app)
    yield client, ctx
    ctx.sources.stop()
    ctx.jobs.shutdown()
    ctx.engine.dispose()


def test_list_pages_and_the_endpoint_form_scan_nothing_per_view(admin, counted):
    client, ctx = admin
    for url in ("/admin/projects/", "/admin/models/", "/admin/endpoints/new/"):
        client.get(url)  # the first view reads once and starts the watched sources
    # Every source's first read done (projects and models alike; Ollama, absent here, fails it)
    # before counting.
    assert eventually(lambda: all(s.snapshot().ok for s in ctx.sources.projects().sources))
    assert eventually(lambda: all(s.snapshot().error != NOT_REFRESHED for s in ctx.sources.models().sources))
    # ...and the file events of their start-up settled: no read for a second.
    last: dict = {}

    def settled() -> bool:
        now = {k: counted[k] for k in ("git", "hf", "files")}
        if now != last.get("seen"):
            last["seen"], last["since"] = now, time.monotonic()
        return time.monotonic() - last["since"] >= 1.0
    assert eventually(settled)
    before = dict(counted)
    projects = client.get("/admin/projects/").text
    models = client.get("/admin/models/").text
    form = client.get("/admin/endpoints/new/").text
    assert all(f'id="project-{n}"' in projects for n in ("alpha", "beta", "gamma"))
    assert all(f"org/model-{i}" in models and f"net-{i}.pth" in models for i in range(3))
    assert "org/model-0 (huggingface)" in form
    assert {k: counted[k] - before[k] for k in ("git", "hf", "files")} == {"git": 0, "hf": 0, "files": 0}


def test_one_csrf_token_per_page(admin, counted):
    client, _ = admin
    client.get("/admin/models/")
    for url in ("/admin/projects/", "/admin/models/"):
        counted["csrf_forms"] = 0
        page = client.get(url).text
        buttons = page.count('name="csrf_token"')
        assert buttons > 3  # a form per row and per action
        assert counted["csrf_forms"] == 1


def test_a_list_page_waits_for_an_action_between_its_change_and_its_re_read(admin, monkeypatch):
    """A clone renamed into place but not yet re-read: the page shown then lists it anyway."""
    import threading

    from admin import sources as admin_sources

    client, ctx = admin
    client.get("/admin/projects/")  # sources started
    page_waits = threading.Event()
    real_wait = admin_sources._Pending.wait

    def wait(self, timeout):
        page_waits.set()
        return real_wait(self, timeout)

    monkeypatch.setattr(admin_sources._Pending, "wait", wait)
    began = threading.Event()

    def action():
        with ctx.sources.change("projects") as change:
            change.begin()
            began.set()
            page_waits.wait(10)  # the page asked while the action was under way
            init_repo(Path(ctx.settings.workspace) / "delta")
            ctx.sources.projects().reread("delta")

    worker = threading.Thread(target=action)
    worker.start()
    assert began.wait(10)
    page = client.get("/admin/projects/").text
    worker.join(10)
    assert 'id="project-delta"' in page
