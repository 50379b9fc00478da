"""The workspace's git projects kept fresh by file events: only what changed is read again.

Two background sources (`projects_status`, `projects_files`) share one recursive watch of the
workspace (common/watch.py). A change under a project marks that project; the sources wake,
wait DEBOUNCE_SECONDS for the rest of a burst (a checkout, a save-all) and re-read only the
marked projects: one `git status --porcelain=v2 --branch` each (RepoCache spares the other git
commands) and one walk for sizes. A change directly under the workspace (a project cloned,
renamed or deleted) makes them look for projects again. What a project keeps outside its own
tree is watched too, and its events count for the project: the target of a project that is a
symlink to a repo elsewhere (a recursive watch does not follow links), and the git dir a `.git`
file points to (a linked worktree's, with its main repo's common dir; `--separate-git-dir`; a
submodule checkout), where `git add` and `git commit` write. A full sweep every `sweep_seconds`
is the safety net for what events cannot see (a global git config, a missed event); when the
watches run out (inotify limits) the sweep comes every `polling_seconds`, and between sweeps
only the projects a background fetch touched are read again.
"""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Mapping

from common.background import BackgroundSource, SourceGroup
from common.readable import readable
from common.sources import fetch_schedule, git_status
from common.sources.git_status import ProjectFiles, ProjectStatus, RepoCache
from common.watch import Watcher, nearest_dir

DEBOUNCE_SECONDS = 0.5
# A project is read again no sooner than this many times what its last read took after it: files
# that change all the time in a big project (a training run logging into a 100k-file tree: a
# 0.3 s walk per event, 29 % of a core at one line a second) cost at most 1/BUSY_FACTOR of a core,
# while a small project, or an edit after a quiet spell, is read again at once.
BUSY_FACTOR = 20.0
# Written by `git fetch` or by us after a sync: only the last-sync time changes, no git needed.
SYNC_ONLY_FILES = ("FETCH_HEAD", git_status.SYNC_STATE_FILE)


