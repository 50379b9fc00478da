"""Jobs list: progress of clones and downloads, refreshing itself."""
from __future__ import annotations

from exporter.store.jobs import Job

from ..security import SecureModelView


class JobView(SecureModelView):
    can_create = False
    can_edit = False
    can_delete = True
    column_default_sort = ("id", True)
    column_list = ("id", "kind", "target", "status", "progress", "bytes_done", "bytes_total",
                   "message", "started_at", "finished_at")
    column_formatters = {
        "progress": lambda v, c, m, n: f"{m.progress * 100:.0f} %",
    }
    list_template = "admin/jobs_list.html"


def register(admin, ctx) -> None:
    admin.add_view(JobView(Job, ctx.sessions(), name="Jobs", endpoint="jobs"))
