#!/usr/bin/env python3
"""N small git projects in a workspace, fast, and the projects collector's cost with them.

`make_projects(workspace, n)` (used by bench_exporter.py) clones one bare repo N times, each
with the bare repo as its remote, some with local commits or untracked files. A plain local
clone: its objects are hard links (nothing copied) and, as in a user's clone, it has no
alternates (`--shared` would add one: a fifth git process, the alternate's `for-each-ref`, to
every fetch, a quarter of its CPU).
Run alone, it prints the background refresh cost per cycle of each projects source and
the scrape-path cost (the collector reading snapshots): `python bench/scale_projects.py`.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IDENTITY = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}


def _git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **IDENTITY}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_template_remote(where: Path) -> Path:
    """A bare repo with a few commits and files, outside the workspace."""
    bare, seed = where / "scale-template.git", where / "scale-template-seed"
    _git("init", "-q", "--bare", "-b", "main", str(bare))
    _git("init", "-q", "-b", "main", str(seed))
    for i in range(5):
        (seed / f"module_{i}.py").write_text(f"VALUE = {i}\n" * 50)
        (seed / "README.md").write_text(f"# template, revision {i}\n")
        _git("add", "-A", cwd=seed)
        _git("commit", "-q", "-m", f"revision {i}", cwd=seed)
    _git("push", "-q", str(bare), "main", cwd=seed)
    return bare


def commit_file(project: Path, name: str, content: str) -> None:
    (project / name).write_text(content)
    _git("add", name, cwd=project)
    _git("commit", "-q", "-m", f"edit {name}", cwd=project)


def make_projects(workspace: Path, n: int = 200) -> int:
    workspace.mkdir(parents=True, exist_ok=True)
    bare = make_template_remote(Path(tempfile.mkdtemp(prefix="scale-remote-", dir=workspace.parent)))
    for i in range(n):
        project = workspace / f"project-{i:03d}"
        _git("clone", "-q", str(bare), str(project))
        if i % 7 == 0:  # something to push
            (project / "local.txt").write_text("local work\n")
            _git("add", "local.txt", cwd=project)
            _git("commit", "-q", "-m", "local work", cwd=project)
        if i % 10 == 0:  # something uncommitted
            (project / "notes.txt").write_text("draft\n")
    return n


def _timed(fn, cycles: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(cycles):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--cycles", type=int, default=3)
    args = parser.parse_args(argv)

    from exporter.collectors.projects import ProjectsCollector
    from common.config import Settings
    from common.sources import git_status

    with tempfile.TemporaryDirectory(prefix="scale-projects-") as tmp:
        workspace = Path(tmp) / "workspace"
        started = time.perf_counter()
        make_projects(workspace, args.count)
        print(f"created {args.count} projects in {time.perf_counter() - started:.1f} s")
        env = {**os.environ, "WORDSLAB_WORKSPACE": str(workspace)}
        collector = ProjectsCollector(Settings.from_env(env, state_dir=Path(tmp) / "state",
                                                        db_path=Path(tmp) / "db.sqlite"))
        costs = {
            "projects_fetch": _timed(lambda: collector.fetch_source.refresh_now(), args.cycles)[0],
            "full sweep (status + files)": _timed(collector.tracker.sweep_now, args.cycles)[0],
        }
        for source, seconds in costs.items():
            print(f"background refresh cost per cycle: {source:<28} {seconds * 1000:8.1f} ms "
                  f"({git_status.WORKERS} threads, {args.count} projects)")
        from exporter.exposition import Exposition
        exposition = Exposition([collector])
        exposition.render()  # warm up
        scrape_times = []
        for _ in range(100):
            started = time.perf_counter()
            text = exposition.render()
            scrape_times.append(time.perf_counter() - started)
        scrape_times.sort()
        series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
        print(f"scrape path (collect + exposition, snapshots only): median "
              f"{statistics.median(scrape_times) * 1000:.2f} ms, p99 {scrape_times[98] * 1000:.2f} ms, "
              f"{series} series")
    return 0


if __name__ == "__main__":
    sys.exit(main())
