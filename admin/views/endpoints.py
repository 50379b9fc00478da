"""Local model endpoints: configure, then load/unload (Ollama) or start/stop (vLLM, FastAPI).

The model is picked from the downloaded ones (admin/ops/endpoint_models.py) and refused on save
when it is not downloaded. The list shows the live status and last error, written to the rows
by a background prober (admin/ops/endpoint_status.py): a list request never probes.
"""
from __future__ import annotations

import shlex

from flask import flash, g, redirect, request, url_for
from flask_admin import expose
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from wtforms import FloatField, SelectField
from wtforms.validators import NumberRange, Optional, ValidationError

from common.sources.ollama_client import ollama_base_url
from common.store.services import API_TYPES, SERVERS, SERVICE_TYPES, Endpoint

from admin.form_choices import SelectChoice
from admin.ops.endpoint_models import NONE_CHOICE, DownloadedModels, list_downloaded, ollama_base_for, refusal
from admin.ops.endpoint_ops import ACTIONS, EndpointOps, OpError, default_base_url, port_in_use
from admin.ops.endpoint_status import EndpointStatusRefresher
from admin.security import SecureModelView, require_csrf
from admin.validation import check_http_url, check_name, check_unique_name, max_chars

DASHBOARD = "wordslab-ai-services"
ROW_ACTIONS = {"ollama": (("load", "Load", "btn-success"), ("unload", "Unload", "btn-secondary")),
               "vllm": (("start", "Start", "btn-success"), ("stop", "Stop", "btn-secondary")),
               "fastapi": (("start", "Start", "btn-success"), ("stop", "Stop", "btn-secondary"))}


def handle_db_error(exc: Exception) -> bool:
    """Flask-Admin would flash str(exc), whose SQL parameters may hold a key: say less."""
    if isinstance(exc, SQLAlchemyError):
        flash(f"Could not save: database error ({type(exc).__name__}).", "error")
        return True
    return False


