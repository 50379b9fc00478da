"""Alerts: the receivers notifications go to (rendered into Alertmanager's config), a test
notification per receiver, and the alerts firing now with "snooze 1 h"."""
from __future__ import annotations

import logging
import re
import threading
import time
from urllib.parse import urlsplit

from flask import flash, redirect, request, url_for
from flask_admin import expose
from markupsafe import Markup, escape
from sqlalchemy import select
from wtforms import PasswordField, SelectField
from wtforms.validators import Optional, ValidationError

from common import outbound
from common.store.alerts import RECEIVER_KINDS, AlertReceiver

from admin.alerting import relay
from admin.alerting.alertmanager import (INTEGRATIONS, TEST_ALERT, Alertmanager, AlertmanagerError,
                                         wait_for_delivery)
from admin.alerting.apply import apply, refusal
from admin.security import SecureBaseView, SecureModelView, csrf_token, mask_secret
from admin.validation import check_name, check_unique_name, max_chars

log = logging.getLogger(__name__)
SNOOZE_SECONDS = 3600
URL_KINDS = ("webhook", "slack", "discord", "msteams", "ntfy")
_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")
_HOSTPORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")


def _destination(view, context, model, name):
    if model.kind == "email":
        return f"{model.email_to} via {model.smarthost}"
    return mask_secret(model.url)


def _test_button(view, context, model, name):
    url = url_for(".test", receiver_id=model.id)
    return Markup(f'<form method="post" action="{escape(url)}" class="alert-test">'
                  f'<input type="hidden" name="csrf_token" value="{escape(csrf_token())}">'
                  '<button type="submit" class="btn btn-sm btn-outline-primary">send test notification</button>'
                  '</form>')


