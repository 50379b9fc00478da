"""Models page: every provider's downloaded models, download form, type, benchmark, delete.

Downloads and benchmarks reach the network or load a model, so they run as jobs; a
delete first shows what would be removed and refuses without the confirm box ticked.
"""
from __future__ import annotations

import time

from flask import current_app, flash, redirect, request, url_for
from flask_admin import expose
from wtforms import SelectField, StringField

from common.sources.model_dirs import MODEL_PROVIDER_LABELS, MODEL_PROVIDERS
from common.sources.model_record import MODEL_TYPES, ModelRecord
from common.store.jobs import Job
from common.store.models import (forget_model, record_speed, set_type_override, speeds,
                                   type_overrides)

from admin.context import AdminContext
from admin.form_choices import SelectChoice
from admin.formatting import human_bytes
from admin.jobs import active_jobs
from admin.ops import model_ops
from admin.ops.endpoint_models import endpoints_using
from admin.ops.model_catalog import CATALOG
from admin.ops.model_ops import ModelOpError
from admin.row_cache import RowCache
from admin.security import CSRFForm, SecureBaseView, confirmed
from admin.validation import max_chars
from admin.views.projects import age_text

MODEL_JOB_KINDS = ("download", "benchmark")
UNIT_LABELS = {model_ops.TOKENS_UNIT: "tokens/s"}


class DownloadForm(CSRFForm):
    # Choices are checked by model_ops.plan_download, whose message names the valid ones.
    provider = SelectField("Provider", choices=[SelectChoice(p, MODEL_PROVIDER_LABELS[p])
                                                for p in MODEL_PROVIDERS],
                           validate_choice=False, validators=[max_chars("short", "Provider")])
    # A model id, or the https URL of a weights file: bounded as a URL.
    model = StringField("Model id", [max_chars("url", "Model id")],
                        description="Ollama: name:tag (qwen3:8b). Hugging Face: org/name (Qwen/Qwen3-0.6B). "
                                    "PyTorch, fastai, Keras: a catalog name below or an https:// URL of the "
                                    "weights file")
    revision = StringField("Revision", [max_chars("revision", "Revision")],
                           description="Hugging Face only, optional: branch, tag or commit")
    checksum = StringField("Checksum", [max_chars("short", "Checksum")],
                           description="PyTorch, fastai, Keras URLs, optional: the file's sha256 or md5 hex "
                                       "digest, checked before the file is kept")


def _count(value: int | None) -> str:
    if value is None:
        return ""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return str(value)


def _source_for(sources, provider: str):
    models = sources.models()
    return {"ollama": models.ollama_source, "huggingface": models.hf_source}.get(provider, models.files_source)


