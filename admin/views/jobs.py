"""Jobs list: progress of clones and downloads, refreshing itself; JSON status for polling."""
from __future__ import annotations

from flask import flash, get_template_attribute, jsonify, redirect, url_for
from flask_admin import expose
from markupsafe import Markup, escape
from sqlalchemy import func, select
from wtforms.validators import ValidationError

from common.store.jobs import ACTIVE_STATUSES, Job

from admin.formatting import progress_text, utc_iso
from admin.jobs import JobFailed, active_jobs
from admin.security import SecureModelView, csrf_token

STATUS_BADGES = {"queued": "secondary", "running": "primary", "done": "success", "failed": "danger",
                 "cancelled": "warning"}


def job_status(job: Job) -> dict:
    """What /admin/jobs/<id>/status.json answers (also used by pages polling a job)."""
    return {
        "id": job.id, "kind": job.kind, "target": job.target, "status": job.status,
        "progress": job.progress, "bytes_done": job.bytes_done, "bytes_total": job.bytes_total,
        "message": job.message, "progress_text": progress_text(job),
        "created_at": utc_iso(job.created_at), "started_at": utc_iso(job.started_at),
        "finished_at": utc_iso(job.finished_at),
    }


def _progress_cell(view, context, model, name):
    return get_template_attribute("admin/wordslab_lib.html", "job_progress")(model)


def _status_cell(view, context, model, name):
    badge = STATUS_BADGES.get(model.status, "secondary")
    html = f'<span class="badge badge-{badge} job-status">{escape(model.status)}</span>'
    if model.status in ACTIVE_STATUSES:
        url = url_for(".cancel", job_id=model.id)
        html += (f'<form method="post" action="{escape(url)}" class="job-cancel d-block mt-1">'
                 f'<input type="hidden" name="csrf_token" value="{escape(csrf_token())}">'
                 f'<button type="submit" class="btn btn-sm btn-outline-danger">Cancel</button></form>')
    return Markup(html)


class JobView(SecureModelView):
    can_create = False
    can_edit = False
    can_delete = True
    column_default_sort = ("id", True)
    column_list = ("id", "kind", "target", "status", "progress", "message", "started_at", "finished_at")
    column_labels = {"started_at": "Started (UTC)", "finished_at": "Finished (UTC)"}
    column_searchable_list = ("kind", "target", "message")
    column_filters = ("kind", "status")
    column_formatters = {"progress": _progress_cell, "status": _status_cell}
    list_template = "admin/jobs_list.html"
    grafana_dashboard = "wordslab-devenv"

    def on_model_delete(self, model: Job) -> None:
        # A worker thread still writes to the row of an unfinished job.
        if model.status in ACTIVE_STATUSES:
            raise ValidationError(f"job {model.id} is {model.status}: wait until it ends to delete it")

    def render(self, template, **kwargs):
        if template == self.list_template:
            kwargs["latest_job_id"] = self.session.scalar(select(func.max(Job.id))) or 0
        return super().render(template, **kwargs)

    @expose("/<int:job_id>/status.json")
    def status_json(self, job_id: int):
        job = self.session.get(Job, job_id)
        if job is None:
            return jsonify(error=f"no job {job_id}"), 404
        return jsonify(job_status(job))

    @expose("/<int:job_id>/cancel/", methods=["POST"])
    def cancel(self, job_id: int):
        """Stop a queued or running job (CSRF-checked like every POST)."""
        try:
            flash(self.jobs.cancel(job_id), "info")
        except JobFailed as exc:
            flash(str(exc), "danger")
        return redirect(url_for(".index_view"))

    @expose("/status.json")
    def summary_json(self):
        active = active_jobs(self.session)
        return jsonify(latest_id=self.session.scalar(select(func.max(Job.id))) or 0,
                       active=[job_status(job) for job in active])


def register(admin, ctx) -> None:
    view = JobView(Job, ctx.sessions, name="Jobs", endpoint="jobs")
    view.jobs = ctx.jobs
    admin.add_view(view)
