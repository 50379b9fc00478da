"""Browser tests: the real admin (`python -m admin`) in a subprocess, driven by headless Chromium.

Fixtures for every domain's browser tests:

    from tests.support.admin_server import login

    def test_clone(admin_server_factory, page, screenshot):
        server = admin_server_factory(env={"GIT_TERMINAL_PROMPT": "0"})   # extra env before start
        login(page, server)
        page.goto(server.url + "/admin/projects/new/")
        ...
        screenshot("clone-form")        # test-artifacts/screenshots/<test>--clone-form.png

    def test_jobs(admin_server, logged_in_page): ...   # default server, page already logged in

The server (tests/support/admin_server.py AdminServer): .url (http://127.0.0.1:PORT), .env (the
VM env it runs with), .db_path, .root (the VM's tmp root), .password, .sessions() (SQLAlchemy
sessions on its DB, to put rows in or check them), .log() (its output so far).
Every test using `page` leaves a final screenshot, pass or fail (<test>--passed.png /
<test>--failed.png); the admin's log is copied to test-artifacts/logs/ when the test fails.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable

import pytest

from tests.support.admin_server import ADMIN_PASSWORD, AdminServer, login, start_admin
from tests.support.world import REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = REPO_ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"


@pytest.fixture
def admin_server_factory(tmp_path) -> Callable[..., AdminServer]:
    """Start real admin processes: factory(env=None, args=(), root=None, password=ADMIN_PASSWORD)."""
    servers: list[AdminServer] = []

    def start(env: dict[str, str] | None = None, args: tuple[str, ...] = (), root: Path | None = None,
              password: str = ADMIN_PASSWORD) -> AdminServer:
        server = start_admin(root or tmp_path / f"vm{len(servers)}", env=env, args=args, password=password)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def admin_server(admin_server_factory) -> AdminServer:
    return admin_server_factory()


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)  # lets the page fixture know whether the test failed
    return report


def _artifact_name(item) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{item.module.__name__.rsplit('.', 1)[-1]}__{item.name}")


@pytest.fixture
def page(chromium, request):
    """A fresh browser page; a screenshot of its last state is saved after the test, pass or fail."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    report = getattr(request.node, "report_call", None)
    outcome = "failed" if report is None or report.failed else "passed"
    name = _artifact_name(request.node)
    try:
        page.screenshot(path=str(SCREENSHOTS / f"{name}--{outcome}.png"), full_page=True)
    finally:
        context.close()
    if outcome == "failed":
        _keep_admin_logs(request, name)


def _keep_admin_logs(request, name: str) -> None:
    if "tmp_path" not in request.fixturenames:
        return
    logs = ARTIFACTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for i, log in enumerate(sorted(request.getfixturevalue("tmp_path").glob("*/admin.log"))):
        shutil.copy(log, logs / f"{name}-admin{i}.log")


@pytest.fixture
def screenshot(page, request) -> Callable[[str], Path]:
    """screenshot("step") saves test-artifacts/screenshots/<test>--step.png now."""
    def take(step: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{_artifact_name(request.node)}--{re.sub(r'[^A-Za-z0-9_.-]+', '_', step)}.png"
        page.screenshot(path=str(path), full_page=True)
        return path
    return take


@pytest.fixture
def logged_in_page(page, admin_server):
    login(page, admin_server)
    return page


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)
