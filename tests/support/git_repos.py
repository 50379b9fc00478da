"""Real git repositories for tests: bare remotes, clones, commits, with a fixed identity."""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

IDENTITY = {
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
}


def git(cwd: Path | None, *args: str) -> str:
    env = {**os.environ, **IDENTITY}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def commit(repo: Path, filename: str, content: str, message: str | None = None) -> str:
    path = repo / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    git(repo, "add", filename)
    git(repo, "commit", "-q", "-m", message or f"edit {filename}")
    return git(repo, "rev-parse", "HEAD").strip()


def init_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    """A non-bare repo on branch main with one commit (or none if files is empty)."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for name, content in (files if files is not None else {"README.md": f"# {path.name}\n"}).items():
        commit(path, name, content, f"add {name}")
    return path


def make_remote(remotes_dir: Path, name: str, files: dict[str, str] | None = None) -> Path:
    """A bare repo `<name>.git` holding one commit on main, pushable over HTTP."""
    bare = remotes_dir / f"{name}.git"
    git(None, "init", "-q", "--bare", "-b", "main", str(bare))
    git(bare, "config", "http.receivepack", "true")  # allow push through git http-backend
    with tempfile.TemporaryDirectory() as tmp:
        seed = init_repo(Path(tmp) / name, files)
        git(seed, "push", "-q", str(bare), "main")
    git(bare, "update-server-info")
    return bare


def clone(url: str, dest: Path) -> Path:
    git(None, "clone", "-q", url, str(dest))
    return dest


def push_from_second_clone(remote: str, work: Path, filename: str, content: str) -> str:
    """Commit on the remote through another clone: the first clone is then behind after a fetch."""
    if not work.exists():
        clone(remote, work)
    git(work, "pull", "-q", "--ff-only")
    sha = commit(work, filename, content)
    git(work, "push", "-q")
    return sha


def sample_projects(workspace: Path, remotes_dir: Path, url_for) -> dict[str, Path]:
    """Projects in every sync state but error, each remote reached through `url_for(name)`.

    synced: in sync; behind: 1 commit to pull (once fetched); ahead: 2 to push;
    changed: 1 modified, 1 staged, 1 untracked file; local: no remote at all.
    """
    remotes_dir.mkdir(parents=True, exist_ok=True)
    projects = {}
    for name in ("synced", "behind", "ahead", "changed"):
        make_remote(remotes_dir, name, {"README.md": f"# {name}\n", "src/main.py": "print('hi')\n"})
        projects[name] = clone(url_for(name), workspace / name)
    push_from_second_clone(url_for("behind"), remotes_dir.parent / "behind-other-clone",
                           "NEWS.md", "pushed from elsewhere\n")
    commit(projects["ahead"], "one.txt", "1\n")
    commit(projects["ahead"], "two.txt", "2\n")
    (projects["changed"] / "README.md").write_text("# changed, not staged\n")
    (projects["changed"] / "staged.txt").write_text("staged\n")
    git(projects["changed"], "add", "staged.txt")
    (projects["changed"] / "notes.txt").write_text("untracked\n")
    projects["local"] = init_repo(workspace / "local", {"notebook.ipynb": "{}\n"})
    return projects


def synced_at(repo: Path, when: float) -> None:
    """As if the project last synced at `when`: the dashboard's sync note written then, and the
    files git leaves on a fetch, pull or push (FETCH_HEAD, remote-tracking reflogs) dated back."""
    from common.sources.git_status import record_sync
    record_sync(repo, when)
    gdir = repo / ".git"
    for path in [gdir / "FETCH_HEAD", *(gdir / "logs" / "refs" / "remotes").rglob("*")]:
        if path.is_file():
            os.utime(path, (when, when))
