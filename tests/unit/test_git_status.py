"""common.sources.git_status against real repositories (a local bare repo as remote)."""
from __future__ import annotations

import os
import socket

import pytest

from common.sources import git_status
from common.sources.git_status import (
    discover_projects, fetch_all, git_env, last_sync_timestamp, parse_porcelain_v2, read_branch_status,
    read_project, redact_url, scan_statuses, walk_project,
)
from tests.support.env import free_port
from tests.support.git_repos import clone, git, init_repo, make_remote, sample_projects


@pytest.fixture
def workspace(tmp_path):
    ws = tmp_path / "workspace"
    ws.mkdir()
    return ws


@pytest.fixture
def sample(tmp_path, workspace):
    remotes = tmp_path / "remotes"
    return sample_projects(workspace, remotes, lambda name: str(remotes / f"{name}.git"))


def test_discovers_only_git_dirs_directly_under_the_workspace(workspace):
    init_repo(workspace / "proj")
    init_repo(workspace / "proj" / "nested")
    init_repo(workspace / ".openwebui")  # app data, not a project
    (workspace / "plain-dir").mkdir()
    (workspace / "file.txt").write_text("x")
    assert [p.name for p in discover_projects(workspace)] == ["proj"]
    assert discover_projects(workspace / "missing") == []
    assert discover_projects(None) == []


def test_status_counts_modified_staged_untracked_and_odd_names_once(workspace):
    repo = init_repo(workspace / "p", {"a.txt": "a\n", "b.txt": "b\n", "old name.txt": "o\n"})
    (repo / "a.txt").write_text("changed\n")
    (repo / "b.txt").write_text("staged\n")
    git(repo, "add", "b.txt")
    (repo / "b.txt").write_text("staged then modified\n")
    git(repo, "mv", "old name.txt", "new\nname.txt")
    (repo / "untracked dir").mkdir()
    (repo / "untracked dir" / "x").write_text("x")
    (repo / "loose file.txt").write_text("y")
    branch, _ = read_branch_status(repo, git_env())
    assert branch.head == "main" and branch.upstream is None and branch.ahead is None
    assert set(branch.staged) == {"b.txt", "new\nname.txt"}
    assert set(branch.modified) == {"a.txt", "b.txt"}
    assert set(branch.untracked) == {"untracked dir/", "loose file.txt"}
    assert len(branch.changed) == 5


def test_parse_reports_conflicts_and_initial_branch():
    raw = "\0".join([
        "# branch.oid (initial)", "# branch.head main",
        "u UU N... 100644 100644 100644 100644 " + " ".join(["a" * 40] * 3) + " both.txt", "",
    ])
    status = parse_porcelain_v2(raw)
    assert status.oid is None and status.head == "main"
    assert status.conflicted == ("both.txt",) and status.changed == ("both.txt",)


def test_sync_states_ahead_behind_after_fetch(sample, workspace):
    before = scan_statuses(workspace, os.environ)
    assert before["behind"].branch.behind == 0  # not fetched yet: git cannot know

    results = fetch_all(workspace, os.environ)
    assert set(results) == {"synced", "behind", "ahead", "changed"}  # "local" has nothing to fetch
    assert all(r.ok for r in results.values())

    statuses = scan_statuses(workspace, os.environ)
    assert {n: s.state for n, s in statuses.items()} == {
        "synced": "tracking", "behind": "tracking", "ahead": "tracking", "changed": "tracking",
        "local": "no_remote"}
    assert (statuses["behind"].branch.ahead, statuses["behind"].branch.behind) == (0, 1)
    assert (statuses["ahead"].branch.ahead, statuses["ahead"].branch.behind) == (2, 0)
    assert len(statuses["changed"].branch.changed) == 3
    assert statuses["synced"].branch.changed == ()
    assert statuses["synced"].last_sync is not None
    assert statuses["local"].last_sync is None and statuses["local"].git_url == ""
    assert statuses["ahead"].git_url.endswith("remotes/ahead.git")
    head_time = int(git(sample["ahead"], "log", "-1", "--format=%ct"))
    assert statuses["ahead"].last_commit == head_time


def test_failed_fetch_is_reported_and_does_not_count_as_sync(tmp_path, workspace):
    make_remote(tmp_path / "remotes", "gone")
    repo = clone(str(tmp_path / "remotes" / "gone.git"), workspace / "gone")
    git(repo, "remote", "set-url", "origin", f"http://user:s3cret@127.0.0.1:{free_port()}/gone.git")
    result = fetch_all(workspace, os.environ)["gone"]
    assert not result.ok
    assert "s3cret" not in result.error and "127.0.0.1" in result.error
    assert last_sync_timestamp(repo) is None  # git truncated FETCH_HEAD: not a sync
    assert read_project(repo, git_env()).git_url.startswith("http://127.0.0.1:")


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def test_a_fetch_from_a_remote_that_never_answers_is_stopped_with_its_helpers(tmp_path, workspace):
    """git runs `git-remote-http` (or ssh) as a child: stopping git alone at the timeout left that
    helper waiting on the silent server for ever, one more at each fetch slot."""
    make_remote(tmp_path / "remotes", "silent")
    repo = clone(str(tmp_path / "remotes" / "silent.git"), workspace / "silent")
    with socket.socket() as server:  # accepts connections (the kernel's backlog) and never answers
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/silent-{os.getpid()}.git"
        git(repo, "remote", "set-url", "origin", url)
        result = git_status.fetch_project(repo, git_env(), timeout=2)
        assert not result.ok and "timed out" in result.error
        assert _processes_mentioning(url) == []


