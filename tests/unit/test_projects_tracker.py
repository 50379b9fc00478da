"""Projects kept fresh by real inotify events on real git repos: only the changed project is read
again, with one `git status`; running out of watches falls back to polling and says so."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest
from watchdog.observers import Observer

from common.config import Settings
from common.sources import git_status
from common.sources.projects_tracker import BUSY_FACTOR, ProjectsTracker
from exporter.collectors.projects import ProjectsCollector
from tests.support.git_repos import commit, git, init_repo
from tests.support.metrics import scrape
from tests.support.waiting import eventually
from tests.support.watch_limits import ExhaustedWhileHeld



@pytest.fixture
def git_calls(monkeypatch):
    """Every git command the product runs, as (project, command) pairs."""
    calls: list[tuple[str, str]] = []
    real = git_status.run_git

    def counting(repo, *args, **kwargs):
        calls.append((repo.name if repo else "", args[0]))
        return real(repo, *args, **kwargs)

    monkeypatch.setattr(git_status, "run_git", counting)
    return calls


@pytest.fixture
def workspace(vm_env):
    ws = Settings.from_env(vm_env).workspace
    init_repo(ws / "alpha")
    init_repo(ws / "beta")
    (ws / ".wordslab-dashboard").mkdir(exist_ok=True)
    return ws


def tracker_for(ws, **kwargs):
    kwargs = {"sweep_seconds": 3600.0, "polling_seconds": 30.0, "files_polling_seconds": 120.0, **kwargs}
    return ProjectsTracker(ws, os.environ, **kwargs)


def test_an_edit_rereads_only_that_project_with_one_git_status(workspace, git_calls):
    tracker = tracker_for(workspace)
    tracker.start()
    try:
        assert eventually(lambda: set(tracker.statuses()) == {"alpha", "beta"} and set(tracker.files()) == {"alpha", "beta"})
        before_size = tracker.files()["alpha"].size_bytes
        git_calls.clear()
        (workspace / "alpha" / "notes.txt").write_bytes(b"x" * 65536)
        assert eventually(lambda: tracker.statuses()["alpha"].branch.changed == ("notes.txt",))
        assert eventually(lambda: tracker.files()["alpha"].size_bytes >= before_size + 65536)
        assert git_calls and set(git_calls) == {("alpha", "status")}  # no config, no log, no beta

        git_calls.clear()
        oid = commit(workspace / "alpha", "notes.txt", "committed\n")
        assert eventually(lambda: tracker.statuses()["alpha"].branch.oid == oid
                          and tracker.statuses()["alpha"].branch.changed == ())
        # A new HEAD: its commit time is asked once; the remotes (config unchanged) are not.
        assert {c for _, c in git_calls} <= {"status", "log"} and ("alpha", "log") in git_calls
        assert {p for p, _ in git_calls} == {"alpha"}
        assert tracker.watch_mode() == "inotify"
    finally:
        tracker.stop()


def test_an_edit_elsewhere_does_not_reread_a_project_whose_name_is_not_utf8(workspace, git_calls):
    """Projects are listed by their readable name (caf\\xe9) but found on disk by their own
    (surrogate-escaped): compared as they were, such a project looked new at every refresh."""
    odd = init_repo(workspace / os.fsdecode(b"caf\xe9-notes"), {"README.md": "# notes\n"})
    tracker = tracker_for(workspace)
    tracker.start()
    try:
        assert eventually(lambda: len(tracker.statuses()) == 3 and len(tracker.files()) == 3)
        git_calls.clear()
        (workspace / "alpha" / "notes.txt").write_text("x\n")
        assert eventually(lambda: tracker.statuses()["alpha"].branch.changed == ("notes.txt",))
        assert set(git_calls) == {("alpha", "status")}
        (odd / "more.txt").write_text("y\n")  # and its own edits are still seen
        assert eventually(lambda: tracker.statuses()["caf\\xe9-notes"].branch.changed == ("more.txt",))
    finally:
        tracker.stop()


def test_a_project_costly_to_read_is_read_again_at_its_own_pace_not_at_each_event(workspace):
    """Files changing all the time in a big project (a training run logging into a 100k-file
    tree) made a whole walk of it per event; now a project is read again no sooner than
    BUSY_FACTOR times what its last read took, then without waiting for another event."""
    tracker = tracker_for(workspace)
    tracker.start()
    try:
        assert eventually(lambda: set(tracker.files()) == {"alpha", "beta"})
        sizes = {name: files.size_bytes for name, files in tracker.files().items()}
        reads = tracker._reads[tracker.files_source]
        reads["alpha"] = (time.monotonic(), 60.0)  # as if walking alpha had just taken a minute
        (workspace / "alpha" / "log.txt").write_bytes(b"x" * 65536)
        (workspace / "beta" / "log.txt").write_bytes(b"x" * 65536)  # its event comes after alpha's
        assert eventually(lambda: tracker.files()["beta"].size_bytes >= sizes["beta"] + 65536)
        assert tracker.files()["alpha"].size_bytes == sizes["alpha"]  # held back, not forgotten

        reads["alpha"] = (time.monotonic() - BUSY_FACTOR * 60.0 + 1.0, 60.0)  # its turn in a second
        (workspace / "beta" / "log.txt").write_bytes(b"y" * 131072)  # a refresh that sees it
        assert eventually(lambda: tracker.files()["alpha"].size_bytes >= sizes["alpha"] + 65536)
    finally:
        tracker.stop()


def test_a_sweep_asks_again_for_status_but_not_for_known_commit_times(workspace, git_calls):
    """A commit's time never changes: the sweep runs `git status` per project, not `git log`
    again, and `git config` once for the config every project shares (none per project)."""
    tracker = tracker_for(workspace, watch=False)
    tracker.sweep_now()
    times = {name: status.last_commit for name, status in tracker.statuses().items()}
    git_calls.clear()
    tracker.sweep_now()
    assert sorted(git_calls) == [("", "config"), ("alpha", "status"), ("beta", "status")]
    assert {name: status.last_commit for name, status in tracker.statuses().items()} == times
    oid = commit(workspace / "alpha", "later.txt", "later\n")
    git_calls.clear()
    tracker.sweep_now()
    assert ("alpha", "log") in git_calls and ("beta", "log") not in git_calls
    assert tracker.statuses()["alpha"].branch.oid == oid
    assert tracker.statuses()["alpha"].last_commit == float(git(workspace / "alpha", "log", "-1", "--format=%ct"))


@pytest.fixture
def home_env(workspace, vm_env):
    """The tracker's environment with its own HOME (so its own global git config), no system config."""
    return {**os.environ, "HOME": vm_env["HOME"], "GIT_CONFIG_NOSYSTEM": "1",
            "XDG_CONFIG_HOME": os.path.join(vm_env["HOME"], ".config")}


