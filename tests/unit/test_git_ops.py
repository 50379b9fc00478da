"""admin.ops.git_ops: validation refuses bad input before git runs; real clone/pull/push/delete."""
from __future__ import annotations

import os

import pytest

from admin.ops import git_ops
from admin.ops.git_ops import ConfirmationRequired, GitOpError
from common.sources.git_status import git_env, last_sync_timestamp, read_branch_status
from tests.fakes.git_http import git_remote  # noqa: F401  (fixture)
from tests.support.git_repos import clone, commit, git, init_repo, make_remote, push_from_second_clone

ENV = dict(os.environ)


@pytest.fixture
def workspace(tmp_path):
    ws = tmp_path / "workspace"
    ws.mkdir()
    return ws


@pytest.mark.parametrize("url", [
    "https://github.com/owner/repo.git", "http://127.0.0.1:8080/demo.git",
    "ssh://git@host.example:2222/owner/repo.git", "git@github.com:owner/repo.git", "gitlab.example:team/repo",
])
def test_accepts_network_git_urls(url):
    assert git_ops.validate_clone_url(f"  {url} ") == url


@pytest.mark.parametrize("url, message", [
    ("", "Enter the git URL"),
    ("--upload-pack=touch /tmp/pwned", "'--upload-pack' is a git command-line option"),
    ("-u touch", "command-line option"),
    ("ext::sh -c touch% /tmp/pwned", "ext:: transport can run commands"),
    ("fd::3", "fd:: transport"),
    ("/srv/git/repo.git", "local paths"),
    ("./repo", "local paths"),
    ("../repo", "local paths"),
    ("~/repo", "local paths"),
    ("repo.git", "local paths"),
    ("dir/sub:repo", "local paths"),
    ("file:///srv/git/repo.git", "file:// URLs read local paths"),
    ("FILE:///srv/git/repo.git", "file:// URLs"),
    ("git://host.example/repo.git", "git:// scheme is not supported"),
    ("ftp://host.example/repo.git", "ftp:// scheme is not supported"),
    ("ssh://-oProxyCommand=touch%20x/repo", "needs a host name"),
    ("https:///repo.git", "needs a host name"),
    ("https://host.example", "needs a repository path"),
    ("https://host.example:99999/r.git", "Not a valid URL"),
    ("https://host.example/r .git", "spaces or control characters"),
    ("git@-oProxyCommand=x:repo", "Not a git URL"),
])
def test_refuses_bad_clone_urls_with_a_clear_message(url, message):
    with pytest.raises(GitOpError) as err:
        git_ops.validate_clone_url(url)
    assert message in str(err.value)


@pytest.mark.parametrize("name, message", [
    ("..", "'..' is not allowed"), ("a..b", "'..'"), ("a/b", "without '/'"), ("a\\b", "without '/'"),
    ("-rf", "must not start with '-' or '.'"), (".hidden", "must not start"),
    ("a;b", "shell characters"), ("$(touch x)", "shell characters"), ("a b", "shell characters"),
    ("a`b`", "shell characters"), ("x" * 101, "100 at most"), ("", "Enter a project name"),
])
def test_refuses_bad_project_names(workspace, name, message):
    with pytest.raises(GitOpError) as err:
        git_ops.validate_new_project_name(workspace, name)
    assert message in str(err.value)


def test_refuses_existing_names_and_a_missing_workspace(workspace):
    init_repo(workspace / "taken")
    (workspace / "file.txt").write_text("x")
    for name in ("taken", "file.txt"):
        with pytest.raises(GitOpError, match="already exists"):
            git_ops.validate_new_project_name(workspace, name)
    assert git_ops.validate_new_project_name(workspace, "free_name-1.0") == "free_name-1.0"
    with pytest.raises(GitOpError, match="WORDSLAB_WORKSPACE is not set"):
        git_ops.validate_new_project_name(None, "x")


@pytest.mark.parametrize("branch", ["-b", "a..b", "a b", "feature/", "x.lock", "/x", "a;b"])
def test_refuses_bad_branches(branch):
    with pytest.raises(GitOpError, match="Refused branch"):
        git_ops.validate_branch(branch)


def test_name_from_url():
    assert git_ops.name_from_url("https://github.com/o/repo.git") == "repo"
    assert git_ops.name_from_url("git@github.com:o/my-repo.git/") == "my-repo"


