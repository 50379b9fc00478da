"""Projects page: git repos of the workspace, clone form, pull/push/delete actions.

Clone, pull and push reach the network, so they run as jobs; delete asks first on a
page that names what would be lost, and refuses without the confirm box ticked.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from flask import current_app, flash, redirect, request, url_for
from flask_admin import expose
from wtforms import StringField
from wtforms.validators import ValidationError

from common.readable import readable
from common.store.jobs import Job

from admin.context import AdminContext
from admin.formatting import human_bytes
from admin.jobs import JobFailed, active_jobs
from admin.ops import git_ops
from admin.row_cache import RowCache
from admin.security import CSRFForm, SecureBaseView, confirmed
from admin.validation import max_chars

log = logging.getLogger(__name__)

PROJECT_JOB_KINDS = ("clone", "pull", "push")


def age_text(timestamp: float | None, now: float | None = None) -> str:
    if timestamp is None:
        return "never"
    seconds = max(0, (now or time.time()) - timestamp)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now"


def iso_time(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


class CloneForm(CSRFForm):
    url = StringField("Git URL", [max_chars("url", "Git URL")],
                      description="https://, http://, ssh:// or git@host:owner/repo.git")
    name = StringField("Project name", [max_chars("project", "Project name")],
                       description="optional: by default the repository's name")
    branch = StringField("Branch", [max_chars("revision", "Branch")],
                         description="optional: by default the remote's default branch")

    def __init__(self, *args, workspace=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.workspace = workspace

    def validate_url(self, field):
        try:
            field.data = git_ops.validate_clone_url(field.data)
        except git_ops.GitOpError as exc:
            raise ValidationError(str(exc)) from None

    def validate_name(self, field):
        if self.url.errors:
            return  # the name derives from the URL: one message at a time
        name = (field.data or "").strip() or git_ops.name_from_url(self.url.data or "")
        try:
            field.data = git_ops.validate_new_project_name(self.workspace, name)
        except git_ops.GitOpError as exc:
            raise ValidationError(str(exc)) from None

    def validate_branch(self, field):
        try:
            field.data = git_ops.validate_branch(field.data)
        except git_ops.GitOpError as exc:
            raise ValidationError(str(exc)) from None


class ProjectsView(SecureBaseView):
    grafana_dashboard = "wordslab-devenv"

    def __init__(self, ctx: AdminContext, **kwargs):
        super().__init__(**kwargs)
        self.ctx = ctx
        self._rows = RowCache()

    @property
    def workspace(self):
        return self.ctx.settings.workspace

    @property
    def env(self):
        return self.ctx.settings.env

    def _active_jobs(self) -> list[Job]:
        with self.ctx.sessions() as s:
            return active_jobs(s, PROJECT_JOB_KINDS)

    @expose("/")
    def index(self):
        # Snapshots kept fresh by file events (admin/sources.py): no git or walk per page view.
        tracker = self.ctx.sources.projects()
        self.ctx.sources.settled("projects")  # a clone, pull or delete ending now is shown
        statuses, sizes = tracker.statuses(), tracker.files()
        row = current_app.jinja_env.get_template("admin/projects/row.html").module.row
        now = time.time()

        def rows():
            for p in statuses.values():
                size, age = sizes.get(p.name), age_text(p.last_commit, now)
                yield (p, size, age), lambda p=p, size=size, age=age: row(
                    p, size, age, iso_time(p.last_commit), human_bytes)

        return self.render("admin/projects/list.html", rows=self._rows.render(rows()),
                           active_jobs=self._active_jobs(), workspace=self.workspace)

    @expose("/new/", methods=("GET", "POST"))
    def new(self):
        form = CloneForm(request.form if request.method == "POST" else None, workspace=self.workspace)
        if request.method == "POST" and form.validate():
            job_id = self._submit_clone(form.url.data, form.name.data, form.branch.data)
            flash(f"Cloning into {form.name.data} (job {job_id}).", "info")
            return redirect(url_for("jobs.index_view"))
        return self.render("admin/projects/new.html", form=form)

    def _submit_clone(self, url: str, name: str, branch: str | None) -> int:
        dest, env, sources = self.workspace / name, dict(self.env), self.ctx.sources

        def work(progress):
            with sources.change("projects") as change:
                try:
                    message = git_ops.clone(url, dest, env=env, branch=branch,
                                            progress=lambda ratio, text: progress.update(ratio, message=text),
                                            on_cancel=progress.on_cancel, before_publish=change.begin)
                except git_ops.GitOpError as exc:
                    progress.check()  # killed by a cancel: say so, not "git failed"
                    raise JobFailed(str(exc)) from None
                # Listed when the job shows done, and by any page shown once the directory exists.
                sources.projects().reread(name)
            return message

        return self.ctx.jobs.submit("clone", url, work)

    def _project_or_404(self, name: str):
        try:
            return git_ops.project_path(self.workspace, name)
        except git_ops.GitOpError as exc:
            flash(str(exc), "danger")
            return None

    def _submit_sync(self, kind: str, name: str):
        path = self._project_or_404(name)
        if path is not None:
            operation, env, sources = getattr(git_ops, kind), dict(self.env), self.ctx.sources

            def work(progress):
                progress.update(0.1, message=f"{kind} {name}")
                with sources.change("projects") as change:
                    try:
                        message = operation(path, env=env)
                    except git_ops.GitOpError as exc:
                        raise JobFailed(str(exc)) from None
                    change.begin()  # pages wait for the re-read rather than show the state before
                    sources.projects().reread(name)  # ahead/behind as of the sync when the job shows done
                return message

            job_id = self.ctx.jobs.submit(kind, name, work)
            flash(f"{kind.capitalize()} of {name} started (job {job_id}).", "info")
        return redirect(url_for(".index"))

    @expose("/<project>/pull/", methods=("POST",))
    def pull(self, project: str):
        return self._submit_sync("pull", project)

    @expose("/<project>/push/", methods=("POST",))
    def push(self, project: str):
        return self._submit_sync("push", project)

    @expose("/<project>/delete/", methods=("POST",))
    def delete(self, project: str):
        path = self._project_or_404(project)
        if path is None:
            return redirect(url_for(".index"))
        seen = request.form.get("fingerprint")
        if seen is None:  # from the list: show what would be lost first
            return self._confirm_page(path, git_ops.what_would_be_lost(path, env=self.env))
        if not confirmed():
            loss = git_ops.what_would_be_lost(path, env=self.env)
            return self._confirm_page(path, loss, error="Not deleted: tick the box to confirm.")
        with self.ctx.sources.change("projects") as change:
            change.begin()  # other pages shown meanwhile wait for the re-read
            try:
                git_ops.delete(path, env=self.env, confirmed=True, expected_fingerprint=seen)
            except git_ops.ConfirmationRequired as exc:
                return self._confirm_page(path, exc.loss, error="Not deleted: the project changed since this "
                                          "page was shown. Check the list again and confirm.")
            except OSError as exc:
                flash(f"Could not delete {project} completely: {exc}", "danger")
                return redirect(url_for(".index"))
            finally:
                self.ctx.sources.projects().reread(project)  # gone from the list this redirect shows
        flash(f"Deleted project {project}.", "success")
        return redirect(url_for(".index"))

    def _confirm_page(self, path, loss: git_ops.Loss, error: str | None = None):
        # The shown name (bytes that are not UTF-8 escaped): it goes into this page's URLs too.
        return self.render("admin/projects/confirm_delete.html", name=readable(path.name), path=path, loss=loss,
                           error=error), (409 if error else 200)


def register(admin, ctx) -> None:
    # Clones a previous admin process left half done (its jobs are marked interrupted at start).
    for name in git_ops.remove_interrupted_clones(ctx.settings.workspace):
        log.warning("removed the half clone of %s left by an interrupted clone job", name)
    admin.add_view(ProjectsView(ctx, name="Projects", endpoint="projects", url="/admin/projects"))
