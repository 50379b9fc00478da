"""Cloud VMs: hosting platforms (API keys), VM templates (instance type and prices), VMs with
create/start/stop/terminate actions, and the monthly budget the alerts compare against."""
from __future__ import annotations

import time

from flask import flash, redirect, request, url_for
from flask_admin import expose
from markupsafe import Markup, escape
from sqlalchemy import inspect as sa_inspect, select, update
from wtforms import FloatField, PasswordField, SelectField
from wtforms.validators import NumberRange, Optional, ValidationError

from common.sources import vm_costs
from admin.formatting import usd
from admin.cloud.providers import CLIENT_CLASSES, UnknownProvider, check_provider
from admin.cloud.vm_status import VmRefresher, status_interval
from common.store.alerts import BUDGET_STOP_SETTING
from common.store.settings import get_setting, set_setting
from common.store.vms import BUDGET_SETTING, STATUS_INTERVAL_SETTING, HostingPlatform, Vm, VmTemplate

from admin.cloud.autostop import AutostopGuard, keep_running, policy_of
from admin.cloud.budget_guard import check_budget
from admin.ops.vm_ops import VmActionError, allowed_actions, confirmation_text, may_bill, run_action
from admin.security import SecureBaseView, SecureModelView, confirmed, csrf_token, mask_secret
from admin.validation import (check_env_var_name, check_http_url, check_key, check_key_destination, check_length,
                              check_name, check_unique_name, max_chars)

DASHBOARD = "wordslab-ai-services"


def _range(lo: float, hi: float, what: str) -> NumberRange:
    return NumberRange(lo, hi, message=f"{what} must be between {lo:g} and {hi:g}")


class PlatformView(SecureModelView):
    grafana_dashboard = DASHBOARD
    column_list = ("name", "provider", "api_key_var", "api_key", "base_url")
    column_details_list = column_list
    column_labels = {"api_key_var": "API key env var", "api_key": "Stored key", "base_url": "API base URL"}
    column_formatters = {"api_key": lambda v, c, m, n: mask_secret(m.api_key)}
    column_searchable_list = ()
    form_columns = ("name", "provider", "api_key_var", "new_api_key", "base_url")
    form_overrides = {"provider": SelectField}
    form_args = {
        "provider": {"choices": [(c.provider, f"{c.display_name} ({c.provider})") for c in CLIENT_CLASSES],
                     "validate_choice": False},
        "api_key_var": {"description": "e.g. " + ", ".join(c.key_var for c in CLIENT_CLASSES)
                        + " (read from the environment; the provider's own variable is used when empty)"},
        "name": {"validators": [max_chars("name", "Name")]},
        "base_url": {"validators": [max_chars("url", "API base URL")],
                     "description": "leave empty for the provider's public API"},
    }
    form_extra_fields = {
        "new_api_key": PasswordField("API key (stored, never shown again; empty keeps the current one)",
                                     validators=[Optional(), max_chars("key", "API key")]),
    }

    def on_model_change(self, form, model, is_created):
        check_name(model.name, "platform")
        check_unique_name(self, model, "platform")
        try:
            check_provider(model.provider)
        except UnknownProvider as exc:
            raise ValidationError(str(exc)) from None
        check_env_var_name(model.api_key_var, "API key env var")
        check_http_url(model.base_url, "API base URL")
        check_key_destination(model.base_url, "API base URL")
        model.api_key_var = model.api_key_var or None
        model.base_url = (model.base_url or "").rstrip("/") or None
        key = check_key(form.new_api_key.data, "API key")
        if key:
            model.api_key = key

    def on_model_delete(self, model):
        if model.templates:
            raise ValidationError(f"platform {model.name} is used by templates: delete them first")