def test_clone_over_http_reports_progress_and_records_sync(workspace, git_remote):
    make_remote(git_remote.root, "demo", {"README.md": "# demo\n", "data.txt": "x" * 200_000})
    git(git_remote.root / "demo.git", "branch", "dev")
    reports = []
    message = git_ops.clone(git_remote.url("demo"), workspace / "demo", env=ENV, branch="dev",
                            progress=lambda ratio, text: reports.append((ratio, text)))
    assert message == f"cloned {git_remote.url('demo')} into demo (branch dev)"
    assert (workspace / "demo" / "data.txt").read_text() == "x" * 200_000
    assert git(workspace / "demo", "branch", "--show-current").strip() == "dev"
    assert last_sync_timestamp(workspace / "demo") is not None
    assert reports and all(0.0 <= r <= 1.0 for r, _ in reports)
    assert [r for r, _ in reports] == sorted(r for r, _ in reports)
    assert any(text.startswith(("receiving objects", "checking out files")) for _, text in reports)


def test_failed_clone_leaves_nothing_and_hides_credentials(workspace, git_remote):
    url = git_remote.url("missing").replace("http://", "http://user:s3cret@")
    with pytest.raises(GitOpError) as err:
        git_ops.clone(url, workspace / "missing", env=ENV)
    assert "Clone failed" in str(err.value) and "s3cret" not in str(err.value)
    assert list(workspace.iterdir()) == []


def test_clone_refuses_options_and_transports_before_running_git(tmp_path, workspace):
    marker = tmp_path / "pwned"
    for url in (f"--upload-pack=touch {marker}", f"ext::sh -c touch% {marker}", f"file://{tmp_path}"):
        with pytest.raises(GitOpError, match="Refused"):
            git_ops.clone(url, workspace / "x", env=ENV)
    assert not marker.exists() and list(workspace.iterdir()) == []


@pytest.fixture
def cloned(workspace, git_remote, tmp_path):
    make_remote(git_remote.root, "demo")
    repo = clone(git_remote.url("demo"), workspace / "demo")
    return repo, git_remote.url("demo"), tmp_path / "elsewhere"


def test_pull_fast_forwards(cloned):
    repo, url, elsewhere = cloned
    sha = push_from_second_clone(url, elsewhere, "NEWS.md", "news\n")
    assert git_ops.pull(repo, env=ENV).startswith("pulled demo")
    assert git(repo, "rev-parse", "HEAD").strip() == sha
    assert last_sync_timestamp(repo) is not None


def test_pull_refuses_to_merge_diverged_history(cloned):
    repo, url, elsewhere = cloned
    push_from_second_clone(url, elsewhere, "NEWS.md", "news\n")
    local = commit(repo, "local.txt", "mine\n")
    with pytest.raises(GitOpError, match="diverged"):
        git_ops.pull(repo, env=ENV)
    assert git(repo, "rev-parse", "HEAD").strip() == local  # no merge commit made


def test_pull_and_push_refuse_detached_head_and_missing_upstream(cloned, workspace):
    repo, _, _ = cloned
    git(repo, "checkout", "-q", "--detach")
    for op in (git_ops.pull, git_ops.push):
        with pytest.raises(GitOpError, match="HEAD is detached"):
            op(repo, env=ENV)
    local = init_repo(workspace / "local")
    with pytest.raises(GitOpError, match="no upstream to pull from"):
        git_ops.pull(local, env=ENV)
    with pytest.raises(GitOpError, match="has no remote"):
        git_ops.push(local, env=ENV)


def test_push_sends_commits_and_sets_a_missing_upstream(cloned, git_remote):
    repo, _, _ = cloned
    sha = commit(repo, "work.txt", "done\n")
    assert git_ops.push(repo, env=ENV) == "pushed demo (main to origin/main)"
    assert git(git_remote.root / "demo.git", "rev-parse", "main").strip() == sha
    git(repo, "checkout", "-q", "-b", "feature")
    feature = commit(repo, "feature.txt", "f\n")
    git_ops.push(repo, env=ENV)
    assert git(git_remote.root / "demo.git", "rev-parse", "feature").strip() == feature
    status, _ = read_branch_status(repo, git_env())
    assert status.upstream == "origin/feature" and status.ahead == 0


def test_push_rejected_when_the_remote_moved(cloned, git_remote):
    repo, url, elsewhere = cloned
    remote_sha = push_from_second_clone(url, elsewhere, "NEWS.md", "news\n")
    commit(repo, "local.txt", "mine\n")
    with pytest.raises(GitOpError, match="pull first"):
        git_ops.push(repo, env=ENV)
    assert git(git_remote.root / "demo.git", "rev-parse", "main").strip() == remote_sha


def test_loss_names_uncommitted_unpushed_stashed_and_ignored(cloned):
    repo, _, _ = cloned
    assert git_ops.what_would_be_lost(repo, env=ENV).empty
    commit(repo, ".gitignore", "*.env\n")
    commit(repo, "analysis.py", "print(42)\n", "analysis of the results")
    (repo / "secrets.env").write_text("KEY=1\n")
    (repo / "draft.txt").write_text("draft\n")
    (repo / "README.md").write_text("stashed edit\n")
    git(repo, "stash", "push", "-q", "-m", "wip readme")
    loss = git_ops.what_would_be_lost(repo, env=ENV)
    assert loss.uncommitted == ("draft.txt",)
    assert [line.split(" ", 1)[1] for line in loss.unpushed] == [
        "analysis of the results (main)", "edit .gitignore (main)"]
    assert len(loss.stashes) == 1 and "wip readme" in loss.stashes[0]
    assert loss.ignored == ("secrets.env",)
    assert loss.summary() == ("1 uncommitted file, 2 unpushed commits, 1 stash, "
                              "1 ignored file (not in git)")


