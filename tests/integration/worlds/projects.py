"""Git projects for the integration world: a loopback HTTP remote and one project per state.

synced, behind (1 commit to pull once the exporter's background fetch ran), ahead (2 to
push), changed (3 changed files) and local (no remote), so every projects panel has data.
"""
from __future__ import annotations

from tests.fakes.git_http import git_http_handler
from tests.support.git_repos import sample_projects
from tests.support.world import World


def build(world: World) -> None:
    remotes = world.root / "git-remotes"
    remotes.mkdir(parents=True, exist_ok=True)
    base_url = world.serve(git_http_handler(remotes))
    sample_projects(world.workspace, remotes, lambda name: f"{base_url}/{name}.git")
