"""Projects in the workspace: validation, clone, pull, push, delete. No Flask here.

Every user input is validated before git runs: clone URLs are restricted to https://,
http://, ssh:// and scp-like `user@host:path` (no options, local paths, file:// or
`ext::` transports, which run commands or read the machine's own files), and project
names to one plain directory name. Errors are GitOpError with a message for the user.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

import git as gitpython

from common.sources.git_status import (
    GitError, discover_projects, first_line, git_env, kill_group, read_branch_status, read_remote_urls, record_sync,
    run_git, upstream_remote,
)
from common.readable import readable
from common.store.jobs import public_target

from admin.formatting import plural
from admin.validation import MAX_CHARS

ALLOWED_SCHEMES = ("https", "http", "ssh")
NETWORK_TIMEOUT_SECONDS = 600.0
# A clone may be big: bounded in total by this, and a stalled one by git's low-speed limit.
CLONE_TIMEOUT_SECONDS = 3600.0
LOCAL_TIMEOUT_SECONDS = 60.0
MAX_LISTED = 50  # lines of each kind on the delete confirmation

_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._~-]+@)?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?:[^\s]+$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")
_BRANCH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}$")
_ALLOWED_URL_TEXT = "https://, http://, ssh:// or user@host:path"


class GitOpError(ValueError):
    """Refused or failed operation; the message is meant for the user."""


# ---------------------------------------------------------------------------- validation

def validate_clone_url(url: str) -> str:
    url = (url or "").strip()
    if not url:
        raise GitOpError(f"Enter the git URL to clone ({_ALLOWED_URL_TEXT}).")
    if len(url) > MAX_CHARS["url"]:
        raise GitOpError(f"The URL is too long: at most {MAX_CHARS['url']:,} characters.")
    if url.startswith("-"):
        raise GitOpError(f"Refused: {url.split('=')[0]!r} is a git command-line option, not a URL.")
    scheme, sep, _ = url.partition("://")
    if "::" in (scheme if sep else url):
        transport = url.split("::", 1)[0]
        raise GitOpError(f"Refused: the {transport}:: transport can run commands; "
                         f"use {_ALLOWED_URL_TEXT}.")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise GitOpError("The URL must not contain spaces or control characters.")
    if sep:
        return _validate_scheme_url(url, scheme.lower())
    if url.startswith(("/", ".", "~")) or ":" not in url or "/" in url.split(":", 1)[0]:
        raise GitOpError(f"Refused: local paths cannot be cloned from here; use {_ALLOWED_URL_TEXT}.")
    if not _SCP_LIKE.match(url):
        raise GitOpError(f"Not a git URL: use {_ALLOWED_URL_TEXT}.")
    return url


def _validate_scheme_url(url: str, scheme: str) -> str:
    if scheme == "file":
        raise GitOpError("Refused: file:// URLs read local paths; "
                         f"use {_ALLOWED_URL_TEXT}.")
    if scheme not in ALLOWED_SCHEMES:
        raise GitOpError(f"Refused: the {scheme}:// scheme is not supported; use {_ALLOWED_URL_TEXT}.")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # raises on a bad port
    except ValueError as exc:
        raise GitOpError(f"Not a valid URL: {exc}.") from None
    if not host or host.startswith("-"):
        raise GitOpError("The URL needs a host name, e.g. https://github.com/owner/repo.git.")
    if parts.path.strip("/") == "":
        raise GitOpError("The URL needs a repository path after the host, e.g. /owner/repo.git.")
    return url


def name_from_url(url: str) -> str:
    """Project name git itself would choose: the last path part without `.git`."""
    tail = re.split(r"[/:]", url.rstrip("/"))[-1]
    return tail.removesuffix(".git")


def check_name_syntax(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise GitOpError("Enter a project name.")
    if "/" in name or "\\" in name:
        raise GitOpError(f"Refused name {name!r}: one directory name, without '/'.")
    if ".." in name:
        raise GitOpError(f"Refused name {name!r}: '..' is not allowed.")
    if name[0] in "-.":
        raise GitOpError(f"Refused name {name!r}: it must not start with '-' or '.'.")
    if not _NAME.match(name):
        raise GitOpError(f"Refused name {name!r}: use letters, digits, '.', '_' and '-' only "
                         "(no spaces or shell characters such as ; $ ` | & < > *), 100 at most.")
    return name


def _workspace(workspace: Path | None) -> Path:
    if workspace is None:
        raise GitOpError("WORDSLAB_WORKSPACE is not set: there is no workspace for projects.")
    if not workspace.is_dir():
        raise GitOpError(f"The workspace {workspace} does not exist.")
    return workspace


def validate_new_project_name(workspace: Path | None, name: str) -> str:
    name = check_name_syntax(name)
    if (_workspace(workspace) / name).exists() or (workspace / name).is_symlink():
        raise GitOpError(f"A project or file named {name!r} already exists in the workspace.")
    return name


def validate_branch(branch: str | None) -> str | None:
    branch = (branch or "").strip()
    if not branch:
        return None
    if len(branch) > MAX_CHARS["revision"]:
        raise GitOpError(f"The branch name is too long: at most {MAX_CHARS['revision']} characters.")
    if not _BRANCH.match(branch) or ".." in branch or branch.endswith(("/", ".lock", ".")) or "//" in branch:
        raise GitOpError(f"Refused branch {branch!r}: use letters, digits, '.', '_', '-' and '/' "
                         "(not first), no '..'.")
    return branch


def project_path(workspace: Path | None, name: str) -> Path:
    """An existing project directly under the workspace, by the name the pages show (`readable`:
    a folder made in a terminal may have spaces, quotes or bytes that are not UTF-8 in its name,
    which a new clone's name may not). GitOpError when there is none, or it is a symbolic link."""
    _workspace(workspace)
    if "/" in name or name.strip() in ("", ".", ".."):
        check_name_syntax(name)  # says why: one directory name
    matches = [p for p in discover_projects(workspace) if readable(p.name) == name]
    if len(matches) != 1:  # none, or two names shown alike (an escaped byte and its spelling)
        raise GitOpError(f"There is no project named {readable(name)!r} in the workspace.")
    path = matches[0]
    if path.is_symlink():
        raise GitOpError(f"{readable(name)!r} is a symbolic link, not a project directory: manage it in a terminal.")
    return path


# ---------------------------------------------------------------------------- clone

class CloneProgress(gitpython.RemoteProgress):
    """git's --progress output, as one ratio over the stages of a clone."""

    # Share of the whole clone taken by each stage (receiving dominates).
    STAGES = {
        gitpython.RemoteProgress.COUNTING: (0.0, 0.02, "counting objects"),
        gitpython.RemoteProgress.COMPRESSING: (0.02, 0.05, "compressing objects"),
        gitpython.RemoteProgress.RECEIVING: (0.05, 0.85, "receiving objects"),
        gitpython.RemoteProgress.RESOLVING: (0.85, 0.95, "resolving deltas"),
        gitpython.RemoteProgress.CHECKING_OUT: (0.95, 1.0, "checking out files"),
    }

    def __init__(self, report: Callable[[float, str], None]):
        super().__init__()
        self._report = report

    def update(self, op_code, cur_count, max_count=None, message=""):
        start, end, label = self.STAGES.get(op_code & self.OP_MASK, (None, None, None))
        if label is None:
            return
        fraction = (float(cur_count) / float(max_count)) if max_count else 0.0
        detail = f"{int(cur_count)}/{int(max_count)}" if max_count else f"{int(cur_count)}"
        text = f"{label} {detail}{message or ''}".strip()
        self._report(start + (end - start) * min(1.0, fraction), text)


def clone_env(base: Mapping[str, str]) -> dict[str, str]:
    env = git_env(base)
    env.update({
        "GIT_ALLOW_PROTOCOL": "https:http:ssh",  # also for submodules and redirects
        "GIT_HTTP_LOW_SPEED_LIMIT": "1000", "GIT_HTTP_LOW_SPEED_TIME": "60",  # abort a stalled clone
    })
    if not env.get("GIT_SSH_COMMAND") and not env.get("GIT_SSH"):
        # No terminal to answer ssh: fail instead of waiting; a first-seen host key is accepted,
        # a changed one still refused.
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o ConnectTimeout=30"
    return env


def git_failure(exc: Exception) -> str:
    """The useful lines of a failed git command (its `fatal:`/`error:` lines), credentials removed."""
    text = str(exc).strip()
    lines = [l.strip() for l in text.splitlines()
             if l.strip().startswith(("fatal:", "error:", "! [", "remote: error"))]
    return public_target("; ".join(lines) if lines else first_line(text))


def _run_with_progress(args: list[str], env: Mapping[str, str], parser: gitpython.RemoteProgress,
                       timeout: float, on_cancel: Callable[[Callable[[], None]], None] | None = None) -> None:
    """`git *args`, its stderr fed line by line (progress ends lines with CR) to `parser`;
    killed with its children after `timeout` seconds, or when the callback given to
    `on_cancel` is called (then GitError too). GitError carries git's own lines."""
    process = subprocess.Popen(["git", *args], env=dict(env), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    expired, cancelled = threading.Event(), threading.Event()

    def kill():
        kill_group(process)  # git and its helpers (remote-https, ssh)

    def expire():
        expired.set()
        kill()

    def cancel():
        cancelled.set()
        kill()

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    if on_cancel is not None:
        on_cancel(cancel)
    handle = parser.new_message_handler()
    kept: list[str] = []  # the last lines that are not progress: git's messages
    try:
        pending = b""
        for chunk in iter(lambda: process.stderr.read1(65536), b""):
            pending += chunk
            *lines, pending = re.split(rb"[\r\n]", pending)
            for raw in lines:
                _feed(raw, handle, kept)
        _feed(pending, handle, kept)
        returncode = process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:  # the progress handler raised: git must not run on
            kill()
            process.wait()
        process.stderr.close()
    if cancelled.is_set():
        raise GitError(f"fatal: git {args[0]} was cancelled")
    if expired.is_set():
        raise GitError(f"fatal: git {args[0]} did not finish within {timeout:.0f} s and was stopped")
    if returncode != 0:
        raise GitError("\n".join(kept) or f"git {args[0]} failed with exit status {returncode}")


def _feed(raw: bytes, handle, kept: list[str]) -> None:
    line = raw.decode(errors="replace").strip()
    if not line:
        return
    handle(line)
    if not re.search(r"\d+% \(\d+/\d+\)|\d+, done\.|^remote: (Counting|Compressing|Enumerating|Total)", line):
        kept.append(line)
        del kept[:-20]


# A clone runs in a hidden sibling (the project scans skip dot directories) and is renamed into
# place only once complete: a killed admin never leaves a half clone listed as a project.
STAGING_PREFIX = ".wordslab-clone-"


def staging_path(dest: Path) -> Path:
    return dest.parent / f"{STAGING_PREFIX}{dest.name}"


def remove_interrupted_clones(workspace: Path | None) -> list[str]:
    """At admin start: delete what clones of a previous admin process left; returns their names."""
    if workspace is None or not workspace.is_dir():
        return []
    removed = []
    for entry in workspace.iterdir():
        if entry.name.startswith(STAGING_PREFIX) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name.removeprefix(STAGING_PREFIX))
    return removed


def clone(url: str, dest: Path, *, env: Mapping[str, str], branch: str | None = None,
          progress: Callable[[float, str], None] = lambda ratio, text: None,
          timeout: float = CLONE_TIMEOUT_SECONDS,
          on_cancel: Callable[[Callable[[], None]], None] | None = None,
          before_publish: Callable[[], None] = lambda: None) -> str:
    """Clone a validated URL into a new directory; on failure nothing is left behind.

    GitOpError("Clone failed: <git's fatal: line>") on any failure, after at most `timeout` s.
    `on_cancel(kill)`: registers how to stop the clone (the job's cancel calls `kill`).
    `before_publish()`: called once git succeeded, just before the project appears under `dest`.
    """
    url = validate_clone_url(url)
    branch = validate_branch(branch)
    if dest.exists() or dest.is_symlink():
        raise GitOpError(f"A project or file named {dest.name!r} already exists in the workspace.")
    staging = staging_path(dest)
    if staging.exists():
        raise GitOpError(f"A clone into {dest.name!r} is already under way.")
    args = ["clone", "--progress", *(["--branch", branch] if branch else []), "--", url, str(staging)]
    try:
        _run_with_progress(args, clone_env(env), CloneProgress(progress), timeout, on_cancel)
    except GitError as exc:
        shutil.rmtree(staging, ignore_errors=True)  # git removes what it created; be sure
        raise GitOpError(f"Clone failed: {git_failure(exc)}") from None
    except BaseException:  # a cancelled progress report: git was killed, nothing stays
        shutil.rmtree(staging, ignore_errors=True)
        raise
    before_publish()
    try:
        # rename(2) replaces an empty directory: refuse if anything took the name meanwhile.
        if dest.exists() or dest.is_symlink():
            raise FileExistsError(dest)
        staging.rename(dest)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        raise GitOpError(f"A project or file named {dest.name!r} appeared in the workspace during the "
                         "clone: nothing was changed") from None
    record_sync(dest)
    return f"cloned {public_target(url)} into {dest.name}" + (f" (branch {branch})" if branch else "")


# ---------------------------------------------------------------------------- pull / push

def _branch_for_sync(path: Path, env: Mapping[str, str], action: str):
    try:
        status, _ = read_branch_status(path, env)
    except GitError as exc:
        raise GitOpError(f"Cannot {action} {path.name}: {first_line(str(exc))}") from None
    if status.detached:
        raise GitOpError(f"Cannot {action} {path.name}: HEAD is detached; check out a branch first.")
    return status


def pull(path: Path, *, env: Mapping[str, str]) -> str:
    """`git pull --ff-only`: never creates a merge commit nor rewrites local work."""
    env = git_env(env)
    status = _branch_for_sync(path, env, "pull")
    if not status.upstream:
        raise GitOpError(f"Cannot pull {path.name}: branch {status.head} has no upstream to pull from.")
    try:
        run_git(path, "pull", "--no-rebase", "--ff-only", "--quiet", env=env, timeout=NETWORK_TIMEOUT_SECONDS)
    except GitError as exc:
        message = git_failure(exc)
        if "fast-forward" in message:
            message = ("local and remote commits have diverged; merge or rebase in a terminal "
                       f"({message})")
        raise GitOpError(f"Pull of {path.name} failed: {message}") from None
    record_sync(path)
    return f"pulled {path.name} ({status.head} fast-forwarded to {status.upstream})"


def push(path: Path, *, env: Mapping[str, str]) -> str:
    """Push the current branch to its upstream (set to the only remote when there is none)."""
    env = git_env(env)
    status = _branch_for_sync(path, env, "push")
    remotes = read_remote_urls(path, env)
    if not remotes:
        raise GitOpError(f"Cannot push {path.name}: it has no remote.")
    remote = upstream_remote(status.upstream, remotes)
    if remote:
        target_branch = status.upstream[len(remote) + 1:]
        args = ["push", "--quiet", remote, f"HEAD:refs/heads/{target_branch}"]
    elif len(remotes) == 1:
        remote, target_branch = next(iter(remotes)), status.head
        args = ["push", "--quiet", "--set-upstream", remote, f"HEAD:refs/heads/{target_branch}"]
    else:
        raise GitOpError(f"Cannot push {path.name}: branch {status.head} has no upstream and there are "
                         f"several remotes ({', '.join(sorted(remotes))}); set one in a terminal.")
    try:
        run_git(path, *args, env=env, timeout=NETWORK_TIMEOUT_SECONDS)
    except GitError as exc:
        message = git_failure(exc)
        if "rejected" in message or "fetch first" in message:
            message = f"the remote has commits this project lacks; pull first ({message})"
        raise GitOpError(f"Push of {path.name} failed: {message}") from None
    record_sync(path)
    return f"pushed {path.name} ({status.head} to {remote}/{target_branch})"


# ---------------------------------------------------------------------------- delete

@dataclass(frozen=True)
class Loss:
    """What deleting a project would lose that exists nowhere else."""

    uncommitted: tuple[str, ...] = ()
    unpushed: tuple[str, ...] = ()  # "abc1234 message" of commits on no remote
    stashes: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()  # files git ignores (data, .env, venvs): not in any commit either
    error: str | None = None  # git could not tell: treat everything as at risk

    @property
    def empty(self) -> bool:
        return not (self.uncommitted or self.unpushed or self.stashes or self.ignored or self.error)

    @property
    def fingerprint(self) -> str:
        """Changes when the loss changes, so a stale confirmation page does not count."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]

    def sections(self) -> list[tuple[str, tuple[str, ...], int]]:
        """(title, first lines, how many more) for each non-empty kind of loss."""
        kinds = [("uncommitted file", "uncommitted files", self.uncommitted),
                 ("unpushed commit", "unpushed commits", self.unpushed), ("stash", "stashes", self.stashes),
                 ("ignored file (not in git)", "ignored files (not in git)", self.ignored)]
        return [(plural(len(items), one, many), items[:MAX_LISTED], max(0, len(items) - MAX_LISTED))
                for one, many, items in kinds if items]

    def summary(self) -> str:
        if self.error:
            return f"git cannot tell what is unsaved ({self.error}); everything in the directory"
        return ", ".join(title for title, _, _ in self.sections())


def what_would_be_lost(path: Path, *, env: Mapping[str, str]) -> Loss:
    env = git_env(env)
    try:
        status, ignored = read_branch_status(path, env, ignored=True, timeout=LOCAL_TIMEOUT_SECONDS)
        unpushed = run_git(path, "log", "--branches", "--not", "--remotes", "--format=%h %s (%S)",
                           env=env, timeout=LOCAL_TIMEOUT_SECONDS)
        stashes = run_git(path, "stash", "list", "--format=%gd %s", env=env, timeout=LOCAL_TIMEOUT_SECONDS)
    except GitError as exc:
        # git cannot read it (a broken .git): every file may be unsaved work, so name them.
        return Loss(uncommitted=files_outside_git(path), error=first_line(str(exc)))
    return Loss(status.changed, tuple(unpushed.splitlines()), tuple(stashes.splitlines()), ignored)


def files_outside_git(path: Path, limit: int = 10_000) -> tuple[str, ...]:
    """Paths of the files under `path` outside .git (relative, escaped if not UTF-8), sorted; at
    most `limit`, so a huge tree does not stall the page."""
    found: list[str] = []
    for dirpath, dirs, names in os.walk(path):
        if dirpath == str(path):
            dirs[:] = [d for d in dirs if d != ".git"]
        rel = os.path.relpath(dirpath, path)
        found += [readable(name if rel == "." else f"{rel}/{name}") for name in names
                  if not (dirpath == str(path) and name == ".git")]
        if len(found) >= limit:
            break
    return tuple(sorted(found)[:limit])


class ConfirmationRequired(GitOpError):
    def __init__(self, name: str, loss: Loss):
        super().__init__(f"Deleting {name} would lose {loss.summary()}: confirm to delete anyway.")
        self.loss = loss


def delete(path: Path, *, env: Mapping[str, str], confirmed: bool = False,
           expected_fingerprint: str | None = None) -> Loss:
    """Delete a project; refuses without `confirmed` when something would be lost.

    With `expected_fingerprint` (from the confirmation page), a loss that changed since the
    user saw it needs a new confirmation.
    """
    loss = what_would_be_lost(path, env=env)
    if not loss.empty and not confirmed:
        raise ConfirmationRequired(path.name, loss)
    if expected_fingerprint is not None and expected_fingerprint != loss.fingerprint:
        raise ConfirmationRequired(path.name, loss)
    shutil.rmtree(path)
    return loss