def test_delete_refuses_without_confirmation_and_names_the_loss(cloned, workspace):
    repo, _, _ = cloned
    commit(repo, "unpushed.txt", "x\n", "precious work")
    with pytest.raises(ConfirmationRequired) as err:
        git_ops.delete(repo, env=ENV)
    assert "1 unpushed commit" in str(err.value) and "precious work" in err.value.loss.unpushed[0]
    assert repo.exists()

    stale = err.value.loss.fingerprint
    (repo / "new.txt").write_text("appeared after the page was shown\n")
    with pytest.raises(ConfirmationRequired):
        git_ops.delete(repo, env=ENV, confirmed=True, expected_fingerprint=stale)
    assert repo.exists()

    current = git_ops.what_would_be_lost(repo, env=ENV).fingerprint
    git_ops.delete(repo, env=ENV, confirmed=True, expected_fingerprint=current)
    assert not repo.exists() and list(workspace.iterdir()) == []


def test_delete_of_a_clean_clone_needs_no_confirmation(cloned):
    repo, _, _ = cloned
    assert git_ops.delete(repo, env=ENV).empty
    assert not repo.exists()


def test_corrupt_repo_counts_as_loss_of_everything(workspace):
    bad = init_repo(workspace / "bad")
    (bad / ".git" / "HEAD").write_text("garbage\n")
    loss = git_ops.what_would_be_lost(bad, env=ENV)
    assert loss.error and not loss.empty and "everything in the directory" in loss.summary()
    with pytest.raises(ConfirmationRequired):
        git_ops.delete(bad, env=ENV)
    assert bad.exists()


def test_project_path_only_names_projects_in_the_workspace(tmp_path, workspace):
    init_repo(workspace / "real")
    outside = init_repo(tmp_path / "outside")
    os.symlink(outside, workspace / "link")
    (workspace / "plain").mkdir()
    assert git_ops.project_path(workspace, "real") == workspace / "real"
    for name, message in (("..", "'..'"), ("../outside", "without '/'"), ("link", "symbolic link"),
                          ("plain", "no project named"), ("nope", "no project named")):
        with pytest.raises(GitOpError) as err:
            git_ops.project_path(workspace, name)
        assert message in str(err.value)


# --- every clone failure shows git's own fatal: line --------------------------------------------

def _clone_failure(url: str, workspace, **kwargs) -> str:
    with pytest.raises(GitOpError) as err:
        git_ops.clone(url, workspace / "x", env=ENV, **kwargs)
    assert list(workspace.iterdir()) == []
    return str(err.value)


def test_clone_of_a_missing_repository_says_not_found(workspace, git_remote):
    message = _clone_failure(git_remote.url("missing"), workspace)
    assert message.startswith("Clone failed: fatal: repository ") and "not found" in message
    assert "exit code" not in message and "Cmd(" not in message


def test_clone_that_needs_a_password_says_so(workspace):
    from tests.fakes.hostile_http import AskingPassword
    from tests.fakes.loopback import serving
    with serving(AskingPassword) as url:
        message = _clone_failure(url + "/private/repo.git", workspace)
    assert message.startswith("Clone failed: fatal: could not read Username"), message


def test_clone_over_untrusted_tls_says_why(workspace):
    from tests.fakes.hostile_http import untrusted_tls
    with untrusted_tls() as url:
        message = _clone_failure(url + "/o/repo.git", workspace)
    assert message.startswith("Clone failed: fatal: unable to access") and "certificate" in message, message


def test_clone_of_an_unknown_host_says_it_cannot_resolve(workspace):
    message = _clone_failure("https://no-such-host.invalid/o/repo.git", workspace)
    assert "fatal: unable to access" in message and "Could not resolve host" in message, message


def test_clone_of_a_missing_branch_names_it(workspace, git_remote):
    make_remote(git_remote.root, "demo")
    message = _clone_failure(git_remote.url("demo"), workspace, branch="nope")
    assert "fatal: Remote branch nope not found" in message, message


def test_clone_that_never_ends_is_stopped_at_its_deadline(workspace):
    from tests.fakes.hostile_http import silent
    with silent() as url:
        message = _clone_failure(url + "/o/repo.git", workspace, timeout=2)
    assert message == "Clone failed: fatal: git clone did not finish within 2 s and was stopped"