AUTOSTOP_FIELDS = ("autostop_idle_minutes", "autostop_gpu_percent", "autostop_after_hours")
AUTOSTOP_FORM_ARGS = {
    "autostop_idle_minutes": {"label": "Autostop after idle minutes", "validators": [
        Optional(), _range(1, 7 * 24 * 60, "autostop idle minutes")],
        "description": "stop (never terminate) after this many minutes with every GPU under the "
                       "threshold below, read from the VM's own exporter: its template must run "
                       "wordslab-dashboard (empty: off)"},
    "autostop_gpu_percent": {"label": "Autostop GPU threshold %", "validators": [
        Optional(), _range(0.1, 100, "autostop GPU threshold (percent)")], "description": "default 5 %"},
    "autostop_after_hours": {"label": "Autostop after running hours", "validators": [
        Optional(), _range(0.1, 24 * 366, "autostop running hours")],
        "description": "stop after this many hours running (empty: off)"},
}


class TemplateView(SecureModelView):
    grafana_dashboard = DASHBOARD
    column_list = ("name", "platform", "region", "gpu", "gpu_count", "vram_gb", "vcpus", "ram_gb",
                   "compute_usd_per_hour", "container_usd_per_gb_month", "volume_usd_per_gb_month",
                   "runs_dashboard")
    column_labels = {"vram_gb": "VRAM GB", "ram_gb": "RAM GB", "vcpus": "vCPU",
                     "compute_usd_per_hour": "Compute",
                     "container_usd_per_gb_month": "Container storage",
                     "volume_usd_per_gb_month": "Volume storage (running)"}
    column_formatters = {"compute_usd_per_hour": lambda v, c, m, n: usd(m.compute_usd_per_hour, "/h"),
                         "container_usd_per_gb_month": lambda v, c, m, n: usd(m.container_usd_per_gb_month, "/GB-month"),
                         "volume_usd_per_gb_month": lambda v, c, m, n: usd(m.volume_usd_per_gb_month, "/GB-month")}
    form_columns = ("name", "platform", "region", "gpu", "gpu_count", "vram_gb", "vcpus", "ram_gb",
                    "compute_usd_per_hour", "container_usd_per_gb_month", "volume_usd_per_gb_month",
                    "image", "runs_dashboard", "dashboard_port", "exporter_port", *AUTOSTOP_FIELDS)
    # SQLAlchemy 2.1's Float is no Numeric: Flask-Admin has no converter for it.
    form_overrides = {f: FloatField for f in ("vram_gb", "ram_gb", "compute_usd_per_hour",
                                              "container_usd_per_gb_month", "volume_usd_per_gb_month",
                                              *AUTOSTOP_FIELDS)}
    form_args = {
        "name": {"validators": [max_chars("name", "Name")]},
        "region": {"validators": [max_chars("short", "Region")]},
        "image": {"validators": [max_chars("image", "Image")]},
        "gpu": {"validators": [max_chars("short", "GPU type")], "description": "the provider's GPU type id, e.g. "
                + ", ".join(f"'{c.gpu_example}' ({c.display_name})" for c in CLIENT_CLASSES)},
        "gpu_count": {"validators": [_range(1, 16, "GPU count")]},
        "vram_gb": {"validators": [_range(0, 2048, "VRAM GB")]},
        "vcpus": {"validators": [_range(0, 1024, "vCPUs")]},
        "ram_gb": {"validators": [_range(0, 16384, "RAM GB")]},
        "compute_usd_per_hour": {"validators": [_range(0, 500, "compute $/hour")]},
        "container_usd_per_gb_month": {"validators": [_range(0, 10, "container storage $/GB-month")]},
        "volume_usd_per_gb_month": {"validators": [_range(0, 10, "volume storage $/GB-month")],
                                    "description": "Runpod bills a stopped pod's volume twice this rate"},
        "runs_dashboard": {"description": "the VM runs wordslab-dashboard: scrape its exporter while it runs"},
        "dashboard_port": {"validators": [_range(1, 65535, "dashboard port")]},
        "exporter_port": {"validators": [_range(1, 65535, "exporter port")]},
        **AUTOSTOP_FORM_ARGS,
    }

    def on_model_change(self, form, model, is_created):
        check_name(model.name, "template")
        check_unique_name(self, model, "template")
        if model.platform is None:
            raise ValidationError("choose a hosting platform")
        if not model.gpu or not model.gpu.strip() or any(c in model.gpu for c in "\"'\\;`$<>"):
            raise ValidationError("GPU type: the provider's id, without quotes or shell characters")

    def on_model_delete(self, model):
        if model.vms:
            raise ValidationError(f"template {model.name} is used by VMs: delete them first")


