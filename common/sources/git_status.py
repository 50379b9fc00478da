"""Git projects directly under WORDSLAB_WORKSPACE: status, sizes, background fetch.

Plain `git` subprocesses, not GitPython: GitPython's object database leaks in
long-running processes, and one `git status --porcelain=v2 --branch` gives branch,
upstream, ahead/behind and changed files in one call. Every function here is slow
enough (subprocesses, directory walks, network) to run only in background sources.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, TypeVar

from common import redact
from common.readable import readable
from common.store.jobs import public_target

STATUS_TIMEOUT_SECONDS = 20.0
FETCH_TIMEOUT_SECONDS = 120.0
WORKERS = 4
# Written in the git dir after our own successful fetch/pull/push/clone; git ignores it.
SYNC_STATE_FILE = "wordslab-last-sync"

# Sync states, one per project (wordslab_project_status): why ahead/behind may be missing.
STATES = ("tracking", "no_upstream", "upstream_gone", "no_remote", "detached", "error")


class GitError(RuntimeError):
    """A git command failed; the message is git's own, first line(s) of stderr."""


def git_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update({
        "GIT_TERMINAL_PROMPT": "0",  # never wait for a password nobody will type
        "GIT_OPTIONAL_LOCKS": "0",  # a background status must not take index.lock from the user
        "LC_ALL": "C",  # messages parsed and shown as-is
    })
    return env


