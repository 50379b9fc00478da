"""External AI APIs: provider, URL, key variable or stored key (never shown again), costs."""
from __future__ import annotations

import re

from markupsafe import Markup, escape
from wtforms import BooleanField, FloatField, PasswordField, SelectField
from wtforms.validators import NumberRange, Optional, ValidationError

from common.sources.external_api_probe import read_user_env
from common.store.services import API_PROVIDERS, API_TYPES, ExternalApi

from admin.formatting import usd
from admin.ops.external_api_status import ExternalApiStatus
from admin.security import SecureModelView, mask_secret
from admin.validation import (check_http_url, check_key, check_key_destination, check_name, check_unique_name,
                              max_chars)
from admin.views.endpoints import DASHBOARD, handle_db_error

KEY_LIKE_VAR = re.compile(r"(_API_KEY|_TOKEN|_KEY)$")


def _masked(attr: str):
    return lambda view, context, model, name: mask_secret(getattr(model, attr))


class ExternalApiView(SecureModelView):
    grafana_dashboard = DASHBOARD
    status: ExternalApiStatus | None = None  # set at registration
    can_export = False
    column_list = ("name", "status", "provider", "api_type", "base_url", "api_key_var", "api_key",
                   "manual_cost_month_usd", "probe_interval_seconds", "quota_description")
    column_details_list = ("name", "provider", "api_type", "base_url", "spec_url", "api_key_var", "api_key",
                           "admin_key_var", "admin_key", "quota_description", "cost_per_call_description",
                           "manual_cost_month_usd", "probe_interval_seconds", "created_at", "updated_at")
    column_labels = {"api_key_var": "Key variable", "api_key": "Stored key", "admin_key_var": "Admin key variable",
                     "admin_key": "Stored admin key", "manual_cost_month_usd": "Cost this month $ (manual)",
                     "probe_interval_seconds": "Probe every (s)", "base_url": "Base URL", "spec_url": "Spec URL"}
    column_formatters = {"api_key": _masked("api_key"), "admin_key": _masked("admin_key"),
                         "status": lambda view, c, api, n: view.status_cell(api),
                         "manual_cost_month_usd": lambda v, c, api, n: usd(api.manual_cost_month_usd)}
    column_default_sort = "name"
    form_columns = ("name", "provider", "api_type", "base_url", "spec_url", "api_key_var", "admin_key_var",
                    "new_api_key", "clear_api_key", "new_admin_key", "clear_admin_key",
                    "quota_description", "cost_per_call_description", "manual_cost_month_usd",
                    "probe_interval_seconds")
    form_overrides = {"provider": SelectField, "api_type": SelectField, "api_key_var": SelectField,
                      "admin_key_var": SelectField, "manual_cost_month_usd": FloatField}
    form_args = {
        "provider": {"choices": [(v, v) for v in API_PROVIDERS]},
        "api_type": {"choices": [(v, v) for v in API_TYPES]},
        "name": {"validators": [max_chars("name", "Name")]},
        "quota_description": {"validators": [max_chars("text", "Quota description")]},
        "cost_per_call_description": {"validators": [max_chars("text", "Cost per call description")]},
        "base_url": {"validators": [max_chars("url", "Base URL")], "description": "e.g. https://api.openai.com/v1, https://openrouter.ai/api/v1"},
        "spec_url": {"validators": [max_chars("url", "Spec URL")], "description": "openAPI type: the spec URL probed (default <base>/openapi.json)"},
        "api_key_var": {"description": "variables of $WORDSLAB_WORKSPACE/.secrets/user-env.bashrc and the "
                                       "environment; a stored key below wins over it"},
        "admin_key_var": {"description": "OpenAI or Anthropic: an organization admin key reads this month's costs"},
        "manual_cost_month_usd": {"validators": [Optional(), NumberRange(0, 1_000_000, "cost must be between "
                                                                         "0 and 1,000,000 $")],
                                  "description": "used when the provider does not report its cost"},
        "probe_interval_seconds": {"validators": [NumberRange(10, 86_400, "probe interval must be between "
                                                              "10 s and 1 day")],
                                   "default": 60},
    }
    form_extra_fields = {
        "new_api_key": PasswordField("API key to store (never shown again; empty keeps the current one)",
                                     validators=[Optional(), max_chars("key", "API key")]),
        "clear_api_key": BooleanField("Forget the stored API key"),
        "new_admin_key": PasswordField("Admin key to store (never shown again; empty keeps the current one)",
                                       validators=[Optional(), max_chars("key", "Admin key")]),
        "clear_admin_key": BooleanField("Forget the stored admin key"),
    }

    def __init__(self, ctx, **kwargs):
        self.ctx = ctx
        super().__init__(ExternalApi, ctx.sessions, **kwargs)

    def key_variables(self) -> list[str]:
        """Names offered for the key variables (never their values)."""
        names = set(read_user_env(self.ctx.settings))
        names.update(n for n in self.ctx.settings.env if KEY_LIKE_VAR.search(n))
        return sorted(names)

    def _offer_variables(self, form, model=None):
        names = self.key_variables()
        for field in (form.api_key_var, form.admin_key_var):
            current = getattr(model, field.name, "") if model is not None else ""
            extra = [current] if current and current not in names else []
            field.choices = [("", "(none)")] + [(n, n) for n in names + extra]
        return form

    def create_form(self, obj=None):
        return self._offer_variables(super().create_form(obj))

    def edit_form(self, obj=None):
        return self._offer_variables(super().edit_form(obj), obj)

    def on_model_change(self, form, model, is_created):
        check_name(model.name, "API")
        check_unique_name(self, model, "API")
        if not model.base_url:
            raise ValidationError("the base URL is required")
        check_http_url(model.base_url, "base URL")
        check_http_url(model.spec_url, "spec URL")
        check_key_destination(model.base_url, "base URL")
        check_key_destination(model.spec_url, "spec URL")
        model.base_url = model.base_url.rstrip("/")
        for attr, new, clear in (("api_key", form.new_api_key, form.clear_api_key),
                                 ("admin_key", form.new_admin_key, form.clear_admin_key)):
            value = check_key(new.data, new.label.text.split(" (")[0])
            if clear.data:
                setattr(model, attr, "")
            elif value:
                setattr(model, attr, value)

    def handle_view_exception(self, exc):
        return handle_db_error(exc) or super().handle_view_exception(exc)

    def status_cell(self, api) -> Markup:
        """The last probe's state (ok, out of credit, rate limited, unauthorized, error, unreachable),
        its HTTP status and error on hover; 'not probed yet' before the first probe."""
        outcome = self.status.outcome(api.name) if self.status else None
        if outcome is None:
            return Markup('<span class="badge badge-light api-status">not probed yet</span>')
        colour = {"ok": "success", "rate_limited": "warning"}.get(outcome.state, "danger")
        title = f"HTTP {outcome.http_status}" if outcome.http_status else "no HTTP answer"
        if outcome.error:
            title += f": {outcome.error}"
        return Markup(f'<span class="badge badge-{colour} api-status" title="{escape(title)}">'
                      f'{escape(outcome.state.replace("_", " "))}</span>')


def register(admin, ctx) -> None:
    status = ExternalApiStatus(ctx.settings)
    view = ExternalApiView(ctx, name="External APIs", endpoint="external_apis", category="AI services")
    view.status = status
    admin.add_view(view)
    status.start()