def urls(tracker):
    return {name: status.git_url for name, status in tracker.statuses().items()}


def test_a_sweep_sees_remote_urls_changed_where_no_event_tells(workspace, home_env, git_calls, tmp_path):
    """The sweep is the safety net for what no file event in the workspace tells: a global git
    config (url in ~/.gitconfig), a file included by a project's config or by the global one.
    Each kind changes the URL shown at the next sweep; a sweep with none asks no project again."""
    for name in ("alpha", "beta"):
        git(workspace / name, "remote", "add", "origin", f"https://example.invalid/{name}.git")
    gitconfig = os.path.join(home_env["HOME"], ".gitconfig")
    tracker = ProjectsTracker(workspace, home_env, sweep_seconds=3600.0, polling_seconds=30.0,
                              files_polling_seconds=120.0, watch=False)
    tracker.sweep_now()
    tracker.sweep_now()  # the shared config is known from here on
    assert urls(tracker) == {"alpha": "https://example.invalid/alpha.git", "beta": "https://example.invalid/beta.git"}

    # 1. The global config gains a remote: every project asked again, once.
    with open(gitconfig, "w") as f:
        f.write('[remote "mirror"]\n\turl = https://mirror.invalid/all.git\n')
    git_calls.clear()
    tracker.sweep_now()
    assert sorted(c for c in git_calls if c[1] == "config") == [("", "config"), ("alpha", "config"), ("beta", "config")]
    git_calls.clear()
    tracker.sweep_now()
    assert [c for c in git_calls if c[1] == "config"] == [("", "config")]

    # 2. A project's config includes a file: that project is asked again at every sweep, so a
    #    URL changed in the included file shows at the next one.
    included = tmp_path / "alpha-remote.cfg"
    git(workspace / "alpha", "remote", "remove", "origin")
    git(workspace / "alpha", "config", "include.path", str(included))
    asked = url_moved_in(included, tracker, "alpha", git_calls)
    assert asked == [("", "config"), ("alpha", "config")]

    # 3. The global config includes a file only for some repos (includeIf): all asked each sweep.
    conditional = tmp_path / "beta-only.cfg"
    git(workspace / "beta", "remote", "remove", "origin")
    with open(gitconfig, "a") as f:
        f.write(f'[includeIf "gitdir:{workspace / "beta"}/"]\n\tpath = {conditional}\n')
    asked = url_moved_in(conditional, tracker, "beta", git_calls)
    assert asked == [("", "config"), ("alpha", "config"), ("beta", "config")]