class _Marks:
    """Projects marked by events since the last refresh of one source."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.sync_only: set[str] = set()
        self.rediscover = True

    def take(self) -> tuple[set[str], set[str], bool]:
        taken = (self.names, self.sync_only - self.names, self.rediscover)
        self.names, self.sync_only, self.rediscover = set(), set(), False
        return taken


class ProjectsTracker(SourceGroup):
    """Status and sizes of the workspace's projects for collectors and admin pages alike."""

    def __init__(self, workspace: Path | None, env: Mapping[str, str], *, sweep_seconds: float,
                 polling_seconds: float, files_polling_seconds: float, watch: bool = True,
                 observer_factory: Callable | None = None):
        self.workspace = workspace
        self.env = git_status.git_env(env)
        self.cache = RepoCache()
        self.sweep_seconds = sweep_seconds
        self._lock = threading.Lock()
        self._status_marks, self._files_marks = _Marks(), _Marks()
        self._statuses: dict[str, ProjectStatus] = {}
        self._files: dict[str, ProjectFiles] = {}
        self._status_swept = self._files_swept = -math.inf
        # A place outside a project's tree (as its events spell it) -> the paths its events stand
        # for: a symlinked project's target -> <workspace>/<link>, an outside git dir -> <project>/.git.
        self._outside: dict[str, set[str]] = {}
        self._relink, self._linked_at = True, -math.inf  # those to look for again; when last looked
        # Per source: project -> (monotonic time its last read ended, seconds it took).
        self._reads: dict[BackgroundSource, dict[str, tuple[float, float]]] = {}
        self._wakes: dict[BackgroundSource, tuple[threading.Timer, float]] = {}
        self._fetch_attempts: dict[str, float] = {}  # project -> unix time of our last fetch of it
        # Counts as every project's last sync for the fetch schedule: no burst of fetches at start.
        self.watched_since = time.time()
        self.watcher = Watcher("projects", self._on_change, observer_factory,
                               retry_seconds=sweep_seconds) if watch else None
        self._was_watching: dict[BackgroundSource, bool] = {}  # per source, at its last refresh
        # The global/system git config and excludes files (git_status.shared_config_files), the
        # directories watched for them, and whether one changed since the last status sweep.
        self._shared_files: frozenset[str] = frozenset()
        self._shared_dirs: set[Path] = set()
        self._shared_changed = False
        self.status_source = BackgroundSource("projects_status", self._refresh_statuses, polling_seconds)
        self.files_source = BackgroundSource("projects_files", self._refresh_files, files_polling_seconds)
        self._polling = {self.status_source: polling_seconds, self.files_source: files_polling_seconds}
        for source in self._polling:
            source.watch_mode = self.watch_mode

    @property
    def sources(self) -> list[BackgroundSource]:
        return [self.status_source, self.files_source]

    def watch_mode(self) -> str:
        return self.watcher.mode if self.watcher is not None else "polling"

    def statuses(self) -> dict[str, ProjectStatus]:
        return self.status_source.snapshot().value or {}

    def files(self) -> dict[str, ProjectFiles]:
        return self.files_source.snapshot().value or {}

    def stop(self) -> None:
        super().stop()
        if self.watcher is not None:
            self.watcher.stop()
        for timer, _ in list(self._wakes.values()):
            timer.cancel()

    # ------------------------------------------------------------------ events

    def _on_change(self, path: str) -> None:
        """Called in the watcher's thread for every changed path under the workspace, under
        a place a project keeps outside its tree (`_outside`), or beside a shared git config file."""
        if any(path == f or f.startswith(path + os.sep) for f in self._shared_files):
            with self._lock:
                self._shared_changed = True  # every project's status may change: a sweep
            self.status_source.request_refresh()
            return
        with self._lock:
            outside = list(self._outside.items())
        for place, stand_for in outside:
            if path == place or path.startswith(place + os.sep):
                for prefix in stand_for:
                    self._mark(prefix + path[len(place):])
        self._mark(path)  # a link's target or a git dir may be inside a project of the workspace too

    def _mark(self, path: str) -> None:
        rel = os.path.relpath(path, self.workspace)
        parts = rel.split(os.sep)
        if rel == "." or parts[0] == ".." or parts[0].startswith("."):
            return  # the workspace itself, or app data in hidden dirs (our own DB among them)
        name = readable(parts[0])  # as projects are listed (git_status.project_name)
        status = files = True
        sync_only = False
        if len(parts) == 1:
            with self._lock:
                self._status_marks.rediscover = self._files_marks.rediscover = self._relink = True
        elif parts[1:] == [".git"]:
            with self._lock:
                self._relink = True  # a `.git` file written or replaced: where its git dir is may change
        elif parts[1] == ".git" and len(parts) > 2:
            inside = parts[2:]
            if inside[-1].endswith(".lock"):
                return  # git renames the lock file over the real one: that event follows
            if inside[0] == "objects":
                status = False  # new objects come with a ref or index change; sizes did change
            elif len(inside) == 1 and inside[0] in SYNC_ONLY_FILES:
                status, files, sync_only = False, False, True
        with self._lock:
            if status:
                self._status_marks.names.add(name)
            if sync_only:
                self._status_marks.sync_only.add(name)
            if files:
                self._files_marks.names.add(name)
        if status or sync_only or len(parts) == 1:
            self.status_source.request_refresh()
        if files:
            self.files_source.request_refresh()

    def sweep_now(self) -> None:
        """Read every project again now, as the periodic sweep does (bench/ measures its cost)."""
        self._status_swept = self._files_swept = -math.inf
        for source in self.sources:
            source.refresh_now()

    def reread(self, name: str) -> None:
        """Read one project again now (after an admin action on it), and look for projects again."""
        with self._lock:
            for marks in (self._status_marks, self._files_marks):
                marks.names.add(readable(name))
                marks.rediscover = True
        for source in self.sources:
            source.refresh_now()

    # ------------------------------------------------------------------ refreshes

    def _sweep_due(self, source: BackgroundSource, swept_at: float) -> bool:
        """A full read: every sweep_seconds while watching, every polling interval (and at each
        direct call) while polling; between them, only what was marked (events, fetches)."""
        watching = self.watcher is not None and self._ensure_watched()
        every = self.sweep_seconds if watching else self._polling[source]
        source.interval_seconds = every
        # Watching again after polling (watches freed): what changed since the last poll came with no event.
        resumed = watching and not self._was_watching.get(source, True)
        self._was_watching[source] = watching
        if source is self.status_source and self._shared_changed:
            if source.in_own_thread():
                time.sleep(DEBOUNCE_SECONDS)  # an editor's save is a burst of events
            with self._lock:
                self._shared_changed = False
            return True
        if resumed or (not watching and not source.in_own_thread()):
            return True
        due_in = every - (time.monotonic() - swept_at)
        # A refresh between sweeps (an event, a fetch round) must not push the next sweep back:
        # the source's thread waits `interval_seconds` after each refresh, whatever woke it.
        source.interval_seconds = every if due_in <= 0 else due_in
        return due_in <= 0

    def _ensure_watched(self) -> bool:
        if self.workspace is None:
            return False
        if not self.watcher.watch(self.workspace, recursive=True):
            self._relink = True
            return False
        with self._lock:
            relink, self._relink = self._relink, False
        # Links change only with the workspace's own entries (an event marks that); the sweep
        # interval re-checks them anyway.
        if relink or time.monotonic() - self._linked_at >= self.sweep_seconds:
            self._linked_at = time.monotonic()
            self._watch_links()
        return self.watcher.mode == "inotify"

    def _watch_links(self) -> None:
        """Watch what each project keeps outside its tree (a symlink's target, the git dirs its
        `.git` file points to); forget those that went. A place inside the workspace is already
        watched: its events only need to count for the project too."""
        outside: dict[str, set[str]] = {}
        for repo in git_status.discover_projects(self.workspace):
            mine = os.path.join(self.workspace, repo.name)
            places = [(os.path.realpath(repo), mine)] if repo.is_symlink() else []
            places += [(os.path.realpath(gdir), os.path.join(mine, ".git")) for gdir in git_status.git_dirs_outside(repo)]
            for real, stand_for in places:
                place = self._as_workspace_path(real)
                if place is None:
                    if not self.watcher.watch(Path(real), recursive=True):
                        continue
                    place = real
                outside.setdefault(place, set()).add(stand_for)
        with self._lock:
            gone, self._outside = set(self._outside) - set(outside), outside
        for place in gone:
            self.watcher.unwatch(Path(place), recursive=True)

    def _watch_shared(self) -> None:
        """Watch the directories of the shared git config files (their nearest existing one, so
        a file or folder made later is seen too), each alone, not its subtree."""
        files = frozenset(self.cache.shared_files(self.env))
        dirs = {d for d in map(nearest_dir, map(Path, files)) if d}
        for directory in dirs:  # all: watches given up while polling are made again
            self.watcher.watch(directory, recursive=False)
        for directory in self._shared_dirs - dirs:
            self.watcher.unwatch(directory, recursive=False)
        self._shared_files, self._shared_dirs = files, dirs

    def _as_workspace_path(self, real: str) -> str | None:
        """`real` as the workspace's watch spells its events, or None when it is outside it."""
        workspace = os.path.realpath(self.workspace)
        if not real.startswith(workspace + os.sep):
            return None
        return os.path.join(self.workspace, os.path.relpath(real, workspace))

    def _take(self, marks: _Marks, source: BackgroundSource, sweep: bool) -> tuple[set[str], set[str], bool]:
        events = not sweep and source.in_own_thread()  # not a sweep, nor an admin action's re-read
        if events:
            time.sleep(DEBOUNCE_SECONDS)  # let the rest of a burst of events arrive
        with self._lock:
            names, sync_only, rediscover = marks.take()
            if events:
                held = self._held_back(source, names)
                marks.names |= held  # read at their turn
                names -= held
            return names, sync_only, rediscover

    def _held_back(self, source: BackgroundSource, names: set[str]) -> set[str]:
        """The marked projects read too recently for what a read of them costs (BUSY_FACTOR); the
        source is woken again when the first of them may be read."""
        now = time.monotonic()
        waits = {}
        for name in names:
            ended, took = self._reads.get(source, {}).get(name, (-math.inf, 0.0))
            if ended + BUSY_FACTOR * took > now:
                waits[name] = ended + BUSY_FACTOR * took - now
        if waits:
            due = now + min(waits.values())
            pending = self._wakes.get(source)
            if pending is None or not pending[0].is_alive() or pending[1] > due:
                timer = threading.Timer(due - now, source.request_refresh)
                timer.daemon = True
                timer.start()
                self._wakes[source] = (timer, due)
        return set(waits)

    def _timed(self, source: BackgroundSource, read: Callable[[Path], object]) -> Callable[[Path], object]:
        """`read`, noting when each project's read ended and how long it took (see _held_back)."""
        reads = self._reads.setdefault(source, {})

        def timed(repo: Path):
            started = time.monotonic()
            try:
                return read(repo)
            finally:
                ended = time.monotonic()
                reads[git_status.project_name(repo)] = (ended, ended - started)
        return timed

    def _projects(self) -> dict[str, Path]:
        """By the name they are listed with, which for a name that is not UTF-8 is not its own."""
        return {git_status.project_name(repo): repo for repo in git_status.discover_projects(self.workspace)}

    def _updated(self, current: dict, sweep: bool, names: set[str], rediscover: bool,
                 read: Callable[[Path], object], source: BackgroundSource) -> tuple[dict, dict[str, Path]]:
        """`current` with the marked (or, on a sweep, all) projects read again; the same dict
        object when nothing was read, so the source sees no change. What is kept about projects
        that went (read times, and for the status the RepoCache) is forgotten."""
        if not (sweep or names or rediscover):
            return current, {}
        projects = self._projects()
        reads = self._reads.get(source, {})
        for gone in set(reads) - set(projects):
            reads.pop(gone, None)
        if source is self.status_source:
            self.cache.retain(projects.values())
        todo = set(projects) if sweep else (names | (set(projects) - set(current))) & set(projects)
        fresh = git_status.map_projects(read, [projects[n] for n in sorted(todo)])
        updated = {n: v for n, v in current.items() if n in projects}
        updated.update(fresh)
        return dict(sorted(updated.items())), projects

    def _refresh_statuses(self) -> dict[str, ProjectStatus]:
        sweep = self._sweep_due(self.status_source, self._status_swept)
        names, sync_only, rediscover = self._take(self._status_marks, self.status_source, sweep)
        if sweep:
            self.cache.recheck_remotes(self.env)  # what no event tells: global git config, includes
            self._status_swept = time.monotonic()
            if self.watcher is not None:
                self._watch_shared()
        cache = self.cache
        statuses, projects = self._updated(self._statuses, sweep, names, rediscover, self._timed(
            self.status_source, lambda repo: git_status.read_project(repo, self.env, cache)), self.status_source)
        for name in sync_only - set(names):
            if name in statuses and not sweep:
                status = statuses[name]
                upstream = status.branch.upstream if status.branch else None
                statuses = dict(statuses) if statuses is self._statuses else statuses
                statuses[name] = replace(status, last_sync=git_status.last_sync_timestamp(status.path, upstream))
        self._statuses = statuses
        return statuses

    def _refresh_files(self) -> dict[str, ProjectFiles]:
        sweep = self._sweep_due(self.files_source, self._files_swept)
        names, _, rediscover = self._take(self._files_marks, self.files_source, sweep)
        if sweep:
            self._files_swept = time.monotonic()
        self._files, _ = self._updated(self._files, sweep, names, rediscover,
                                       self._timed(self.files_source, git_status.walk_project), self.files_source)
        return self._files

    def fetch_due(self, interval: float, timeout: float = git_status.FETCH_TIMEOUT_SECONDS,
                  now: float | None = None) -> dict[str, git_status.FetchResult]:
        """`git fetch` of the projects whose slot came since they last synced (common/sources/
        fetch_schedule.py); {} when none is due. Projects come from the status snapshot, whose
        last-sync times file events keep current; one not read yet waits for the next round."""
        now = time.time() if now is None else now
        statuses = self.statuses()
        self._fetch_attempts = {n: t for n, t in self._fetch_attempts.items() if n in statuses}  # gone ones
        due = [status.path for name, status in statuses.items()
               if fetch_schedule.is_due(name, status.last_sync, self._fetch_attempts.get(name), now, interval,
                                        watched_since=self.watched_since)]
        if not due:
            return {}
        for repo in due:
            self._fetch_attempts[git_status.project_name(repo)] = now
        return self._fetch(due, timeout)

    def fetch_all(self, timeout: float = git_status.FETCH_TIMEOUT_SECONDS) -> dict[str, git_status.FetchResult]:
        """`git fetch` of every project (bench/ measures a whole round's cost with it)."""
        return self._fetch(git_status.discover_projects(self.workspace), timeout)

    def _fetch(self, repos: list[Path], timeout: float) -> dict[str, git_status.FetchResult]:
        """`git fetch` of these projects; what it changes reaches the status through file events
        (or, when polling, through a re-read of the fetched projects asked here)."""
        results = git_status.fetch_repos(repos, self.env, timeout, cache=self.cache)
        if results and self.watch_mode() != "inotify":
            with self._lock:
                self._status_marks.names |= set(results)  # these alone, not a sweep of all
            self.status_source.request_refresh()
        return results
