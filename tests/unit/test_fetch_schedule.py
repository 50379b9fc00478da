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


def test_a_time_ahead_of_the_clock_does_not_hold_a_project_back():
    """The clock set back (or FETCH_HEAD dated in the future): that time counts as none."""
    now = 1_800_000_000.0
    slot = latest_slot("demo", now, INTERVAL)
    assert is_due("demo", now + 86400, None, now, INTERVAL, watched_since=slot - 1)
    assert is_due("demo", None, now + 86400, now, INTERVAL)
    assert not is_due("demo", now + 86400, slot + 1, now, INTERVAL)  # a real attempt since still counts


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
    synced_at(repos["fresh"], time.time())  # pulled a moment ago
    return settings, repos


def _running(settings: Settings, for_seconds: float) -> ProjectsCollector:
    """The projects collector of an exporter started `for_seconds` ago, its projects read."""
    collector = ProjectsCollector(settings)
    collector.tracker.watched_since -= for_seconds
    collector.status_source.refresh_now()
    return collector


def test_only_projects_not_synced_within_the_interval_are_fetched_and_failures_wait(tmp_path, vm_env):
    settings, repos = _world(tmp_path, vm_env)
    collector = _running(settings, 2 * INTERVAL)
    fetched = collector.fetch_source.refresh_now()
    assert {name: r.ok for name, r in fetched.value.items()} == {"old": True, "gone": False}
    assert (repos["old"] / ".git" / "FETCH_HEAD").exists()
    assert not (repos["fresh"] / ".git" / "FETCH_HEAD").exists()  # synced since its slot

    version = fetched.version
    collector.status_source.refresh_now()
    again = collector.fetch_source.refresh_now()
    # "gone" failed and "old" just synced: nothing is due until their next slots.
    assert (again.value, again.version) == (fetched.value, version)


def test_a_start_fetches_no_burst_and_every_project_within_one_interval(tmp_path, vm_env):
    settings, repos = _world(tmp_path, vm_env)
    started = _running(settings, 0)
    assert started.fetch_source.refresh_now().value == {}  # all due since long, none fetched at start
    assert not (repos["old"] / ".git" / "FETCH_HEAD").exists()
    # One interval later every project's slot came once: each is fetched (the failing one fails).
    fetched = started.tracker.fetch_due(INTERVAL, now=time.time() + INTERVAL)
    assert {name: r.ok for name, r in fetched.items()} == {"old": True, "fresh": True, "gone": False}