def url_moved_in(included, tracker, name, git_calls) -> list[tuple[str, str]]:
    """Origin's URL set in an included file, then changed there (no other file touched): each
    shows at the next sweep. The `git config` calls of the second sweep."""
    for host in ("first", "second"):
        included.write_text(f'[remote "origin"]\n\turl = https://{host}.invalid/{name}.git\n')
        git_calls.clear()
        tracker.sweep_now()
        assert urls(tracker)[name] == f"https://{host}.invalid/{name}.git"
    return sorted(c for c in git_calls if c[1] == "config")


def test_a_linked_worktree_keeps_its_remote_urls_until_the_shared_config_changes(workspace, git_calls):
    """A linked worktree's config is its main repo's (commondir): read once, again when it changes."""
    git(workspace / "alpha", "remote", "add", "origin", "https://example.invalid/alpha.git")
    linked = workspace / "alpha-linked"
    git(workspace / "alpha", "worktree", "add", "-q", "-b", "side", str(linked))
    cache = git_status.RepoCache()
    env = git_status.git_env()
    assert cache.remote_urls(linked, env) == {"origin": "https://example.invalid/alpha.git"}
    git_calls.clear()
    assert cache.remote_urls(linked, env) == {"origin": "https://example.invalid/alpha.git"}
    assert git_calls == []
    git(workspace / "alpha", "remote", "set-url", "origin", "https://example.invalid/moved.git")
    assert cache.remote_urls(linked, env) == {"origin": "https://example.invalid/moved.git"}


def test_a_remote_url_changed_in_a_file_the_project_includes_shows_with_its_event(workspace):
    """A project's config may include a file kept in its own tree (`include.path =
    ../.gitconfig`, a config shipped with the repo): editing it is an event in the project, but
    the remote URLs were cached by the project's own config file, unchanged, so the old URL
    stayed until the 15-minute sweep."""
    shipped = workspace / "alpha" / ".gitconfig"
    shipped.write_text('[remote "origin"]\n\turl = https://first.invalid/alpha.git\n')
    git(workspace / "alpha", "config", "include.path", "../.gitconfig")
    tracker = tracker_for(workspace)
    tracker.start()
    try:
        assert eventually(lambda: urls(tracker).get("alpha") == "https://first.invalid/alpha.git")
        shipped.write_text('[remote "origin"]\n\turl = https://second.invalid/alpha.git\n')
        assert eventually(lambda: urls(tracker)["alpha"] == "https://second.invalid/alpha.git")
    finally:
        tracker.stop()


