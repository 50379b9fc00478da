"""ProjectsCollector over a real workspace: every sync state, a corrupt repo, promtool-clean output."""
from __future__ import annotations

import shutil
import time

import pytest

from exporter.collectors.projects import ProjectsCollector
from common.config import Settings
from tests.support.git_repos import git, sample_projects, synced_at
from tests.support.metrics import promtool_problems, scrape


@pytest.fixture
def world(tmp_path, vm_env):
    settings = Settings.from_env(vm_env)
    remotes = tmp_path / "remotes"
    projects = sample_projects(settings.workspace, remotes, lambda name: str(remotes / f"{name}.git"))
    bad = settings.workspace / "corrupt"
    shutil.copytree(projects["local"], bad)
    (bad / ".git" / "HEAD").write_text("garbage\n")
    return settings, projects


def refreshed(settings) -> ProjectsCollector:
    """The collector once its projects, last synced a day ago, were read, fetched and read again."""
    for repo in settings.workspace.iterdir() if settings.workspace else ():
        if "[remote" in (repo / ".git" / "config").read_text():
            synced_at(repo, time.time() - 86400)
    collector = ProjectsCollector(settings)
    collector.tracker.watched_since -= 86400  # as if it had run for a day: every project is due
    collector.status_source.refresh_now()  # the projects the fetch finds due
    collector.fetch_source.refresh_now()
    for source in collector.sources:  # ahead/behind as of that fetch
        source.refresh_now()
    return collector


def test_metrics_for_every_project_state(world):
    settings, projects = world
    samples = scrape(refreshed(settings))
    ws = settings.workspace

    assert samples.value("wordslab_collector_success", collector="projects") == 1.0
    assert samples.value("wordslab_project_info", project="behind", path=str(ws / "behind"),
                 git_url=str(ws.parent / "remotes" / "behind.git")) == 1.0
    assert samples.value("wordslab_project_commits_behind", project="behind") == 1.0
    assert samples.value("wordslab_project_commits_ahead", project="behind") == 0.0
    assert samples.value("wordslab_project_commits_ahead", project="ahead") == 2.0
    assert samples.value("wordslab_project_changed_files", project="changed") == 3.0
    assert samples.value("wordslab_project_changed_files", project="synced") == 0.0
    assert samples.value("wordslab_project_fetch_success", project="synced") == 1.0
    for name in ("synced", "behind", "ahead", "changed", "local", "corrupt"):
        assert samples.value("wordslab_project_size_bytes", project=name) > 0
        assert samples.value("wordslab_project_last_modified_timestamp_seconds", project=name) > 0
    for name in ("synced", "behind", "ahead", "changed"):
        assert samples.value("wordslab_project_last_sync_timestamp_seconds", project=name) > 0
    head = float(git(projects["ahead"], "log", "-1", "--format=%ct"))
    assert samples.value("wordslab_project_last_commit_timestamp_seconds", project="ahead") == head
    assert samples.value("wordslab_project_branch_info", project="ahead", branch="main",
                 upstream="origin/main") == 1.0

    # No remote: clear state, no ahead/behind/sync series rather than fake zeros.
    assert samples.value("wordslab_project_status", project="local", status="no_remote") == 1.0
    assert samples.value("wordslab_project_status", project="local", status="tracking") is None
    assert samples.value("wordslab_project_status", project="ahead", status="tracking") == 1.0
    assert samples.value("wordslab_project_commits_behind", project="local") is None
    assert samples.value("wordslab_project_last_sync_timestamp_seconds", project="local") is None
    assert samples.value("wordslab_project_changed_files", project="local") == 0.0


def test_corrupt_and_detached_repos_show_as_states_not_failed_scrape(world):
    settings, projects = world
    git(projects["synced"], "checkout", "-q", "--detach", "HEAD")
    samples = scrape(refreshed(settings))
    assert samples.value("wordslab_collector_success", collector="projects") == 1.0
    assert samples.value("wordslab_project_status", project="corrupt", status="error") == 1.0
    assert samples.value("wordslab_project_changed_files", project="corrupt") is None
    assert samples.value("wordslab_project_status", project="synced", status="detached") == 1.0
    assert samples.value("wordslab_project_commits_ahead", project="synced") is None
    assert samples.value("wordslab_project_branch_info", project="synced", branch="",
                 upstream="") == 1.0
    assert samples.value("wordslab_project_commits_behind", project="behind") == 1.0


def test_vanished_project_disappears_and_credentials_never_shown(world):
    settings, projects = world
    collector = refreshed(settings)
    git(projects["synced"], "remote", "set-url", "origin",
        "https://oauth2:glpat-S3CRET@gitlab.example/team/synced.git")
    shutil.rmtree(projects["changed"])
    collector.status_source.refresh_now()
    samples = scrape(collector)
    assert "S3CRET" not in samples.text and "oauth2" not in samples.text
    assert samples.value("wordslab_project_info", project="synced", path=str(projects["synced"]),
                 git_url="https://gitlab.example/team/synced.git") == 1.0
    assert 'project="changed"' not in samples.text  # also drops its size from the older files snapshot
    assert samples.value("wordslab_project_fetch_success", project="synced") == 1.0  # fetched before


def test_scrape_before_first_refresh_and_without_workspace(vm_env):
    samples = scrape(ProjectsCollector(Settings.from_env(vm_env)))
    assert samples.value("wordslab_collector_success", collector="projects") == 1.0
    assert samples.value("wordslab_source_refresh_success", source="projects_status") == 0.0

    env = {k: v for k, v in vm_env.items() if k != "WORDSLAB_WORKSPACE"}
    collector = refreshed(Settings.from_env(env))
    samples = scrape(collector)
    assert samples.value("wordslab_source_refresh_success", source="projects_status") == 1.0
    assert not any(sample.name.startswith("wordslab_project_") for sample in samples.samples)


def test_fetch_interval_zero_turns_background_fetch_off(vm_env):
    collector = ProjectsCollector(Settings.from_env(vm_env, git_fetch_interval_seconds=0))
    assert [s.name for s in collector.sources] == ["projects_status", "projects_files"]


def test_exposition_passes_promtool(world):
    settings, _ = world
    assert promtool_problems(scrape(refreshed(settings)).text) == ""