def repo_options(repo: Path, env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """git options and environment that make a command read exactly this project, as it is.

    - `-c safe.directory=<its real path>`: the exporter runs as root (compose) over a workspace
      owned by the user (uid 1000), which git refuses ("dubious ownership") unless that
      directory is trusted; trusted for this one command, the user's git config untouched.
      Its fsmonitor hook is not run, so a trusted repo still cannot run a command as us.
    - GIT_CEILING_DIRECTORIES=<its parent>: a project whose .git is broken is an error, never
      the status of a repository around the workspace.
    """
    real = os.path.realpath(repo)
    run_env = dict(env)
    run_env["GIT_CEILING_DIRECTORIES"] = os.path.dirname(real)
    return ["-C", str(repo), "-c", f"safe.directory={real}", "-c", "core.fsmonitor=false"], run_env


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL git and the helpers it started (remote-http, ssh, upload-pack): a process started
    with `start_new_session` leads its own group. Killing git alone left a helper waiting on a
    silent server for ever."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_git(repo: Path | None, *args: str, env: Mapping[str, str], timeout: float) -> str:
    options, run_env = repo_options(repo, env) if repo is not None else ([], dict(env))
    cmd = ["git", *options, *args]
    # New session: no controlling terminal, so ssh cannot prompt either; and its own process
    # group, stopped whole at the timeout.
    with subprocess.Popen(cmd, env=run_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, start_new_session=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            proc.communicate()
            raise GitError(f"git {args[0]} timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        message = stderr.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        raise GitError(message)
    return stdout.decode(errors="surrogateescape")


# ---------------------------------------------------------------------------- discovery

def discover_projects(workspace: Path | None) -> list[Path]:
    """Directories directly under the workspace holding a `.git`; hidden dirs are app data.

    An entry that cannot be read (a symlink loop, a directory without permission) is listed
    too: its git status then fails and it shows as one project in state "error", instead of
    its exception hiding every other project.
    """
    if workspace is None or not workspace.is_dir():
        return []
    found = []
    for entry in os.scandir(workspace):
        if entry.name.startswith("."):
            continue
        try:
            if not entry.is_dir():
                continue
            os.lstat(os.path.join(entry.path, ".git"))
        except FileNotFoundError:
            continue  # a plain directory, or a dangling symlink: not a project
        except OSError:
            pass  # unreadable: reported as an error project (read_project says why)
        found.append(Path(entry.path))
    return sorted(found, key=lambda p: p.name)


def project_name(repo: Path) -> str:
    """The project's name as shown in /metrics and pages (`readable`: non-UTF-8 bytes escaped)."""
    return readable(repo.name)


def git_dir(repo: Path) -> Path:
    """The repository's git dir, following a `.git` file (worktrees, submodule checkouts)."""
    dot_git = repo / ".git"
    try:
        content = dot_git.read_text(errors="surrogateescape").strip() if dot_git.is_file() else ""
    except OSError:  # unreadable: git's own status reports why
        content = ""
    if content.startswith("gitdir:"):
        target = Path(content.removeprefix("gitdir:").strip())
        return target if target.is_absolute() else (repo / target).resolve()
    return dot_git


# ---------------------------------------------------------------------------- status

@dataclass(frozen=True)
class BranchStatus:
    head: str | None  # branch name, None when detached
    oid: str | None  # None before the first commit
    upstream: str | None
    ahead: int | None  # None without upstream, or when the upstream ref is gone
    behind: int | None
    staged: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    untracked: tuple[str, ...] = ()
    conflicted: tuple[str, ...] = ()

    @property
    def detached(self) -> bool:
        return self.head is None

    @property
    def changed(self) -> tuple[str, ...]:
        """Distinct paths that are modified, staged, untracked or conflicted."""
        return tuple(dict.fromkeys(self.conflicted + self.staged + self.modified + self.untracked))


_AB = re.compile(r"^\+(\d+) -(\d+)$")


def parse_porcelain_v2(raw: str) -> BranchStatus:
    """Parse `git status --porcelain=v2 --branch -z` output."""
    head = oid = upstream = None
    ahead = behind = None
    staged, modified, untracked, conflicted = [], [], [], []
    records = raw.split("\0")
    i = 0
    while i < len(records):
        record = records[i]
        i += 1
        if not record:
            continue
        kind = record[0]
        if record.startswith("# branch.oid "):
            value = record[len("# branch.oid "):]
            oid = None if value == "(initial)" else value
        elif record.startswith("# branch.head "):
            value = record[len("# branch.head "):]
            head = None if value == "(detached)" else value
        elif record.startswith("# branch.upstream "):
            upstream = record[len("# branch.upstream "):]
        elif record.startswith("# branch.ab "):
            match = _AB.match(record[len("# branch.ab "):])
            if match:
                ahead, behind = int(match.group(1)), int(match.group(2))
        elif kind in "12":
            # "1 XY sub mH mI mW hH hI path"; "2 ... Xscore path" then origPath as next record.
            fields = record.split(" ", 9 if kind == "2" else 8)
            xy, path = fields[1], fields[-1]
            if kind == "2":
                i += 1  # skip origPath
            if xy[0] != ".":
                staged.append(path)
            if xy[1] != ".":
                modified.append(path)
        elif kind == "u":
            conflicted.append(record.split(" ", 10)[-1])
        elif kind == "?":
            untracked.append(record[2:])
    return BranchStatus(head, oid, upstream, ahead, behind, tuple(staged), tuple(modified),
                        tuple(untracked), tuple(conflicted))


def read_branch_status(repo: Path, env: Mapping[str, str], *, ignored: bool = False,
                       timeout: float = STATUS_TIMEOUT_SECONDS) -> tuple[BranchStatus, tuple[str, ...]]:
    """Status of the work tree; with `ignored`, also the ignored paths (what a delete would drop)."""
    # --untracked-files: a repo set to status.showUntrackedFiles=no (dotfile repos are) would
    # hide new files, and a delete would say nothing is lost.
    args = ["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=normal"]
    if ignored:
        args.append("--ignored=matching")
    raw = run_git(repo, *args, env=env, timeout=timeout)
    ignored_paths = tuple(r[2:] for r in raw.split("\0") if r.startswith("! "))
    return parse_porcelain_v2(raw), ignored_paths


# Remote URLs, and the include directives that can bring config from a file no stat here follows.
REMOTE_CONFIG_KEYS = r"^(remote\..*\.url|include\.path|includeif\..*\.path)$"


@dataclass(frozen=True)
class RemoteConfig:
    urls: dict[str, str]  # remote name -> URL as configured (secrets included: redact to show)
    includes: bool  # some config git read for the repo has an include


def read_remote_config(repo: Path, env: Mapping[str, str], timeout: float = STATUS_TIMEOUT_SECONDS) -> RemoteConfig:
    """The repo's remotes as git reads its config, in one `git config` process; a repo without a
    remote, or whose config git cannot read, gives no URLs."""
    try:
        out = run_git(repo, "config", "--get-regexp", REMOTE_CONFIG_KEYS, env=env, timeout=timeout)
    except GitError:
        return RemoteConfig({}, False)  # exit status 1: none of these keys is set
    urls, includes = {}, False
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        if key.startswith("remote."):
            urls[key.removeprefix("remote.").removesuffix(".url")] = value
        else:
            includes = True
    return RemoteConfig(urls, includes)


def read_remote_urls(repo: Path, env: Mapping[str, str], timeout: float = STATUS_TIMEOUT_SECONDS) -> dict[str, str]:
    return read_remote_config(repo, env, timeout).urls


def read_shared_config(env: Mapping[str, str], timeout: float = STATUS_TIMEOUT_SECONDS) -> str:
    """The config every repo reads besides its own (system, global, GIT_CONFIG_* in `env`, with
    their includes), as `git config --list --show-origin -z` prints it outside any repository.

    Raises GitError when git cannot read it (a malformed global config)."""
    # GIT_DIR at a path that does not exist: no repository's own config is read.
    return run_git(None, "config", "--list", "--show-origin", "-z",
                   env={**env, "GIT_DIR": os.devnull + "/wordslab-no-repo"}, timeout=timeout)


def config_entries(listing: str | None) -> Iterator[tuple[str, str, str]]:
    """(origin, key, value) of each entry of `git config --list --show-origin -z` output, which
    is "origin NUL key NEWLINE value NUL" per entry (keys lowercased by git but subsections)."""
    records = (listing or "").split("\0")
    for origin, entry in zip(records[0::2], records[1::2]):
        key, _, value = entry.partition("\n")
        yield origin, key, value


def has_include(shared_config: str) -> bool:
    """Whether `read_shared_config` output holds an include (whose condition may differ per repo)."""
    return any(key == "include.path" or (key.startswith("includeif.") and key.endswith(".path"))
               for _, key, _ in config_entries(shared_config))


def shared_config_files(shared_config: str | None, env: Mapping[str, str]) -> set[str]:
    """Files outside any project whose edit changes every project's status or remotes: those
    `read_shared_config` read (system, global, their includes), the global config's usual places
    (so one made later counts), and the global excludes file (`core.excludesFile`, by default
    $XDG_CONFIG_HOME/git/ignore), which decides what `git status` lists as untracked."""
    home = env.get("HOME") or os.path.expanduser("~")
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    files = {env["GIT_CONFIG_GLOBAL"]} if env.get("GIT_CONFIG_GLOBAL") else {
        os.path.join(home, ".gitconfig"), os.path.join(xdg, "git", "config")}
    excludes = os.path.join(xdg, "git", "ignore")
    for origin, key, value in config_entries(shared_config):
        if origin.startswith("file:"):
            files.add(os.path.abspath(origin.removeprefix("file:")))
        if key == "core.excludesfile" and value:
            excludes = home + value[1:] if value.startswith("~/") else value
    files.add(os.path.abspath(excludes))
    return files


def upstream_remote(upstream: str | None, remotes: Iterable[str]) -> str | None:
    """Remote name of an upstream like `origin/feature/x` (remote names may contain '/')."""
    if not upstream:
        return None
    matching = [r for r in remotes if upstream.startswith(r + "/")]
    return max(matching, key=len) if matching else None


def redact_url(url: str) -> str:
    """The URL without credentials (http(s) user-info, ssh passwords) nor query: safe in /metrics."""
    clean = public_target(url)
    return clean.split("?", 1)[0].split("#", 1)[0] if "://" in clean else clean


def last_commit_timestamp(repo: Path, env: Mapping[str, str],
                          timeout: float = STATUS_TIMEOUT_SECONDS) -> float | None:
    out = run_git(repo, "log", "-1", "--format=%ct", env=env, timeout=timeout).strip()
    return float(out) if out else None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def last_sync_timestamp(repo: Path, upstream: str | None = None) -> float | None:
    """Last successful fetch, pull or push, from what git and we leave in the git dir.

    FETCH_HEAD counts only when non-empty: a failed fetch truncates it (and touches it).
    The upstream's reflog moves on a fetch or push that changed it, from a terminal too.
    """
    gdir = git_dir(repo)
    times = [_mtime(gdir / SYNC_STATE_FILE)]
    fetch_head = gdir / "FETCH_HEAD"
    try:
        stat = fetch_head.stat()
        if stat.st_size > 0:
            times.append(stat.st_mtime)
    except OSError:
        pass
    if upstream:
        times.append(_mtime(gdir / "logs" / "refs" / "remotes" / upstream))
    known = [t for t in times if t is not None]
    return max(known) if known else None


def record_sync(repo: Path, when: float | None = None) -> None:
    """Note a successful fetch/pull/push/clone done by the dashboard itself."""
    path = git_dir(repo) / SYNC_STATE_FILE
    when = time.time() if when is None else when
    path.write_text(f"{when:.3f}\n")
    os.utime(path, (when, when))


@dataclass(frozen=True)
class ProjectStatus:
    name: str
    path: Path
    state: str  # one of STATES
    git_url: str = ""  # redacted
    branch: BranchStatus | None = None
    last_commit: float | None = None
    last_sync: float | None = None
    error: str | None = None


def _state(branch: BranchStatus, remotes: Mapping[str, str]) -> str:
    if branch.detached:
        return "detached"
    if not remotes:
        return "no_remote"
    if not branch.upstream:
        return "no_upstream"
    if branch.ahead is None:
        return "upstream_gone"
    return "tracking"


def common_dir(gdir: Path) -> Path:
    """The git dir holding refs, objects and config: a linked worktree's main git dir (its
    `commondir` file says where), else `gdir` itself."""
    try:
        return gdir / (gdir / "commondir").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return gdir


def git_dirs_outside(repo: Path) -> list[Path]:
    """The git dirs a project's `.git` file points to (a linked worktree, `--separate-git-dir`,
    a submodule checkout): its own and, for a linked worktree, the common one, where `git add`
    and `git commit` write. [] for a plain `.git` directory, which is inside the project."""
    if not (repo / ".git").is_file():
        return []
    gdir = git_dir(repo)
    if gdir == repo / ".git":
        return []  # a `.git` file git cannot follow: its status says why
    common = common_dir(gdir)
    return [gdir] if common == gdir else [gdir, common]


def config_key(repo: Path) -> tuple:
    """Identity of the config files git reads for this repo alone (its common dir's `config`, and
    `config.worktree`); () when the config cannot be found, which is never cached."""
    gdir = git_dir(repo)
    common = common_dir(gdir)
    key = []
    for path in (common / "config", gdir / "config.worktree"):
        try:
            st = os.stat(path)
            key.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            if path.name == "config":
                return ()
            key.append(None)
        except OSError:
            return ()
    return tuple(key)


class RepoCache:
    """What a project's status needs beyond `git status`, asked of git again only when it can have
    changed: remote URLs when the project's config file changes, at each read when its config has
    an include (or, at a sweep, when the shared config changed), HEAD's commit time when its oid
    does. So a status re-read is one `git status` child process in the usual case."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._remotes: dict[Path, tuple[tuple, RemoteConfig]] = {}  # config key, what it says
        self._commits: dict[Path, tuple[str, float | None]] = {}
        self._shared: str | None = None  # read_shared_config at the last recheck

    def remote_urls(self, repo: Path, env: Mapping[str, str]) -> dict[str, str]:
        key = config_key(repo)
        with self._lock:
            cached = self._remotes.get(repo)
        # A config with an include is asked again at each read of the project: the included
        # file (often in the project's own tree, whose edit is what woke us) or, for includeIf,
        # the branch or path it depends on may have changed while the config file did not.
        if cached is not None and cached[0] == key and key and not cached[1].includes:
            return cached[1].urls
        config = read_remote_config(repo, env)
        with self._lock:
            self._remotes[repo] = (key, config)
        return config.urls

    def recheck_remotes(self, env: Mapping[str, str]) -> None:
        """Forget the remote URLs that may have changed with no event to tell (the sweep's part):
        all when the shared config (system, global) changed, has an include, or cannot be read;
        else those of projects whose own config has an include. One `git config` process."""
        try:
            shared: str | None = read_shared_config(git_env(env))
        except GitError:
            shared = None
        with self._lock:
            if shared is None or shared != self._shared or has_include(shared):
                self._remotes = {}
            else:
                self._remotes = {repo: cached for repo, cached in self._remotes.items() if not cached[1].includes}
            self._shared = shared

    def shared_files(self, env: Mapping[str, str]) -> set[str]:
        """`shared_config_files` as of the last `recheck_remotes`."""
        with self._lock:
            shared = self._shared
        return shared_config_files(shared, env)

    def retain(self, repos: Iterable[Path]) -> None:
        """Forget the projects not in `repos` (removed, renamed): the cache never grows with every
        project ever seen (a script making and removing throwaway repos in the workspace)."""
        keep = set(repos)
        with self._lock:
            self._remotes = {repo: cached for repo, cached in self._remotes.items() if repo in keep}
            self._commits = {repo: cached for repo, cached in self._commits.items() if repo in keep}

    def repos(self) -> set[Path]:
        """The projects something is cached for."""
        with self._lock:
            return set(self._remotes) | set(self._commits)

    def last_commit(self, repo: Path, oid: str, env: Mapping[str, str]) -> float | None:
        with self._lock:
            cached = self._commits.get(repo)
        if cached is not None and cached[0] == oid:
            return cached[1]
        when = last_commit_timestamp(repo, env)
        with self._lock:
            self._commits[repo] = (oid, when)
        return when


def read_project(repo: Path, env: Mapping[str, str], cache: RepoCache | None = None) -> ProjectStatus:
    """Everything but sizes about one project; a broken repo gives state "error", never raises."""
    try:
        branch, _ = read_branch_status(repo, env)
        remotes = cache.remote_urls(repo, env) if cache else read_remote_urls(repo, env)
        remote = upstream_remote(branch.upstream, remotes) or ("origin" if "origin" in remotes else None)
        url = remotes.get(remote) if remote else next(iter(remotes.values()), "")
        last_commit = None
        if branch.oid:
            last_commit = cache.last_commit(repo, branch.oid, env) if cache else last_commit_timestamp(repo, env)
    except (GitError, OSError, ValueError) as exc:
        return ProjectStatus(project_name(repo), repo, "error", error=readable(first_line(str(exc))),
                             last_sync=last_sync_timestamp(repo))
    return ProjectStatus(project_name(repo), repo, _state(branch, remotes), redact_url(url or ""), branch,
                         last_commit, last_sync_timestamp(repo, branch.upstream))


def first_line(message: str) -> str:
    """The first non-blank line, masked before it is cut to 300 characters (a cut through a
    `user:token@` would leave a part no later scrub recognises)."""
    lines = [line for line in message.splitlines() if line.strip()]
    return redact.excerpt(lines[0], 300) if lines else message


T = TypeVar("T")


def map_projects(fn: Callable[[Path], T], repos: list[Path], workers: int = WORKERS) -> dict[str, T]:
    """Run `fn` over the projects in a few threads (git subprocesses wait on I/O)."""
    if not repos:
        return {}
    with ThreadPoolExecutor(max_workers=min(workers, len(repos)), thread_name_prefix="git") as pool:
        return dict(zip((project_name(r) for r in repos), pool.map(fn, repos)))


def scan_statuses(workspace: Path | None, env: Mapping[str, str], workers: int = WORKERS,
                  cache: RepoCache | None = None) -> dict[str, ProjectStatus]:
    env = git_env(env)
    return map_projects(lambda repo: read_project(repo, env, cache), discover_projects(workspace), workers)


# ---------------------------------------------------------------------------- sizes

@dataclass(frozen=True)
class ProjectFiles:
    size_bytes: int  # disk usage like `du`, .git included, hard links counted once
    last_modified: float | None  # newest file or directory outside .git
    errors: int = 0  # entries that could not be read (permissions, vanished mid-walk)


def walk_project(repo: Path) -> ProjectFiles:
    size = errors = 0
    newest: float | None = None
    seen_inodes: set[tuple[int, int]] = set()
    stack: list[tuple[str, bool]] = [(str(repo), False)]
    while stack:
        directory, inside_git = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            errors += 1
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                errors += 1
                continue
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in seen_inodes:
                    continue
                seen_inodes.add(key)
            size += st.st_blocks * 512
            is_git = inside_git or (directory == str(repo) and entry.name == ".git")
            if not is_git and (newest is None or st.st_mtime > newest):
                newest = st.st_mtime
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, is_git))
    return ProjectFiles(size, newest, errors)


def scan_files(workspace: Path | None, workers: int = WORKERS) -> dict[str, ProjectFiles]:
    return map_projects(walk_project, discover_projects(workspace), workers)


# ---------------------------------------------------------------------------- fetch

@dataclass(frozen=True)
class FetchResult:
    ok: bool
    error: str | None = None
    finished_at: float = field(default_factory=time.time)


def fetch_project(repo: Path, env: Mapping[str, str], timeout: float = FETCH_TIMEOUT_SECONDS,
                  cache: RepoCache | None = None) -> FetchResult | None:
    """`git fetch` of the default remote; None when the repo has no remote to fetch."""
    if not (cache.remote_urls(repo, env) if cache else read_remote_urls(repo, env)):
        return None
    try:
        # --no-auto-gc: no `git maintenance run --auto` child after each background fetch (a
        # fifth of its CPU); the user's own git commands still run it.
        run_git(repo, "fetch", "--quiet", "--no-auto-gc", env=env, timeout=timeout)
    except GitError as exc:
        return FetchResult(False, public_target(first_line(str(exc))))
    try:
        record_sync(repo)
    except OSError:
        pass  # a read-only git dir: the fetch still succeeded, FETCH_HEAD shows it
    return FetchResult(True)


def fetch_repos(repos: list[Path], env: Mapping[str, str], timeout: float = FETCH_TIMEOUT_SECONDS,
                workers: int = WORKERS, cache: RepoCache | None = None) -> dict[str, FetchResult]:
    """`git fetch` of these projects in a few threads; those without a remote are left out."""
    env = git_env(env)
    results = map_projects(lambda repo: fetch_project(repo, env, timeout, cache), repos, workers)
    return {name: result for name, result in results.items() if result is not None}


def fetch_all(workspace: Path | None, env: Mapping[str, str], timeout: float = FETCH_TIMEOUT_SECONDS,
              workers: int = WORKERS, cache: RepoCache | None = None) -> dict[str, FetchResult]:
    return fetch_repos(discover_projects(workspace), env, timeout, workers, cache)