def test_a_global_git_config_or_excludes_file_edited_shows_without_waiting_for_the_sweep(workspace, home_env):
    """The global excludes file decides what every project lists as untracked, and a malformed
    ~/.gitconfig makes every project an error: no event in the workspace tells of either, so
    an edit (or the fix) showed only at the 15-minute sweep. Their folders are watched too."""
    ignore = os.path.join(home_env["XDG_CONFIG_HOME"], "git", "ignore")
    os.makedirs(os.path.dirname(ignore))
    (workspace / "alpha" / "scratch.log").write_text("x\n")
    tracker = ProjectsTracker(workspace, home_env, sweep_seconds=3600.0, polling_seconds=30.0,
                              files_polling_seconds=120.0)
    tracker.start()
    try:
        assert eventually(lambda: "alpha" in tracker.statuses()
                          and tracker.statuses()["alpha"].branch.untracked == ("scratch.log",))
        with open(ignore, "w") as f:
            f.write("*.log\n")
        assert eventually(lambda: tracker.statuses()["alpha"].branch.untracked == ())
        gitconfig = os.path.join(home_env["HOME"], ".gitconfig")
        with open(gitconfig, "w") as f:
            f.write("[broken\n")
        assert eventually(lambda: {s.state for s in tracker.statuses().values()} == {"error"})
        with open(gitconfig, "w") as f:
            f.write('[remote "origin"]\n\turl = https://example.invalid/shared.git\n')
        assert eventually(lambda: urls(tracker) == {"alpha": "https://example.invalid/shared.git",
                                                    "beta": "https://example.invalid/shared.git"})
    finally:
        tracker.stop()


def test_a_global_config_broken_then_mended_shows_at_the_next_sweeps(workspace, home_env):
    """git cannot read a malformed ~/.gitconfig: every project shows git's error; once mended,
    the next sweep reads them all again, remote URLs included."""
    tracker = ProjectsTracker(workspace, home_env, sweep_seconds=3600.0, polling_seconds=30.0,
                              files_polling_seconds=120.0, watch=False)
    tracker.sweep_now()
    tracker.sweep_now()
    assert {status.state for status in tracker.statuses().values()} == {"no_remote"}
    gitconfig = os.path.join(home_env["HOME"], ".gitconfig")
    with open(gitconfig, "w") as f:
        f.write("[broken\n")
    tracker.sweep_now()
    assert {status.state for status in tracker.statuses().values()} == {"error"}
    assert "bad config line 1" in tracker.statuses()["alpha"].error
    with open(gitconfig, "w") as f:
        f.write('[remote "origin"]\n\turl = https://example.invalid/shared.git\n')
    tracker.sweep_now()
    assert urls(tracker) == {"alpha": "https://example.invalid/shared.git", "beta": "https://example.invalid/shared.git"}


def test_while_polling_a_fetch_rereads_the_fetched_project_not_all(workspace, git_calls, tmp_path):
    """Watches gone, a sweep comes every polling interval; a background fetch in between asks
    for a re-read of the projects it fetched (their commits behind may have changed), never
    another sweep of every project (one each fetch round, a minute apart, before)."""
    remote = tmp_path / "remote.git"
    git(None, "clone", "-q", "--bare", str(workspace / "alpha"), str(remote))
    git(workspace / "alpha", "remote", "add", "origin", str(remote))
    git(workspace / "alpha", "fetch", "-q", "origin")
    git(workspace / "alpha", "branch", "-q", "--set-upstream-to", "origin/main")
    tracker = tracker_for(workspace, watch=False, polling_seconds=3600.0)
    tracker.start()
    try:
        assert eventually(lambda: set(tracker.statuses()) == {"alpha", "beta"})
        pusher = tmp_path / "pusher"
        git(None, "clone", "-q", str(remote), str(pusher))
        commit(pusher, "new.txt", "from elsewhere\n")
        git(pusher, "push", "-q", "origin", "main")
        git_calls.clear()
        assert tracker.fetch_all()["alpha"].ok
        assert eventually(lambda: tracker.statuses()["alpha"].branch.behind == 1)
        time.sleep(1.0)  # DEBOUNCE_SECONDS and then some: no other read follows
        assert ("beta", "status") not in git_calls and ("alpha", "status") in git_calls
        assert tracker.watch_mode() == "polling"
    finally:
        tracker.stop()


