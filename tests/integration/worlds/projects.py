"""Git projects for the integration world: a loopback HTTP remote and one project per state.

synced, behind (1 commit to pull: fetched, as its user did, so git status knows it), ahead (2
to push), changed (3 changed files) and local (no remote), so every projects panel has data.
The exporter fetches each project at its slot of --git-fetch-interval after it starts: 2 s
here, so the fetch column has data within the test's first seconds (15 minutes by default).
"""
from __future__ import annotations

from tests.fakes.git_http import git_http_handler
from tests.support.git_repos import git, sample_projects
from tests.support.world import World


def build(world: World) -> None:
    world.env["WORDSLAB_GIT_FETCH_INTERVAL_SECONDS"] = "2"
    remotes = world.root / "git-remotes"
    remotes.mkdir(parents=True, exist_ok=True)
    base_url = world.serve(git_http_handler(remotes))
    projects = sample_projects(world.workspace, remotes, lambda name: f"{base_url}/{name}.git")
    for name in ("synced", "behind"):
        git(projects[name], "fetch", "-q")
