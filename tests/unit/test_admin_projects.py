"""Projects admin pages through Flask's test client, with real repos and a loopback HTTP remote."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from common.store.jobs import Job
from tests.fakes.git_http import git_remote  # noqa: F401  (fixture)
from tests.support.admin import csrf_from, logged_in_client, make_admin_app
from tests.support.git_repos import clone, commit, git, make_remote, push_from_second_clone
from tests.support.waiting import eventually


@pytest.fixture
def admin(vm_env, git_remote):
    app = make_admin_app(vm_env, view_modules=("jobs", "projects"), grafana_url="http://grafana.test:3000")
    ctx = app.extensions["wordslab"]
    client = logged_in_client(app)
    token = csrf_from(client.get("/admin/projects/").text)
    yield client, token, ctx, Path(vm_env["WORDSLAB_WORKSPACE"]), git_remote
    ctx.sources.stop()
    ctx.jobs.wait_idle()
    ctx.jobs.shutdown()
    ctx.engine.dispose()


def jobs(ctx) -> list[Job]:
    with ctx.sessions() as s:
        return list(s.scalars(select(Job).order_by(Job.id)))


def field_errors(html: str) -> list[str]:
    return [re.sub(r"&#39;", "'", e) for e in re.findall(r'field-error">([^<]*)<', html)]


def test_pages_need_a_login(vm_env):
    client = make_admin_app(vm_env, view_modules=("projects",)).test_client()
    for url in ("/admin/projects/", "/admin/projects/new/"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_list_shows_projects_with_sync_state_and_grafana_link(admin):
    client, _, _, workspace, remote = admin
    make_remote(remote.root, "demo")
    repo = clone(remote.url("demo"), workspace / "demo")
    commit(repo, "local.txt", "x\n")
    (repo / "draft.txt").write_text("draft\n")

    def demo_row():
        html = client.get("/admin/projects/").text
        row = html[html.index('id="project-demo"'):] if 'id="project-demo"' in html else ""
        row = row[:row.index("</tr>")] if row else ""
        # The list is a snapshot kept fresh by file events: the clone and edits show within seconds.
        return (html, row) if "↑1 / ↓0" in row and '<td class="changes">1</td>' in row else None

    html, row = eventually(demo_row) or (client.get("/admin/projects/").text, "")
    assert remote.url("demo") in row and "origin/main" in row
    assert '<td class="changes">1</td>' in row
    assert "↑1 / ↓0" in row
    assert "/admin/projects/demo/pull/" in row and "/admin/projects/demo/delete/" in row
    assert 'href="http://grafana.test:3000/d/wordslab-devenv"' in html
    assert 'href="/admin/projects/new/"' in html


def test_clone_form_runs_a_job_without_showing_credentials(admin):
    client, token, ctx, workspace, remote = admin
    make_remote(remote.root, "demo", {"README.md": "# demo\n"})
    url = remote.url("demo").replace("http://", "http://someone:s3cret@")
    response = client.post("/admin/projects/new/", data={"url": url, "name": "", "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/jobs/")
    assert ctx.jobs.wait_idle(60)
    [job] = jobs(ctx)
    assert (job.kind, job.status, job.progress) == ("clone", "done", 1.0)
    assert job.target == remote.url("demo") and job.message == f"cloned {remote.url('demo')} into demo"
    assert (workspace / "demo" / "README.md").read_text() == "# demo\n"
    listing = client.get("/admin/projects/").text
    assert 'id="project-demo"' in listing and "s3cret" not in listing
    assert "s3cret" not in client.get("/admin/jobs/").text


def test_failed_clone_is_a_failed_job_and_leaves_nothing(admin):
    client, token, ctx, workspace, remote = admin
    client.post("/admin/projects/new/", data={"url": remote.url("missing"), "csrf_token": token})
    assert ctx.jobs.wait_idle(60)
    [job] = jobs(ctx)
    assert job.status == "failed" and job.message.startswith("Clone failed")
    assert list(workspace.iterdir()) == []


@pytest.mark.parametrize("form, message", [
    ({"url": "--upload-pack=touch /tmp/pwned"}, "'--upload-pack' is a git command-line option"),
    ({"url": "/srv/git/demo.git"}, "local paths cannot be cloned"),
    ({"url": "ext::sh -c touch% /tmp/pwned"}, "ext:: transport can run commands"),
    ({"url": "file:///srv/git/demo.git"}, "file:// URLs read local paths"),
    ({"url": "REMOTE", "name": "../escape"}, "without '/'"),
    ({"url": "REMOTE", "name": ".."}, "'..' is not allowed"),
    ({"url": "REMOTE", "name": "x;rm -rf ~"}, "shell characters"),
    ({"url": "REMOTE", "name": "taken"}, "already exists"),
    ({"url": "REMOTE", "branch": "--upload-pack=x"}, "Refused branch"),
])
def test_bad_clone_input_is_refused_and_changes_nothing(admin, form, message):
    client, token, ctx, workspace, remote = admin
    make_remote(remote.root, "demo")
    (workspace / "taken").mkdir()
    data = {**form, "csrf_token": token}
    data["url"] = data["url"].replace("REMOTE", remote.url("demo"))
    response = client.post("/admin/projects/new/", data=data)
    assert response.status_code == 200
    assert any(message in error for error in field_errors(response.text)), field_errors(response.text)
    assert sorted(p.name for p in workspace.iterdir()) == ["taken"] and jobs(ctx) == []


def test_posts_without_csrf_token_are_refused(admin):
    client, _, ctx, workspace, remote = admin
    make_remote(remote.root, "demo")
    repo = clone(remote.url("demo"), workspace / "demo")
    commit(repo, "local.txt", "x\n")
    head = git(repo, "rev-parse", "HEAD")
    for url, data in (("/admin/projects/new/", {"url": remote.url("demo"), "name": "other"}),
                      ("/admin/projects/demo/pull/", {}), ("/admin/projects/demo/push/", {}),
                      ("/admin/projects/demo/delete/", {"fingerprint": "x", "confirm": "1"})):
        assert client.post(url, data=data).status_code == 400
        assert client.post(url, data={**data, "csrf_token": "forged"}).status_code == 400
    assert jobs(ctx) == [] and [p.name for p in workspace.iterdir()] == ["demo"]
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(remote.root / "demo.git", "rev-parse", "main") != head


def test_pull_and_push_buttons_run_jobs(admin, tmp_path):
    client, token, ctx, workspace, remote = admin
    make_remote(remote.root, "behind")
    make_remote(remote.root, "ahead")
    behind = clone(remote.url("behind"), workspace / "behind")
    ahead = clone(remote.url("ahead"), workspace / "ahead")
    pushed_elsewhere = push_from_second_clone(remote.url("behind"), tmp_path / "other", "NEWS.md", "n\n")
    local = commit(ahead, "work.txt", "w\n")

    assert client.post("/admin/projects/behind/pull/", data={"csrf_token": token}).status_code == 302
    assert client.post("/admin/projects/ahead/push/", data={"csrf_token": token}).status_code == 302
    assert ctx.jobs.wait_idle(60)
    assert {(j.kind, j.target, j.status) for j in jobs(ctx)} == {("pull", "behind", "done"),
                                                                ("push", "ahead", "done")}
    assert git(behind, "rev-parse", "HEAD").strip() == pushed_elsewhere
    assert git(remote.root / "ahead.git", "rev-parse", "main").strip() == local


def test_failed_pull_shows_why_in_the_job(admin, tmp_path):
    client, token, ctx, workspace, remote = admin
    make_remote(remote.root, "demo")
    repo = clone(remote.url("demo"), workspace / "demo")
    push_from_second_clone(remote.url("demo"), tmp_path / "other", "NEWS.md", "n\n")
    commit(repo, "mine.txt", "m\n")
    client.post("/admin/projects/demo/pull/", data={"csrf_token": token})
    assert ctx.jobs.wait_idle(60)
    [job] = jobs(ctx)
    assert job.status == "failed" and "diverged" in job.message


def test_delete_shows_the_loss_and_needs_the_box_ticked(admin):
    client, token, ctx, workspace, remote = admin
    make_remote(remote.root, "demo")
    repo = clone(remote.url("demo"), workspace / "demo")
    commit(repo, "unpushed.txt", "u\n", "precious analysis")
    (repo / "draft.ipynb").write_text("{}\n")

    page = client.post("/admin/projects/demo/delete/", data={"csrf_token": token})
    assert page.status_code == 200 and repo.exists()
    assert "1 uncommitted file" in page.text and "draft.ipynb" in page.text
    assert "1 unpushed commit" in page.text and "precious analysis" in page.text
    fingerprint = re.search(r'name="fingerprint" value="([^"]+)"', page.text).group(1)

    refused = client.post("/admin/projects/demo/delete/", data={"csrf_token": token, "fingerprint": fingerprint})
    assert refused.status_code == 409 and "tick the box" in refused.text and repo.exists()

    (repo / "later.txt").write_text("new since the page was shown\n")
    stale = client.post("/admin/projects/demo/delete/",
                        data={"csrf_token": token, "fingerprint": fingerprint, "confirm": "1"})
    assert stale.status_code == 409 and "changed since" in stale.text and "later.txt" in stale.text
    assert repo.exists()

    fingerprint = re.search(r'name="fingerprint" value="([^"]+)"', stale.text).group(1)
    done = client.post("/admin/projects/demo/delete/",
                       data={"csrf_token": token, "fingerprint": fingerprint, "confirm": "1"})
    assert done.status_code == 302 and not repo.exists()
    assert "Deleted project demo" in client.get("/admin/projects/").text


def test_delete_of_an_unreadable_project_inside_a_parent_repo_names_its_files(admin):
    client, token, _, workspace, _ = admin
    git(workspace.parent, "init", "-q")  # the workspace sits inside another repository
    project = workspace / "broken"
    (project / ".git").mkdir(parents=True)  # .git there but not a repository
    (project / "notes").mkdir()
    (project / "notes" / "thesis.md").write_text("months of work\n")
    page = client.post("/admin/projects/broken/delete/", data={"csrf_token": token})
    assert page.status_code == 200 and project.exists()
    assert "Git cannot read this project" in page.text and "not a git repository" in page.text
    assert "1 uncommitted file" in page.text and "notes/thesis.md" in page.text
    # The list is a snapshot kept fresh by file events: the new folder shows within seconds.
    listed = 'id="project-broken" data-state="error"'
    assert eventually(lambda: listed in client.get("/admin/projects/").text)


def test_clean_project_confirmation_says_nothing_is_lost(admin):
    client, token, _, workspace, remote = admin
    make_remote(remote.root, "demo")
    clone(remote.url("demo"), workspace / "demo")
    page = client.post("/admin/projects/demo/delete/", data={"csrf_token": token})
    assert "Nothing would be lost" in page.text


@pytest.mark.parametrize("name, message", [("nope", "no project named"), ("..", "&#39;..&#39;"),
                                           ("plain", "no project named")])
def test_actions_on_unknown_projects_are_refused(admin, name, message):
    client, token, ctx, workspace, _ = admin
    (workspace / "plain").mkdir()
    for action in ("pull", "push", "delete"):
        response = client.post(f"/admin/projects/{name}/{action}/", data={"csrf_token": token},
                               follow_redirects=True)
        assert message in response.text
    assert (workspace / "plain").exists() and jobs(ctx) == []
    with ctx.sessions() as s:
        assert s.scalar(select(func.count(Job.id))) == 0