def test_detached_head_no_upstream_and_empty_repo(tmp_path, workspace):
    make_remote(tmp_path / "remotes", "r")
    detached = clone(str(tmp_path / "remotes" / "r.git"), workspace / "detached")
    git(detached, "checkout", "-q", "--detach", "HEAD")
    no_upstream = clone(str(tmp_path / "remotes" / "r.git"), workspace / "no-upstream")
    git(no_upstream, "checkout", "-q", "-b", "feature")
    empty = workspace / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")

    statuses = scan_statuses(workspace, os.environ)
    assert statuses["detached"].state == "detached" and statuses["detached"].branch.head is None
    assert statuses["no-upstream"].state == "no_upstream"
    assert statuses["empty"].state == "no_remote" and statuses["empty"].last_commit is None


def test_corrupt_repo_gives_error_state_and_others_still_scan(workspace):
    init_repo(workspace / "good")
    bad = init_repo(workspace / "bad")
    (bad / ".git" / "HEAD").write_text("garbage\n")
    statuses = scan_statuses(workspace, os.environ)
    assert statuses["good"].state == "no_remote"
    assert statuses["bad"].state == "error" and statuses["bad"].branch is None
    assert "git repository" in statuses["bad"].error


@pytest.mark.parametrize("url, shown", [
    ("https://user:tok3n@github.com/o/r.git", "https://github.com/o/r.git"),
    ("https://ghp_tok3n@github.com:8443/o/r.git?x=tok3n", "https://github.com:8443/o/r.git"),
    ("ssh://git:tok3n@host.example/o/r.git", "ssh://git@host.example/o/r.git"),
    ("git@github.com:o/r.git", "git@github.com:o/r.git"),
    ("", ""),
])
def test_redact_url_strips_credentials(url, shown):
    assert redact_url(url) == shown


def test_walk_counts_git_in_size_but_not_in_last_modified(workspace):
    repo = init_repo(workspace / "p", {"data.bin": "x" * 50_000})
    os.utime(repo / "data.bin", (1_000_000, 1_000_000))
    os.utime(repo, (1_000_000, 1_000_000))
    os.utime(repo / ".git" / "index", (2_000_000_000, 2_000_000_000))
    os.link(repo / "data.bin", repo / "hardlink.bin")  # counted once, like du
    os.utime(repo / "data.bin", (1_500_000, 1_500_000))
    files = walk_project(repo)
    assert files.last_modified == 1_500_000
    git_only = walk_project(repo / ".git")
    assert 50_000 + git_only.size_bytes <= files.size_bytes < 2 * 50_000 + git_only.size_bytes


def test_record_sync_is_read_back(workspace):
    repo = init_repo(workspace / "p")
    git_status.record_sync(repo, when=1_700_000_000.0)
    assert last_sync_timestamp(repo) == 1_700_000_000.0


# --- git as it is on real machines (issue 9 B) -------------------------------------------------

def chown_tree(path, uid: int = 1000, gid: int = 1000) -> None:
    for dirpath, dirs, files in os.walk(path):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirs + files)]:
            os.lchown(name, uid, gid)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the repo to uid 1000, as compose runs")
def test_workspace_owned_by_another_user_reads_right_without_touching_git_config(tmp_path, workspace):
    remotes = tmp_path / "remotes"
    make_remote(remotes, "demo", {"README.md": "# demo\n"})
    repo = clone(str(remotes / "demo.git"), workspace / "demo")
    chown_tree(repo)  # the user's files; the exporter runs as root
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    env.pop("SUDO_UID", None)  # git trusts sudo's caller: not our case
    with pytest.raises(Exception, match="dubious ownership"):  # what plain git says here
        git_status.run_git(None, "-C", str(repo), "status", env=git_env(env), timeout=20)

    status = read_project(repo, git_env(env))
    assert status.state == "tracking", status.error
    branch = status.branch
    assert (branch.head, branch.upstream, branch.ahead, branch.behind, len(branch.changed)) == \
        ("main", "origin/main", 0, 0, 0)
    assert fetch_all(workspace, env)["demo"].ok
    assert not (home / ".gitconfig").exists() and not (home / ".config" / "git").exists()


def test_broken_project_inside_a_parent_repository_is_an_error_not_the_parents_status(tmp_path):
    parent = init_repo(tmp_path / "home", {"dotfiles.txt": "x\n"})  # the workspace lives in a repo
    workspace = parent / "workspace"
    project = workspace / "broken"
    (project / ".git").mkdir(parents=True)  # an interrupted clone, a hand-deleted HEAD...
    (project / "analysis.ipynb").write_text("{}\n")
    statuses = scan_statuses(workspace, os.environ)
    assert statuses["broken"].state == "error"
    assert statuses["broken"].branch is None
    assert "not a git repository" in statuses["broken"].error


def test_first_line_masks_a_url_password_before_cutting_the_line():
    # git quotes the remote URL; a cut at 300 characters through `user:token@` left the token's
    # first part, which no later scrub recognises (no '@' after it any more).
    token = "ghx" + "T0k3nPart" * 10
    message = f"fatal: unable to access 'https://{'u' * 200}:{token}@git.example/r.git/': not found\nmore"
    shown = git_status.first_line(message)
    assert token[:20] not in shown and shown.startswith("fatal: unable to access 'https://")
    assert len(shown) <= 303
