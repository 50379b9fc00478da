"""Git projects directly under WORDSLAB_WORKSPACE (dashboard section 2.2).

The scrape only reads snapshots: git status and directory walks run in the tracker's
two background sources, woken by file events for the projects that changed
(common/sources/projects_tracker.py), and `git fetch` runs in a third: each project once per interval, in its own slot.
"""
from __future__ import annotations

from typing import Iterable

from prometheus_client.core import Metric

from common.background import BackgroundSource
from common.config import Settings
from common.sources import git_status
from common.sources.projects_tracker import ProjectsTracker
from exporter.collectors.base import WordslabCollector, gauge

# Walking every file is the costly part: when polling (no file watches), a few status cycles
# per walk is fresh enough for sizes and "last modified" ages.
FILES_INTERVAL_FACTOR = 4
# How often the fetch source fetches the projects whose slot came meanwhile: each round's
# new sync times re-render the projects' text once, so a round a minute, not one per project.
FETCH_TICK_SECONDS = 60.0


PROJECT = ("project",)


class ProjectsCollector(WordslabCollector):
    name = "projects"
    output_from_sources_only = True

    def __init__(self, settings: Settings):
        super().__init__(settings)
        interval = settings.slow_refresh_interval_seconds
        self.tracker = ProjectsTracker(settings.workspace, settings.env,
                                       sweep_seconds=settings.sweep_interval_seconds,
                                       polling_seconds=interval,
                                       files_polling_seconds=interval * FILES_INTERVAL_FACTOR)
        self.status_source, self.files_source = self.tracker.status_source, self.tracker.files_source
        self.sources = [self.status_source, self.files_source]
        self.fetch_interval = settings.git_fetch_interval_seconds
        self._fetches: dict[str, git_status.FetchResult] = {}
        self.fetch_source: BackgroundSource | None = None
        if self.fetch_interval > 0:  # 0 turns background fetching off
            # It wakes often and fetches only the projects due (common/sources/fetch_schedule.py).
            self.fetch_source = BackgroundSource("projects_fetch", self._fetch,
                                                 min(FETCH_TICK_SECONDS, self.fetch_interval))
            self.sources.append(self.fetch_source)

    def _fetch(self) -> dict[str, git_status.FetchResult]:
        """Each project's last background fetch result; the same dict when nothing was due."""
        fetched = self.tracker.fetch_due(self.fetch_interval)
        known = self.tracker.statuses()
        if not fetched and set(self._fetches) <= set(known):
            return self._fetches
        self._fetches = {name: result for name, result in {**self._fetches, **fetched}.items() if name in known}
        return self._fetches

    def stop(self) -> None:
        super().stop()
        self.tracker.stop()

    def collect_metrics(self) -> Iterable[Metric]:
        statuses = self.status_source.snapshot().value or {}
        files = self.files_source.snapshot().value or {}
        fetches = (self.fetch_source.snapshot().value if self.fetch_source else None) or {}

        info = gauge("project_info", "Git project directly under WORDSLAB_WORKSPACE (value 1); "
                     "git_url is the upstream's remote URL without credentials.",
                     ("project", "path", "git_url"))
        branch_info = gauge("project_branch_info", "Checked-out branch and its upstream (value 1); "
                            "branch is empty on a detached HEAD, upstream empty when none is set.",
                            ("project", "branch", "upstream"))
        state = gauge("project_status", "The project's sync state in label status (value 1, one series "
                      "per project): tracking (upstream set, ahead/behind known), no_upstream, upstream_gone, "
                      "no_remote, detached (no ahead/behind series for these), error (git status failed, "
                      "e.g. a corrupt repo: only info, size and modification time are then reported).",
                      ("project", "status"))
        changed = gauge("project_changed_files", "Files modified, staged, untracked or conflicted "
                        "(an untracked directory counts once, as in `git status`).", PROJECT)
        behind = gauge("project_commits_behind", "Commits on the upstream not yet pulled, as of the last "
                       "background fetch. Absent without an upstream (see wordslab_project_status).", PROJECT)
        ahead = gauge("project_commits_ahead", "Local commits not yet pushed to the upstream. "
                      "Absent without an upstream (see wordslab_project_status).", PROJECT)
        last_commit = gauge("project_last_commit_timestamp_seconds",
                            "Commit time of HEAD. Absent before the first commit.", PROJECT)
        last_sync = gauge("project_last_sync_timestamp_seconds", "Last successful fetch, pull or push "
                          "with a remote. Absent if the project never synced since it was cloned.", PROJECT)
        fetch_ok = gauge("project_fetch_success", "1 if the last background `git fetch` succeeded, "
                         "0 if it failed (offline, credentials needed, timeout). Absent without a remote, and until "
                         "the project's first fetch slot (each project is fetched once per "
                         "--git-fetch-interval, at its own offset into it).", PROJECT)
        size = gauge("project_size_bytes", "Disk usage of the project directory, .git included.", PROJECT)
        modified = gauge("project_last_modified_timestamp_seconds",
                         "Modification time of the newest file or directory outside .git.", PROJECT)

        for name, project in sorted(statuses.items()):
            info.add_metric([name, str(project.path), project.git_url], 1.0)
            state.add_metric([name, project.state], 1.0)
            if project.last_sync is not None:
                last_sync.add_metric([name], project.last_sync)
            if name in fetches:
                fetch_ok.add_metric([name], 1.0 if fetches[name].ok else 0.0)
            if name in files:
                size.add_metric([name], files[name].size_bytes)
                if files[name].last_modified is not None:
                    modified.add_metric([name], files[name].last_modified)
            branch = project.branch
            if branch is None:
                continue
            branch_info.add_metric([name, branch.head or "", branch.upstream or ""], 1.0)
            changed.add_metric([name], len(branch.changed))
            if project.last_commit is not None:
                last_commit.add_metric([name], project.last_commit)
            if project.state == "tracking":
                ahead.add_metric([name], branch.ahead)
                behind.add_metric([name], branch.behind)
        yield from (info, branch_info, state, changed, behind, ahead, last_commit, last_sync,
                    fetch_ok, size, modified)