class EndpointView(SecureModelView):
    grafana_dashboard = DASHBOARD
    list_template = "admin/services/endpoints_list.html"
    column_list = ("name", "model", "service_type", "server", "api_type", "internal_port", "base_url",
                   "status", "last_error", "started_at")
    column_labels = {"service_type": "Type", "api_type": "API", "internal_port": "Port",
                     "base_url": "Base URL", "gpu_memory_share": "GPU memory share"}
    column_default_sort = "name"
    form_columns = ("name", "model", "service_type", "server", "api_type", "internal_port", "base_url",
                    "health_url", "command", "image", "gpu_memory_share")
    # SQLAlchemy 2.1's Float is no Numeric any more: Flask-Admin has no converter for it.
    form_overrides = {"service_type": SelectField, "server": SelectField, "api_type": SelectField,
                      "model": SelectField, "gpu_memory_share": FloatField}
    form_args = {
        "service_type": {"choices": [SelectChoice(v) for v in SERVICE_TYPES]},
        "server": {"choices": [SelectChoice(v) for v in SERVERS]},
        "api_type": {"choices": [SelectChoice(v) for v in API_TYPES]},
        # Choices are filled per request; on_model_change says why a model is refused.
        "model": {"choices": [SelectChoice(*NONE_CHOICE)], "validate_choice": False,
                  "validators": [max_chars("model_id", "Model")],
                  "description": "a downloaded model: an Ollama model for ollama, a Hugging Face repo for vllm"},
        "internal_port": {"validators": [Optional(), NumberRange(1024, 65535, "port must be 1024-65535")]},
        "name": {"validators": [max_chars("name", "Name")]},
        "base_url": {"validators": [max_chars("url", "Base URL")], "description": "empty: http://127.0.0.1:<port> (with /v1 for the openai API type); "
                                    "ollama without a port: the platform's Ollama"},
        "health_url": {"validators": [max_chars("url", "Health URL")], "description": "fastapi: URL answering 2xx when healthy (default <base>/health)"},
        "command": {"validators": [max_chars("command", "Command")], "description": "vllm/fastapi: run as a subprocess; placeholders {model} {port} "
                                   "{gpu_memory_share}. vllm default: vllm serve {model} --port {port} "
                                   "--gpu-memory-utilization {gpu_memory_share}"},
        "image": {"validators": [max_chars("image", "Image")], "description": "run a container image instead, through Docker (port published on loopback)"},
        "gpu_memory_share": {"validators": [Optional(), NumberRange(0.05, 1.0, "GPU memory share must be "
                                                                    "between 0.05 and 1")]},
    }

    def __init__(self, ctx, refresher: EndpointStatusRefresher, **kwargs):
        self.ctx = ctx
        self.refresher = refresher
        self.ops = EndpointOps(ctx.settings, ctx.sessions)
        super().__init__(Endpoint, ctx.sessions, **kwargs)

    @expose("/")
    def index_view(self):
        self.refresher.request_refresh()  # fresher status soon; this request does not wait for it
        return super().index_view()

    # -- model choices ----------------------------------------------------------------
    def _downloaded(self, ollama_base: str) -> DownloadedModels:
        """Listed once per request and Ollama server (a POST builds the form, then validates)."""
        cache = g.setdefault("downloaded_models", {})
        if ollama_base not in cache:
            cache[ollama_base] = list_downloaded(self.ctx.settings.env, ollama_base, self.ctx.sources.models())
        return cache[ollama_base]

    def _with_model_choices(self, form, current: str = ""):
        found = self._downloaded(ollama_base_url(self.ctx.settings.env))
        choices = found.choices()
        if current and current not in {value for value, _ in choices}:
            choices.append((current, f"{current} (not downloaded)"))
        form.model.choices = [SelectChoice(value, label) for value, label in choices]
        if found.unavailable and request.method == "GET":
            flash(f"{found.warning()}: the list shows the other models.", "warning")
        return form

    def create_form(self, obj=None):
        return self._with_model_choices(super().create_form(obj))

    def edit_form(self, obj=None):
        return self._with_model_choices(super().edit_form(obj), obj.model if obj is not None else "")

    def _check_model_downloaded(self, model: Endpoint, is_created: bool) -> None:
        # A row whose model was deleted later stays editable as long as the model is left alone.
        history = sa_inspect(model).attrs
        if not is_created and not any(history[f].history.has_changes() for f in ("model", "server", "base_url")):
            return
        env = self.ctx.settings.env
        found = self._downloaded(ollama_base_for(env, model.server, model.base_url or ""))
        message = refusal(found, model.server, model.model)
        if message:
            raise ValidationError(message)

    def row_actions(self, row: Endpoint):
        return ROW_ACTIONS.get(row.server, ())

    def on_model_change(self, form, model, is_created):
        check_name(model.name, "endpoint")
        check_unique_name(self, model, "endpoint")
        model.model = (model.model or "").strip()
        model.command = (model.command or "").strip()
        model.image = (model.image or "").strip()
        if model.server in ("vllm", "ollama") and not model.model:
            raise ValidationError(f"a {model.server} endpoint needs a model")
        if model.server == "ollama" and model.api_type == "openAPI":
            raise ValidationError("Ollama speaks the ollama or openai API type")
        if model.server == "fastapi" and not (model.command or model.image or model.base_url):
            raise ValidationError("a fastapi endpoint needs a command, an image or the base URL of a running app")
        if model.server != "ollama" and not model.internal_port and not model.base_url:
            raise ValidationError("set the internal port")
        if model.command:
            try:
                shlex.split(model.command)
            except ValueError as exc:
                raise ValidationError(f"command: {exc}") from None
        check_http_url(model.base_url, "base URL")
        check_http_url(model.health_url, "health URL")
        self._check_model_downloaded(model, is_created)
        model.base_url = (model.base_url or "").rstrip("/") or default_base_url(
            model.server, model.api_type, model.internal_port, ollama_base_url(self.ctx.settings.env))
        if model.internal_port:
            with self.session.no_autoflush:
                clash = self.session.scalar(select(Endpoint).where(
                    Endpoint.internal_port == model.internal_port, Endpoint.id != (model.id or -1)))
            if clash is not None:
                raise ValidationError(f"port {model.internal_port} is already the port of endpoint {clash.name}")

    def on_model_delete(self, model):
        if self.ops.is_active(model):
            raise ValidationError(f"{model.name} is running: stop it before deleting it")

    def handle_view_exception(self, exc):
        return handle_db_error(exc) or super().handle_view_exception(exc)

    @expose("/action/<int:endpoint_id>/<op>", methods=["POST"])
    def action(self, endpoint_id: int, op: str):
        require_csrf()
        endpoint = self.session.get(Endpoint, endpoint_id)
        if endpoint is None:
            flash(f"No endpoint #{endpoint_id}.", "error")
            return redirect(url_for(".index_view"))
        if op not in {name for name, _, _ in self.row_actions(endpoint)}:
            flash(f"{op!r} is not an action of a {endpoint.server} endpoint.", "error")
            return redirect(url_for(".index_view"))
        try:
            self._precheck(endpoint, op)
        except OpError as exc:
            flash(str(exc), "error")
            return redirect(url_for(".index_view"))
        work = ACTIONS[op]
        # The control lane: a start waiting on its server never holds up a Stop, a clone or a download.
        job_id = self.ctx.jobs.submit(f"endpoint-{op}", endpoint.name,
                                      lambda progress: work(self.ops, endpoint_id, progress), lane="control")
        flash(f"{op.capitalize()} {endpoint.name}: job #{job_id} started.", "success")
        return redirect(url_for(".index_view"))

    def _precheck(self, endpoint: Endpoint, op: str) -> None:
        """Refusals known before any work starts: a message, and nothing changes."""
        if op == "start":
            if self.ops.is_active(endpoint):
                raise OpError(f"{endpoint.name} is already started; stop it first")
            if not endpoint.internal_port:
                raise OpError(f"set the internal port of {endpoint.name} first")
            if port_in_use(endpoint.internal_port):
                raise OpError(f"port {endpoint.internal_port} is already in use: "
                              "stop what listens there or choose another port")


def register(admin, ctx) -> None:
    refresher = EndpointStatusRefresher(ctx.settings, ctx.sessions)
    admin.add_view(EndpointView(ctx, refresher, name="Endpoints", endpoint="endpoints", category="AI services"))
    if admin.app is not None:
        admin.app.extensions["wordslab_endpoint_refresher"] = refresher
    refresher.start()
