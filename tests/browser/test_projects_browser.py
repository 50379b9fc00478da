"""Projects in headless Chromium: clone from a loopback HTTP remote, watch the job, see the project
in the list and in a real exporter's /metrics, then delete it through the confirmation page."""
from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import expect

from exporter.collectors.projects import ProjectsCollector
from common.config import Settings
from tests.fakes.git_http import git_remote  # noqa: F401  (fixture)
from tests.support.admin_server import login
from tests.support.git_repos import make_remote
from tests.support.metrics import exporter_metrics_containing, scrape


def test_clone_list_metrics_and_delete(admin_server, page, screenshot, git_remote, tmp_path):
    url, workspace = admin_server.url, Path(admin_server.env["WORDSLAB_WORKSPACE"])
    make_remote(git_remote.root, "demo", {"README.md": "# demo\n", "train.py": "print('fit')\n"})
    login(page, admin_server)

    page.goto(url + "/admin/projects/")
    expect(page.locator("#projects")).to_contain_text("No git project in the workspace yet")
    page.click("#clone-link")
    expect(page).to_have_url(url + "/admin/projects/new/")

    page.fill("#url", "--upload-pack=touch /tmp/pwned")  # refused with a message, nothing started
    page.click("#clone-submit")
    expect(page.locator(".field-error")).to_contain_text("'--upload-pack' is a git command-line option")
    screenshot("clone-refused")

    page.fill("#url", git_remote.url("demo"))
    screenshot("clone-form")
    page.click("#clone-submit")
    expect(page).to_have_url(url + "/admin/jobs/")
    row = page.locator("table tbody tr", has_text=git_remote.url("demo"))
    expect(row.locator(".job-status")).to_have_text("done", timeout=30_000)
    expect(row.locator("td.col-message")).to_have_text(f"cloned {git_remote.url('demo')} into demo")
    screenshot("clone-done")

    page.goto(url + "/admin/projects/")
    project = page.locator("#project-demo")
    expect(project).to_contain_text(git_remote.url("demo"))
    expect(project.locator(".ahead-behind")).to_have_text("↑0 / ↓0")
    screenshot("listed")

    text = exporter_metrics_containing(admin_server.env, tmp_path, 'wordslab_project_info{')
    assert (f'wordslab_project_info{{git_url="{git_remote.url("demo")}",path="{workspace / "demo"}",'
            f'project="demo"}} 1.0') in text
    assert 'wordslab_project_commits_behind{project="demo"} 0.0' in text

    (workspace / "demo" / "results.csv").write_text("epoch,loss\n1,0.3\n")  # unsaved work
    project.locator("#delete-demo button").click()
    expect(page.locator("#loss")).to_contain_text("1 uncommitted file")
    expect(page.locator("#loss")).to_contain_text("results.csv")
    screenshot("confirm-delete")
    page.locator("#confirm-delete button").click()  # box not ticked: refused
    expect(page.locator("#delete-error")).to_contain_text("tick the box")
    assert (workspace / "demo").exists()

    page.locator("#confirm-delete input[name=confirm]").check()
    page.locator("#confirm-delete button").click()
    expect(page).to_have_url(url + "/admin/projects/")
    expect(page.locator(".alert")).to_contain_text(re.compile("Deleted project demo"))
    expect(page.locator("#project-demo")).to_have_count(0)
    assert not (workspace / "demo").exists()
    screenshot("deleted")

    collector = ProjectsCollector(Settings.from_env(admin_server.env))
    collector.status_source.refresh_now()
    assert scrape(collector).series("wordslab_project_info") == []
