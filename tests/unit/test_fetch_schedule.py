"""Background `git fetch`: each project once per interval, in its own slot; real repos and remotes."""
from __future__ import annotations

import time
from pathlib import Path

from common.config import Settings
from common.sources.fetch_schedule import is_due, latest_slot
from exporter.collectors.projects import ProjectsCollector
from tests.support.git_repos import clone, git, make_remote, synced_at

INTERVAL = 900.0


def test_a_project_is_due_when_its_slot_came_since_it_last_synced():
    now = 1_800_000_000.0
    slot = latest_slot("demo", now, INTERVAL)
    assert now - INTERVAL < slot <= now
    assert is_due("demo", None, None, now, INTERVAL)  # never synced
    assert is_due("demo", slot - 1, None, now, INTERVAL)
    assert not is_due("demo", slot + 1, None, now, INTERVAL)  # synced (cloned, pulled) since
    assert not is_due("demo", slot - 1, slot + 1, now, INTERVAL)  # we tried since: failed, wait
    assert not is_due("demo", None, slot + 1, now, INTERVAL)
    # Never synced (git leaves no time on a clone): due at its first slot after the start.
    assert not is_due("demo", None, None, now, INTERVAL, watched_since=slot + 1)
    assert is_due("demo", None, None, now, INTERVAL, watched_since=slot - 1)


def test_no_project_waits_longer_than_the_interval():
    for name in ("a", "project-001", "ünïcode", "x" * 300):
        for synced in (0.0, 123.4, 899.9, 1_800_000_000.0):
            assert is_due(name, synced, None, synced + INTERVAL + 1e-3, INTERVAL)


def test_slots_of_200_projects_spread_over_the_interval():
    slots = sorted(latest_slot(f"project-{i:03d}", 10 * INTERVAL, INTERVAL) % INTERVAL for i in range(200))
    busiest = max(sum(1 for s in slots if start <= s < start + 30) for start in range(0, 900, 5))
    assert busiest <= 20  # an even spread puts about 7 in any 30 s; a burst would put 200


def _world(tmp_path: Path, vm_env: dict) -> tuple[Settings, dict[str, Path]]:
    settings = Settings.from_env(vm_env)
    remotes = tmp_path / "remotes"
    repos = {}
    for name in ("old", "fresh", "gone"):
        make_remote(remotes, name)
        repos[name] = clone(str(remotes / f"{name}.git"), settings.workspace / name)
    git(repos["gone"], "remote", "set-url", "origin", str(remotes / "missing.git"))
    for name in ("old", "gone"):
        synced_at(repos[name], time.time() - 2 * INTERVAL)
    return settings, repos


def test_only_projects_not_synced_within_the_interval_are_fetched_and_failures_wait(tmp_path, vm_env):
    settings, repos = _world(tmp_path, vm_env)
    collector = ProjectsCollector(settings)
    collector.status_source.refresh_now()
    fetched = collector.fetch_source.refresh_now()
    assert {name: r.ok for name, r in fetched.value.items()} == {"old": True, "gone": False}
    assert (repos["old"] / ".git" / "FETCH_HEAD").exists()
    # Cloned, never fetched: it waits for its slot, so a start-up fetches no burst of fresh clones.
    assert not (repos["fresh"] / ".git" / "FETCH_HEAD").exists()

    version = fetched.version
    collector.status_source.refresh_now()
    again = collector.fetch_source.refresh_now()
    # "gone" failed and "old" just synced: nothing is due until their next slots.
    assert (again.value, again.version) == (fetched.value, version)


def test_a_restart_does_not_fetch_again_what_was_just_fetched(tmp_path, vm_env):
    settings, repos = _world(tmp_path, vm_env)
    first = ProjectsCollector(settings)
    first.status_source.refresh_now()
    first.fetch_source.refresh_now()
    fetch_head = repos["old"] / ".git" / "FETCH_HEAD"
    stamp = fetch_head.stat().st_mtime_ns

    restarted = ProjectsCollector(settings)
    restarted.status_source.refresh_now()
    assert set(restarted.fetch_source.refresh_now().value) == {"gone"}  # its last try is forgotten
    assert fetch_head.stat().st_mtime_ns == stamp