def test_a_fetch_between_polls_does_not_push_the_next_poll_back(workspace):
    """Polling (watches gone), the source waited a whole interval after every refresh, also
    after the re-read a fetch round asks for (a minute apart): an edit showed after up to two
    intervals (59.6 s measured at 30 s), not one. The wait after such a refresh is what is left."""
    tracker = tracker_for(workspace, watch=False, polling_seconds=3600.0)
    tracker.start()
    try:
        assert eventually(lambda: set(tracker.statuses()) == {"alpha", "beta"})
        assert tracker.status_source.interval_seconds == 3600.0
        refreshed = tracker.status_source.snapshot().refreshed_at
        tracker.status_source.request_refresh()  # as a fetch round does while polling
        assert eventually(lambda: tracker.status_source.snapshot().refreshed_at != refreshed)
        assert tracker.status_source.interval_seconds < 3600.0
    finally:
        tracker.stop()


def test_projects_appear_and_disappear_with_the_directories(workspace):
    tracker = tracker_for(workspace)
    tracker.start()
    try:
        assert eventually(lambda: set(tracker.statuses()) == {"alpha", "beta"})
        init_repo(workspace / "gamma")
        assert eventually(lambda: "gamma" in tracker.statuses() and "gamma" in tracker.files())
        shutil.rmtree(workspace / "beta")
        assert eventually(lambda: "beta" not in tracker.statuses() and "beta" not in tracker.files())
        os.rename(workspace / "alpha", workspace / "renamed")
        assert eventually(lambda: set(tracker.statuses()) == {"gamma", "renamed"})
    finally:
        tracker.stop()


def test_what_is_kept_about_projects_that_went_is_forgotten(workspace):
    """A script making and removing throwaway repos in the workspace: the tracker kept each
    one's remote URLs, commit time and read times for the rest of its life."""
    tracker = tracker_for(workspace)
    tracker.start()
    try:
        for i in range(3):
            init_repo(workspace / f"tmp-{i}")
            assert eventually(lambda: f"tmp-{i}" in tracker.statuses() and f"tmp-{i}" in tracker.files())
            shutil.rmtree(workspace / f"tmp-{i}")
            assert eventually(lambda: set(tracker.statuses()) == set(tracker.files()) == {"alpha", "beta"})
        assert tracker.cache.repos() == {workspace / "alpha", workspace / "beta"}
        assert all(set(reads) == {"alpha", "beta"} for reads in tracker._reads.values())
    finally:
        tracker.stop()


def test_touch_and_chmod_alone_are_seen(workspace):
    """Only an attribute event (IN_ATTRIB) comes for `touch` or `chmod`: the newest
    modification time moves, and an executable bit is a change git reports."""
    tracker = tracker_for(workspace)
    tracker.start()
    try:
        assert eventually(lambda: "alpha" in tracker.files() and "alpha" in tracker.statuses())
        before = tracker.files()["alpha"].last_modified
        tracked = next(p for p in (workspace / "alpha").iterdir() if p.is_file())
        later = before + 100
        os.utime(tracked, (later, later))
        assert eventually(lambda: tracker.files()["alpha"].last_modified == later)
        os.chmod(tracked, 0o755)
        assert eventually(lambda: tracker.statuses()["alpha"].branch.changed == (tracked.name,))
    finally:
        tracker.stop()