def check_secret_url(value: str, kind: str) -> None:
    """http(s) URL with a host; the message never repeats the URL (it is the secret)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or re.search(r"\s", value):
        raise ValidationError(f"the {kind} URL must be an http:// or https:// URL without spaces")
    if kind == "ntfy" and (not parts.path.strip("/") or "/" in parts.path.strip("/")):
        raise ValidationError("the ntfy URL is the server and the topic, e.g. https://ntfy.sh/my-topic")


class ReceiverView(SecureModelView):
    can_export = False
    column_list = ("name", "kind", "enabled", "destination", "send_resolved", "test")
    column_details_list = ("name", "kind", "enabled", "destination", "token", "send_resolved",
                           "email_from", "smtp_username", "smtp_password", "smtp_require_tls")
    column_labels = {"destination": "Sends to", "send_resolved": "Also when resolved", "test": "",
                     "token": "Bearer token", "smtp_password": "SMTP password", "smarthost": "SMTP server"}
    column_formatters = {"destination": _destination, "test": _test_button,
                         "token": lambda v, c, m, n: mask_secret(m.token),
                         "smtp_password": lambda v, c, m, n: mask_secret(m.smtp_password)}
    column_default_sort = "name"
    form_columns = ("name", "kind", "enabled", "send_resolved", "new_url", "new_token", "clear_token",
                    "email_to", "email_from", "smarthost", "smtp_username", "new_smtp_password",
                    "smtp_require_tls")
    form_overrides = {"kind": SelectField}
    form_args = {
        "kind": {"choices": [(k, k) for k in RECEIVER_KINDS]},
        "email_to": {"label": "Email to"}, "email_from": {"label": "Email from"},
        "smarthost": {"label": "SMTP server", "description": "host:port, e.g. smtp.gmail.com:587"},
        "smtp_username": {"label": "SMTP user name", "description": "empty: no authentication"},
        "smtp_require_tls": {"label": "SMTP needs STARTTLS"},
    }
    form_extra_fields = {
        "new_url": PasswordField("Webhook URL, or ntfy server and topic (stored, never shown again; empty "
                                 "keeps the current one)", validators=[Optional(), max_chars("url", "URL")]),
        "new_token": PasswordField("Bearer token for a webhook or ntfy (optional; never shown again)",
                                   validators=[Optional(), max_chars("key", "Token")]),
        "clear_token": SelectField("Stored token", choices=[("", "keep"), ("clear", "forget it")],
                                   default=""),
        "new_smtp_password": PasswordField("SMTP password (stored, never shown again; empty keeps the "
                                           "current one)", validators=[Optional(),
                                                                        max_chars("key", "SMTP password")]),
    }

    def __init__(self, ctx, **kwargs):
        self.ctx = ctx
        super().__init__(AlertReceiver, ctx.sessions, **kwargs)

    def on_model_change(self, form, model, is_created):
        check_name(model.name, "receiver")
        check_unique_name(self, model, "receiver")
        if model.kind not in RECEIVER_KINDS:
            raise ValidationError(f"kind must be one of {', '.join(RECEIVER_KINDS)}")
        for field in ("new_url", "new_token", "new_smtp_password"):
            value = (getattr(form, field).data or "").strip()
            if re.search(r"\s", value):
                raise ValidationError("a URL, token or password has no spaces or line breaks: paste it again")
        new_url = (form.new_url.data or "").strip()
        if new_url:
            model.url = new_url
        if form.clear_token.data == "clear":
            model.token = ""
        elif (form.new_token.data or "").strip():
            model.token = form.new_token.data.strip()
        if (form.new_smtp_password.data or "").strip():
            model.smtp_password = form.new_smtp_password.data.strip()
        if model.kind == "email":
            self._check_email(model)
        else:
            if not model.url:
                raise ValidationError(f"a {model.kind} receiver needs its URL")
            check_secret_url(model.url, model.kind)
            try:
                outbound.check_url(model.url)
            except outbound.ForbiddenDestination:  # the message would show the URL: it is the secret
                raise ValidationError(f"the {model.kind} URL points at a link-local or cloud metadata "
                                      "address: refused") from None
        self._check_alertmanager_takes_it(model)

    def _check_alertmanager_takes_it(self, model):
        """Refuse, before anything is stored, a receiver Alertmanager would not load (Go parses
        URLs and host:port stricter than the checks above): saved, it would block every later save."""
        with self.session.no_autoflush:
            others = [r for r in self.session.scalars(select(AlertReceiver)) if r is not model]
        reason = refusal(self.ctx.sessions, self.ctx.settings, sorted(others + [model], key=lambda r: r.name))
        if reason is not None:
            raise ValidationError(f"Alertmanager would refuse this receiver: {reason}")

    @staticmethod
    def _check_email(model):
        for what, value in (("to", model.email_to), ("from", model.email_from)):
            if not value or not _ADDRESS.match(value.strip()):
                raise ValidationError(f"email {what}: one address like name@example.org")
        if not model.smarthost or not _HOSTPORT.match(model.smarthost.strip()):
            raise ValidationError("SMTP server: host:port, e.g. smtp.example.org:587")
        if model.smtp_username and not model.smtp_password:
            raise ValidationError("an SMTP user name needs its password")
        model.email_to, model.email_from = model.email_to.strip(), model.email_from.strip()
        model.smarthost = model.smarthost.strip()

    def after_model_change(self, form, model, is_created):
        self._apply()

    def after_model_delete(self, model):
        self._apply()

    def _apply(self):
        try:
            flash(apply(self.ctx.sessions, self.ctx.settings), "success")
        except AlertmanagerError as exc:
            flash(str(exc), "warning")

    @expose("/test/<int:receiver_id>/", methods=["POST"])
    def test(self, receiver_id: int):
        with self.ctx.sessions() as session:
            receiver = session.get(AlertReceiver, receiver_id)
            if receiver is None:
                flash("no such receiver", "danger")
                return redirect(url_for(".index_view"))
            name, kind, enabled = receiver.name, receiver.kind, receiver.enabled
        if not enabled:
            flash(f"{name} is disabled: enable it first", "warning")
            return redirect(url_for(".index_view"))
        flash(*send_test(Alertmanager(self.ctx.settings.alertmanager_url), name, kind))
        return redirect(url_for(".index_view"))


def send_test(am: Alertmanager, name: str, kind: str) -> tuple[str, str]:
    """Post a test alert routed to one receiver and say what became of it: (message, category)."""
    integration = INTEGRATIONS[kind]
    try:
        before = am.delivery_counts(integration)
        am.send_test(name)
        outcome = wait_for_delivery(am, integration, before)
    except AlertmanagerError as exc:
        return f"test notification not sent: {exc}", "danger"
    if outcome == "sent":
        return f"test notification to {name} delivered by Alertmanager ({kind})", "success"
    if outcome == "failed":
        return (f"test notification to {name} failed: Alertmanager could not deliver it ({kind}); "
                "check the receiver's URL or SMTP settings, and Alertmanager's log"), "danger"
    return f"test notification to {name} accepted by Alertmanager; no delivery attempt seen yet", "warning"


class FiringAlertsView(SecureBaseView):
    """What fires now, from Alertmanager; "snooze 1 h" silences exactly that alert."""

    def __init__(self, ctx, **kwargs):
        super().__init__(**kwargs)
        self.ctx = ctx

    def _am(self) -> Alertmanager:
        return Alertmanager(self.ctx.settings.alertmanager_url)

    @expose("/")
    def index(self):
        alerts, error = [], None
        try:
            # Test notifications are not problems: they are not listed.
            alerts = sorted((a for a in self._am().alerts() if a["labels"].get("alertname") != TEST_ALERT),
                            key=lambda a: a.get("startsAt", ""))
        except AlertmanagerError as exc:
            error = str(exc)
        return self.render("admin/alerts_firing.html", alerts=alerts, error=error,
                           alertmanager_url=self.ctx.settings.alertmanager_url)

    @expose("/snooze/", methods=["POST"])
    def snooze(self):
        fingerprint = request.form.get("fingerprint", "")
        try:
            alert = next((a for a in self._am().alerts() if a.get("fingerprint") == fingerprint), None)
            if alert is None:
                flash("that alert is no longer firing: nothing to snooze", "warning")
            else:
                labels = alert.get("labels") or {}
                self._am().silence(labels, SNOOZE_SECONDS, "snoozed 1 h from the wordslab admin")
                flash(f"{labels.get('alertname', 'alert')} snoozed for 1 hour", "success")
        except AlertmanagerError as exc:
            flash(str(exc), "danger")
        return redirect(url_for(".index"))


def _apply_at_start(ctx, attempts: int = 30, pause: float = 2.0) -> None:
    """Write the config now and reload Alertmanager once it answers (it may start after us)."""
    for _ in range(attempts):
        try:
            apply(ctx.sessions, ctx.settings)
            return
        except AlertmanagerError:
            time.sleep(pause)
    log.warning("Alertmanager at %s did not answer: its config is written and applies when it starts",
                ctx.settings.alertmanager_url)


def register(admin, ctx) -> None:
    admin.add_view(ReceiverView(ctx, name="Receivers", endpoint="alert_receivers", category="Alerts"))
    admin.add_view(FiringAlertsView(ctx, name="Firing alerts", endpoint="alerts", category="Alerts"))
    if admin.app is not None:
        admin.app.register_blueprint(relay.blueprint(ctx))
    apply(ctx.sessions, ctx.settings, reload=False)
    threading.Thread(target=_apply_at_start, args=(ctx,), name="alertmanager-config", daemon=True).start()