class ModelsView(SecureBaseView):
    grafana_dashboard = "wordslab-devenv"

    def __init__(self, ctx: AdminContext, **kwargs):
        super().__init__(**kwargs)
        self.ctx = ctx
        self._rows = RowCache()

    @property
    def env(self):
        return self.ctx.settings.env

    def _records(self) -> list[ModelRecord]:
        """From the watched snapshots (admin/sources.py): no scan, no Ollama call per page view."""
        records: list[ModelRecord] = []
        models = self.ctx.sources.models()
        self.ctx.sources.settled("models")  # a download or delete ending now is shown
        for label, source in (("Ollama", models.ollama_source), ("Hugging Face", models.hf_source),
                              ("Model file", models.files_source)):
            snapshot = source.snapshot()
            if not snapshot.ok:  # say what could not be listed (its last good list stays), show the rest
                flash(f"{label} models are not listed: {snapshot.error}", "warning")
            records.extend(snapshot.value or [])
        unreadable = [r for r in records if r.status != "ok"]
        if unreadable:
            flash(f"{len(unreadable)} model(s) incomplete or unreadable: "
                  + "; ".join(f"{r.model} ({r.status}: {r.problem})" for r in unreadable[:5]), "warning")
        return records

    def _active_jobs(self) -> list[Job]:
        with self.ctx.sessions() as s:
            return active_jobs(s, MODEL_JOB_KINDS)

    @expose("/")
    def index(self):
        records = self._records()
        with self.ctx.sessions() as s:
            overrides = type_overrides(s)
            measured = {(m.provider, m.model): f"{m.value:.1f} {UNIT_LABELS.get(m.unit, m.unit)}"
                        for m in speeds(s)}
        row = current_app.jinja_env.get_template("admin/models/row.html").module.row
        urls, now = (url_for(".set_type"), url_for(".benchmark")), time.time()

        def rows():
            for r in records:
                chosen, speed = overrides.get((r.provider, r.model)), measured.get((r.provider, r.model), "")
                downloaded = age_text(r.download_timestamp, now) if r.download_timestamp else ""
                # ModelRecord is mutable (unhashable): its fields, as a tuple, name it.
                yield (tuple(vars(r).values()), chosen, speed, downloaded), \
                    lambda r=r, chosen=chosen, speed=speed, downloaded=downloaded: row(
                        r, chosen, speed, downloaded, urls, MODEL_TYPES, human_bytes, _count)

        return self.render("admin/models/list.html", rows=self._rows.render(rows()),
                           active_jobs=self._active_jobs())

    # -- download --------------------------------------------------------------------------
    @expose("/new/", methods=("GET", "POST"))
    def new(self):
        form = DownloadForm(request.form if request.method == "POST" else None)
        error = None
        if request.method == "POST" and form.validate():
            try:
                plan = model_ops.plan_download(self.env, form.provider.data, form.model.data,
                                               form.revision.data, checksum=form.checksum.data)
            except ModelOpError as exc:
                error = str(exc)
            else:
                job_id = self._submit_download(plan)
                flash(f"Downloading {plan.model} from {plan.provider} (job {job_id}).", "info")
                return redirect(url_for(".index"))
        status = 400 if error else 200
        return self.render("admin/models/new.html", form=form, error=error, catalog=CATALOG,
                           provider_labels=MODEL_PROVIDER_LABELS), status

    def _submit_download(self, plan: model_ops.DownloadPlan) -> int:
        env, sources = dict(self.env), self.ctx.sources

        def work(progress):
            message = model_ops.download(env, plan, progress.update)
            with sources.change("models") as change:
                change.begin()  # pages shown meanwhile wait for the re-read
                _source_for(sources, plan.provider).refresh_now()  # listed when the job shows done
            return message

        return self.ctx.jobs.submit("download", plan.target, work)

    # -- type override -------------------------------------------------------------------------
    @expose("/type/", methods=("POST",))
    def set_type(self):
        provider, model = request.form.get("provider", ""), request.form.get("model", "")
        model_type = request.form.get("model_type", "")
        try:
            model_ops.check_provider(provider)
            model_ops.check_model_id(provider, model)
            if model_type and model_type not in MODEL_TYPES:
                raise ModelOpError(f"unknown model type {model_type!r}: choose one of {', '.join(MODEL_TYPES)}")
        except ModelOpError as exc:
            flash(str(exc), "danger")
            return redirect(url_for(".index"))
        with self.ctx.sessions.begin() as s:
            set_type_override(s, provider, model, model_type or None)
        flash(f"{model}: type {'set to ' + model_type if model_type else 'back to the detected one'}.", "success")
        return redirect(url_for(".index"))

    # -- benchmark -------------------------------------------------------------------------
    @expose("/benchmark/", methods=("POST",))
    def benchmark(self):
        provider, model = request.form.get("provider", ""), request.form.get("model", "")
        try:
            model_ops.check_provider(provider, ("ollama",))
            model_ops.check_model_id(provider, model)
        except ModelOpError as exc:
            flash(f"No benchmark: {exc}", "danger")
            return redirect(url_for(".index"))
        env, sessions = dict(self.env), self.ctx.sessions

        def work(progress):
            progress.update(0.1, message=f"generating with {model}")
            tokens_per_second = model_ops.benchmark_ollama(env, model)
            with sessions.begin() as s:
                record_speed(s, provider, model, model_ops.TOKENS_UNIT, tokens_per_second)
            return f"{tokens_per_second:.1f} tokens/s"

        job_id = self.ctx.jobs.submit("benchmark", f"{provider}:{model}", work)
        flash(f"Benchmark of {model} started (job {job_id}).", "info")
        return redirect(url_for(".index"))

    # -- delete ----------------------------------------------------------------------------
    def _target(self, args):
        return model_ops.describe_delete(self.env, args.get("provider", ""), args.get("model", ""),
                                         args.get("revision") or None)

    def _confirm_page(self, target, users: tuple[list[str], list[str]], error: str | None = None):
        running, stopped = users
        page = self.render("admin/models/confirm_delete.html", target=target, error=error,
                           running_endpoints=running, stopped_endpoints=stopped)
        return page, (409 if error else 200)

    @expose("/delete/", methods=("GET", "POST"))
    def delete(self):
        args = request.form if request.method == "POST" else request.args
        try:
            target = self._target(args)
        except ModelOpError as exc:
            flash(f"Not deleted: {exc}", "danger")
            return redirect(url_for(".index"))
        with self.ctx.sessions() as s:
            users = endpoints_using(s, target.provider, target.model)
        if request.method == "GET":
            return self._confirm_page(target, users)
        shown = set(filter(None, request.form.get("endpoints_shown", "").split(",")))
        started = [name for name in users[0] if name not in shown]
        if started:  # an endpoint took the model since the page was shown: ask again, naming it
            return self._confirm_page(target, users, error=f"Not deleted: endpoint {', '.join(started)} "
                                      "now serves this model. Check and confirm again.")
        with self.ctx.sources.change("models") as change:
            change.begin()  # other pages shown meanwhile wait for the re-read
            try:
                message = model_ops.delete_model(self.env, target, confirmed=confirmed())
            except ModelOpError as exc:
                return self._confirm_page(target, users, error=str(exc))
            finally:
                _source_for(self.ctx.sources, target.provider).refresh_now()  # gone from the list shown next
        if users[0]:
            message += f"; endpoint {', '.join(users[0])} served it and will fail until given another model"
        if target.revision is None:
            with self.ctx.sessions.begin() as s:
                forget_model(s, target.provider, target.model)
        flash(message, "success")
        return redirect(url_for(".index"))


def register(admin, ctx) -> None:
    admin.add_view(ModelsView(ctx, name="Models", endpoint="models", url="/admin/models"))