def test_a_project_linked_into_the_workspace_is_watched_through_its_link(workspace, tmp_path):
    """A symlink to a repo elsewhere is a project (discover_projects follows it); the recursive
    watch does not follow links, so its target is watched too and its events count for the link."""
    target = init_repo(tmp_path / "elsewhere" / "real")
    os.symlink(target, workspace / "linked")
    tracker = tracker_for(workspace)
    tracker.start()
    try:
        assert eventually(lambda: "linked" in tracker.statuses() and "linked" in tracker.files())
        before = tracker.files()["linked"].size_bytes
        (target / "notes.txt").write_bytes(b"x" * 65536)
        assert eventually(lambda: tracker.statuses()["linked"].branch.changed == ("notes.txt",))
        assert eventually(lambda: tracker.files()["linked"].size_bytes >= before + 65536)
        # A link made while running is watched as well.
        other = init_repo(tmp_path / "elsewhere" / "other")
        os.symlink(other, workspace / "later")
        assert eventually(lambda: "later" in tracker.statuses())
        (other / "more.txt").write_text("more\n")
        assert eventually(lambda: tracker.statuses()["later"].branch.changed == ("more.txt",))
        # A link to another project of the workspace: an edit there counts for both names.
        os.symlink(workspace / "alpha", workspace / "alias")
        assert eventually(lambda: "alias" in tracker.statuses())
        (workspace / "alpha" / "both.txt").write_text("both\n")
        assert eventually(lambda: tracker.statuses()["alpha"].branch.changed == ("both.txt",)
                          and tracker.statuses()["alias"].branch.changed == ("both.txt",))
        # A link pointed elsewhere while running: its new target is watched instead.
        third = init_repo(tmp_path / "elsewhere" / "third")
        os.symlink(third, workspace / ".retarget")
        os.replace(workspace / ".retarget", workspace / "later")
        assert eventually(lambda: tracker.statuses()["later"].branch.changed == ())
        (third / "third.txt").write_text("3\n")
        assert eventually(lambda: tracker.statuses()["later"].branch.changed == ("third.txt",))
    finally:
        tracker.stop()


def test_a_project_whose_git_dir_is_elsewhere_sees_staging_and_commits(workspace, tmp_path):
    """A linked worktree (`git worktree add`), a repo made with `--separate-git-dir` and a
    submodule checkout have a `.git` file: their index, HEAD and refs live in a git dir outside
    the project's tree (or inside another project's .git). `git add` and `git commit` change
    only that git dir, so they showed only at the 15-minute sweep."""
    main = init_repo(tmp_path / "elsewhere" / "main")
    git(main, "worktree", "add", "-q", "-b", "side", str(workspace / "outside-wt"))
    git(workspace / "alpha", "worktree", "add", "-q", "-b", "side", str(workspace / "inside-wt"))
    (tmp_path / "gitdirs").mkdir()
    git(None, "init", "-q", "-b", "main", "--separate-git-dir", str(tmp_path / "gitdirs" / "sep"),
        str(workspace / "separate"))
    commit(workspace / "separate", "README.md", "# separate\n")
    names = ("outside-wt", "inside-wt", "separate")
    tracker = tracker_for(workspace)
    tracker.start()
    try:
        assert eventually(lambda: set(names) <= set(tracker.statuses()))
        for name in names:
            (workspace / name / "work.txt").write_text("work\n")  # an event in the project's own tree
        assert eventually(lambda: all(tracker.statuses()[n].branch.untracked == ("work.txt",) for n in names))
        for name in names:
            git(workspace / name, "add", "work.txt")  # only the index (in the git dir) changes
        assert eventually(lambda: all(tracker.statuses()[n].branch.staged == ("work.txt",) for n in names))
        for name in names:
            git(workspace / name, "commit", "-q", "-m", "work")  # index, HEAD's branch ref, logs
        assert eventually(lambda: all(tracker.statuses()[n].branch.changed == () and
                                      tracker.statuses()[n].branch.oid == git(workspace / n, "rev-parse", "HEAD").strip()
                                      for n in names))
    finally:
        tracker.stop()