def _when(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _month_cost(vm: Vm):
    month = vm_costs.month_key(time.time())
    return next((c for c in vm.costs if c.month == month), None)


def _cost_cell(view, context, vm, name):
    cost = _month_cost(vm)
    if cost is None:
        return ""
    title = f"compute {usd(cost.compute_usd)} + storage {usd(cost.storage_usd)} ({cost.source})"
    return Markup(f'<span class="vm-cost" title="{escape(title)}">{escape(usd(cost.total_usd))}</span>')


def _status_cell(view, context, vm, name):
    colour = {"running": "success", "starting": "info", "stopping": "info", "stopped": "secondary",
              "error": "danger", "unknown": "warning", "missing": "warning", "creating": "warning",
              "gone": "dark", "terminated": "dark"}.get(vm.status, "light")
    badge = f'<span class="badge badge-{colour} vm-status">{escape(vm.status)}</span>'
    if vm.status == "creating" and not vm.last_error:
        badge += ('<br><small class="text-muted vm-error">create sent: waiting for the provider to list it '
                  '(the status refresh records it)</small>')
    if vm.last_error:
        badge += f'<br><small class="text-danger vm-error">{escape(vm.last_error)}</small>'
    return Markup(badge)


def _actions_cell(view, context, vm, name):
    forms = []
    for action in allowed_actions(vm):
        url = url_for(".action", vm_id=vm.id, action=action)
        confirm = confirmation_text(vm, action)
        box = ""
        if confirm:
            box = (f'<label class="small mr-1"><input type="checkbox" name="confirm" value="1" '
                   f'class="vm-confirm"> {escape(confirm)}</label>')
        btn = "btn-danger" if action == "terminate" else "btn-outline-primary"
        forms.append(
            f'<form method="post" action="{escape(url)}" class="vm-action d-block mb-1" data-action="{action}">'
            f'<input type="hidden" name="csrf_token" value="{escape(csrf_token())}">{box}'
            f'<button type="submit" class="btn btn-sm {btn}">{action}</button></form>')
    return Markup("".join(forms))


def _url_cell(field):
    def cell(view, context, vm, name):
        url = getattr(vm, field)
        return Markup(f'<a href="{escape(url)}" target="_blank" rel="noopener">open</a>') if url else ""
    return cell


def _autostop_cell(view, context, vm, name):
    """"stops in 12 min unless used" with a keep-running button, or the last decision."""
    html = ""
    if vm.autostop_at is not None and vm.status == "running":
        left = max(0.0, vm.autostop_at - time.time())
        when = f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"
        html += f'<br><span class="badge badge-warning vm-autostop-countdown">stops in {escape(when)} unless used</span>'
    if vm.autostop_note:
        html += f'<br><small class="text-muted vm-autostop-note">{escape(vm.autostop_note)}</small>'
    if vm.status == "running" and policy_of(vm).enabled:
        url = url_for(".keep", vm_id=vm.id)
        html += (f'<form method="post" action="{escape(url)}" class="vm-keep d-block mt-1">'
                 f'<input type="hidden" name="csrf_token" value="{escape(csrf_token())}">'
                 '<button type="submit" class="btn btn-sm btn-outline-success">keep running</button></form>')
    return Markup(html)


class VmView(SecureModelView):
    grafana_dashboard = DASHBOARD
    column_list = ("name", "template", "status", "cost_month", "price", "container_gb", "volume_gb",
                   "last_started_at", "last_stopped_at", "terminal_url", "dashboard_url", "actions")
    column_details_list = ("name", "template", "status", "provider_state", "instance_id", "last_error",
                           "cost_month", "container_gb", "volume_gb", "max_running_hours", "autostop",
                           *AUTOSTOP_FIELDS, "created_at", "terminated_at", "last_started_at", "last_stopped_at",
                           "status_checked_at", "terminal_url", "dashboard_url")
    column_labels = {"cost_month": "Cost this month", "price": "Price", "container_gb": "Container GB",
                     "volume_gb": "Volume GB", "max_running_hours": "Max running hours"}
    column_formatters = {
        # The autostop countdown and "keep running" sit under the status: no column of their own.
        "status": lambda v, c, m, n: _status_cell(v, c, m, n) + _autostop_cell(v, c, m, n),
        "autostop": _autostop_cell,
        "cost_month": _cost_cell,
        "price": lambda v, c, m, n: usd(m.template.compute_usd_per_hour, "/h"),
        "actions": _actions_cell,
        "terminal_url": _url_cell("terminal_url"),
        "dashboard_url": _url_cell("dashboard_url"),
        **{f: (lambda field: lambda v, c, m, n: _when(getattr(m, field)))(f)
           for f in ("last_started_at", "last_stopped_at", "created_at", "terminated_at", "status_checked_at")},
    }
    column_default_sort = "name"
    form_columns = ("name", "template", "container_gb", "volume_gb", "max_running_hours", *AUTOSTOP_FIELDS)
    form_overrides = {f: FloatField for f in ("container_gb", "volume_gb", "max_running_hours", *AUTOSTOP_FIELDS)}
    form_args = {
        "name": {"validators": [max_chars("name", "Name")]},
        **AUTOSTOP_FORM_ARGS,
        "container_gb": {"validators": [_range(1, 10000, "container GB")]},
        "volume_gb": {"validators": [_range(0, 100000, "volume GB")]},
        "max_running_hours": {"validators": [Optional(), _range(0.1, 24 * 366, "max running hours")],
                              "description": "alert when it runs longer than this (empty: no limit)"},
    }
    action_disallowed_list = ("delete",)  # bulk delete would skip the running-VM check

    def __init__(self, *args, ctx=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.ctx = ctx

    def on_model_change(self, form, model, is_created):
        check_name(model.name, "VM")
        check_unique_name(self, model, "VM")
        if model.template is None:
            raise ValidationError("choose a VM template")
        state = sa_inspect(model)
        changed = [f for f in ("name", "template", "container_gb", "volume_gb")
                   if not is_created and state.attrs[f].history.has_changes()]
        # The name is how a half-recorded create is found again at the provider. Checked under
        # the write lock on the row as it is now: a create claimed meanwhile counts.
        if changed and self._exists_at_provider(model.id):
            raise ValidationError(f"{model.name} exists at the provider: its {changed[0]} cannot change "
                                  "(terminate it and create a new VM)")
        if is_created:
            model.status = "new"

    def _exists_at_provider(self, vm_id: int) -> bool:
        table = Vm.__table__
        with self.session.no_autoflush:
            self.session.execute(update(table).where(table.c.id == vm_id).values(status=table.c.status))
            status, instance_id = self.session.execute(
                select(table.c.status, table.c.instance_id).where(table.c.id == vm_id)).one()
        return bool(instance_id) or status == "creating"

    def on_model_delete(self, model):
        # Take the write lock, then re-read: a create claimed meanwhile cannot slip between the
        # check and the delete (its conditional claim waits, then finds no row).
        self.session.execute(update(Vm).where(Vm.id == model.id).values(status=Vm.status)
                             .execution_options(synchronize_session=False))
        self.session.refresh(model)
        if may_bill(model):
            raise ValidationError(f"{model.name} may still exist at {model.template.platform.provider} "
                                  f"({model.status}): terminate it first, nothing was deleted")

    @expose("/keep/<int:vm_id>/", methods=["POST"])
    def keep(self, vm_id: int):
        try:
            flash(keep_running(self.ctx.sessions, vm_id, time.time()), "success")
        except VmActionError as exc:
            flash(str(exc), "danger")
        return redirect(url_for(".index_view"))

    @expose("/action/<int:vm_id>/<action>/", methods=["POST"])
    def action(self, vm_id: int, action: str):
        try:
            message = run_action(self.ctx.sessions, self.ctx.settings, vm_id, action, confirmed())
        except VmActionError as exc:
            flash(str(exc), "danger")
        else:
            flash(message, "success")
        return redirect(url_for(".index_view"))


class VmSettingsView(SecureBaseView):
    """Budget and polling interval: the alert rules compare the month's VM and external API costs to the budget."""

    grafana_dashboard = DASHBOARD

    def __init__(self, ctx, refresher: VmRefresher, **kwargs):
        super().__init__(**kwargs)
        self.ctx = ctx
        self.refresher = refresher

    @expose("/", methods=["GET", "POST"])
    def index(self):
        if request.method == "POST":
            try:
                budget, interval = self._parse(request.form)
            except ValueError as exc:
                flash(str(exc), "danger")
            else:
                with self.ctx.sessions.begin() as session:
                    set_setting(session, BUDGET_SETTING, "" if budget is None else f"{budget:g}")
                    set_setting(session, STATUS_INTERVAL_SETTING, f"{interval:g}")
                    set_setting(session, BUDGET_STOP_SETTING, "1" if request.form.get("stop_all") else "0")
                self.refresher.set_interval(interval)
                flash("VM settings saved.", "success")
            return redirect(url_for(".index"))
        with self.ctx.sessions() as session:
            budget = get_setting(session, BUDGET_SETTING) or ""
            stop_all = get_setting(session, BUDGET_STOP_SETTING) == "1"
        interval = status_interval(self.ctx.sessions, self.ctx.settings)
        return self.render("admin/vm_settings.html", budget=budget, interval=f"{interval:g}", stop_all=stop_all)

    @staticmethod
    def _parse(form) -> tuple[float | None, float]:
        raw_budget = (form.get("budget") or "").strip()
        for name in ("budget", "interval"):
            try:
                check_length(form.get(name), "number", name)
            except ValidationError as exc:
                raise ValueError(str(exc)) from None
        try:
            budget = float(raw_budget) if raw_budget else None
            interval = float(form.get("interval") or "")
        except ValueError:
            raise ValueError("budget and interval must be numbers") from None
        if budget is not None and not 0 <= budget <= 1_000_000:
            raise ValueError("monthly budget must be between 0 and 1,000,000 USD")
        if not 10 <= interval <= 86400:
            raise ValueError("status interval must be between 10 and 86400 seconds")
        return budget, interval


def register(admin, ctx) -> None:
    refresher = VmRefresher(ctx.sessions, ctx.settings)
    admin.add_view(PlatformView(HostingPlatform, ctx.sessions, name="Hosting platforms",
                                endpoint="platforms", category="Cloud VMs"))
    admin.add_view(TemplateView(VmTemplate, ctx.sessions, name="VM templates",
                                endpoint="vm_templates", category="Cloud VMs"))
    admin.add_view(VmView(Vm, ctx.sessions, name="VMs", endpoint="vms", category="Cloud VMs", ctx=ctx))
    admin.add_view(VmSettingsView(ctx, refresher, name="Budget & polling", endpoint="vm_settings",
                                  category="Cloud VMs"))
    guard = AutostopGuard(ctx.sessions, ctx.settings,
                          extra=lambda: check_budget(ctx.sessions, ctx.settings))
    if admin.app is not None:
        admin.app.extensions["wordslab_vm_refresher"] = refresher
        admin.app.extensions["wordslab_autostop"] = guard
    refresher.start()
    guard.start()