def test_links_are_looked_for_again_only_when_the_workspace_itself_changes(workspace, tmp_path, monkeypatch):
    """Each refresh listed the workspace for symlinked projects; an edit inside a project
    cannot add or move a link, so only a change of the workspace's entries (or the sweep) does."""
    tracker = tracker_for(workspace)
    looks = []
    real = tracker._watch_links
    monkeypatch.setattr(tracker, "_watch_links", lambda: (looks.append(1), real()))
    tracker.start()
    try:
        assert eventually(lambda: set(tracker.statuses()) == {"alpha", "beta"} and set(tracker.files()) == {"alpha", "beta"})
        time.sleep(1.0)
        looks.clear()
        for i in range(3):
            (workspace / "alpha" / f"edit-{i}.txt").write_text("x\n")
            assert eventually(lambda: len(tracker.statuses()["alpha"].branch.changed) == i + 1)
        assert looks == []
        os.symlink(init_repo(tmp_path / "elsewhere" / "real"), workspace / "linked")
        assert eventually(lambda: "linked" in tracker.statuses())
        assert looks
    finally:
        tracker.stop()


def test_what_an_event_marks(workspace):
    tracker = tracker_for(workspace, watch=False)
    marks = tracker._status_marks, tracker._files_marks
    for m in marks:
        m.take()

    def marked(path):
        tracker._on_change(str(workspace / path))
        return tuple(sorted(m.names) for m in marks), sorted(marks[0].sync_only)

    assert marked(".wordslab-dashboard/dashboard.db-wal") == (([], []), [])  # app data: ignored
    assert marked("alpha/.git/index.lock") == (([], []), [])  # the rename onto index follows
    assert marked("alpha/.git/objects/ab/cdef") == (([], ["alpha"]), [])  # sizes only
    assert marked("alpha/.git/FETCH_HEAD") == (([], ["alpha"]), ["alpha"])  # last sync time only
    assert marked("beta/.git/refs/heads/main") == ((["beta"], ["alpha", "beta"]), ["alpha"])
    for m in marks:
        m.take()
    assert marked("beta/src/app.py") == ((["beta"], ["beta"]), [])
    assert marked("beta/.git/HEAD") == ((["beta"], ["beta"]), [])


class _ExhaustedObserver(Observer):
    """The kernel refusing a watch, as inotify_add_watch does past max_user_watches."""

    def schedule(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "inotify watch limit reached")


def test_out_of_watches_falls_back_to_polling_and_says_so(vm_env, workspace):
    settings = Settings.from_env(vm_env)
    collector = ProjectsCollector(settings)
    collector.tracker.watcher._observer_factory = _ExhaustedObserver
    for source in collector.sources:
        source.refresh_now()
    result = scrape(collector)
    assert collector.tracker.watch_mode() == "polling"
    for source in ("projects_status", "projects_files"):
        assert result.value("wordslab_source_watch_mode", source=source, mode="polling") == 1.0
        assert result.value("wordslab_source_watch_mode", source=source, mode="inotify") == 0.0
    assert collector.status_source.interval_seconds == settings.slow_refresh_interval_seconds
    # Polling still sees changes, on each periodic re-read.
    (workspace / "beta" / "new.txt").write_text("new\n")
    collector.status_source.refresh_now()
    assert scrape(collector).value("wordslab_project_changed_files", project="beta") == 1.0
    collector.stop()


def test_watches_freed_later_are_used_again_after_a_sweep_interval(workspace):
    """An editor's file watcher starting may hold every watch for a while: the tracker polled
    (a full `git status` of every project every 30 s) for the rest of the process's life. It
    tries watching again each sweep interval, then reads everything once, as a sweep does."""
    ExhaustedWhileHeld.held = True
    tracker = tracker_for(workspace, observer_factory=ExhaustedWhileHeld)
    assert tracker.watcher.retry_seconds == tracker.sweep_seconds
    tracker.watcher.retry_seconds = 0.0  # the sweep interval has passed
    try:
        tracker.sweep_now()
        assert tracker.watch_mode() == "polling"
        (workspace / "beta" / "while-polling.txt").write_text("x\n")  # after the last poll
        ExhaustedWhileHeld.held = False
        tracker.status_source.refresh_now()
        assert tracker.watch_mode() == "inotify"
        assert tracker.statuses()["beta"].branch.changed == ("while-polling.txt",)
        tracker.start()
        (workspace / "alpha" / "watched.txt").write_text("x\n")
        assert eventually(lambda: tracker.statuses()["alpha"].branch.changed == ("watched.txt",))
    finally:
        tracker.stop()


_TRACK_UNDER_LIMIT = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    limit, workspace = sys.argv[1], Path(sys.argv[2])
    if limit != "-":
        Path("/proc/sys/user/max_inotify_watches").write_text(limit)
    from common.sources.projects_tracker import ProjectsTracker
    tracker = ProjectsTracker(workspace, os.environ, sweep_seconds=3600.0, polling_seconds=30.0,
                              files_polling_seconds=120.0)
    for source in tracker.sources:
        source.refresh_now()
    print(tracker.watch_mode())
""")


def _watch_mode_under_limit(workspace, limit: str) -> str:
    """The tracker's mode in a user namespace whose inotify watch limit is `limit` (the real
    kernel limit, /proc/sys/user/max_inotify_watches, set for that namespace only)."""
    done = subprocess.run(["unshare", "--user", "--map-root-user", sys.executable, "-c", _TRACK_UNDER_LIMIT,
                           limit, str(workspace)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_watches_running_out_inside_a_tree_still_falls_back_to_polling(workspace):
    """watchdog raises only for a tree's root: subdirectories the kernel refuses (a project's
    .git/refs/heads, src/...) were skipped silently, so "inotify" was reported while their
    changes waited for the 15-minute sweep."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--user", "--map-root-user", "true"],
                                                         capture_output=True).returncode != 0:
        pytest.skip("no user namespaces here to lower the kernel's inotify limit for this test only")
    for name in ("alpha", "beta"):
        (workspace / name / "src" / "deep" / "er").mkdir(parents=True)
    assert _watch_mode_under_limit(workspace, "-") == "inotify"
    # The root and a few directories fit; the rest of the tree does not.
    assert _watch_mode_under_limit(workspace, "8") == "polling"


def test_a_watched_collector_publishes_inotify_mode(vm_env, workspace):
    collector = ProjectsCollector(Settings.from_env(vm_env))
    for source in collector.sources:
        source.refresh_now()
    result = scrape(collector)
    assert result.value("wordslab_source_watch_mode", source="projects_status", mode="inotify") == 1.0
    assert collector.status_source.interval_seconds == collector.settings.sweep_interval_seconds
    collector.stop()


def test_sweep_interval_from_environment_and_flag(vm_env, caplog):
    from exporter.cli import parse_args, settings_from_args
    assert Settings.from_env(vm_env).sweep_interval_seconds == 900.0
    assert Settings.from_env(dict(vm_env, WORDSLAB_DASHBOARD_SWEEP_INTERVAL="120")).sweep_interval_seconds == 120.0
    assert settings_from_args(parse_args(["--sweep-interval", "60"]), vm_env).sweep_interval_seconds == 60.0
    for bad in ("soon", "0", "-5"):  # logged, the default kept (0 would sweep without pause)
        caplog.clear()
        assert Settings.from_env(dict(vm_env, WORDSLAB_DASHBOARD_SWEEP_INTERVAL=bad)).sweep_interval_seconds == 900.0
        assert "WORDSLAB_DASHBOARD_SWEEP_INTERVAL" in caplog.text
