"""Alertmanager webhook -> Microsoft Teams card / ntfy message, for the kinds Alertmanager
0.25 cannot send itself.

Alertmanager posts its webhook payload ({status, alerts: [{status, labels, annotations}],
commonLabels}) to POST /alerts-relay/<receiver id> with the relay's bearer token; the admin
posts the message to the receiver's URL and answers 200, or 502 so Alertmanager retries.
Neither the receiver's URL nor its token ever appears in a log line or an answer.
"""
from __future__ import annotations

import hmac
import logging
from urllib.parse import urlsplit

from flask import Blueprint, abort, request

from common import http_client
from common.store.alerts import RELAYED_KINDS, AlertReceiver

from admin.alerting.apply import relay_token

log = logging.getLogger(__name__)
TIMEOUT = (5.0, 15.0)
ENDPOINT = "alerts_relay.relay"


def title(payload: dict) -> str:
    """'[FIRING:2] WordslabVmGpuIdle on VM trainer' from a webhook payload."""
    common = payload.get("commonLabels") or {}
    alerts = payload.get("alerts") or []
    status = str(payload.get("status", "firing")).upper()
    firing = sum(1 for a in alerts if a.get("status") == "firing")
    count = f":{firing}" if status == "FIRING" and firing > 1 else ""
    where = f" on VM {common['vm']}" if common.get("vm") else (
        f" on {common['instance']}" if common.get("instance") else "")
    return f"[{status}{count}] {common.get('alertname', 'alert')}{where}"


def text(payload: dict) -> str:
    lines = []
    for alert in payload.get("alerts") or []:
        notes = alert.get("annotations") or {}
        summary = notes.get("summary") or (alert.get("labels") or {}).get("alertname", "alert")
        prefix = "resolved: " if alert.get("status") == "resolved" else ""
        lines.append(prefix + summary + (f"\n{notes['description']}" if notes.get("description") else ""))
    return "\n\n".join(lines) or "(no alerts)"


def teams_message(payload: dict) -> dict:
    """An Adaptive Card message, as Teams incoming webhooks and Workflows accept."""
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": "1.4", "body": [
                {"type": "TextBlock", "text": title(payload), "weight": "Bolder", "size": "Medium", "wrap": True},
                {"type": "TextBlock", "text": text(payload), "wrap": True}]}
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}


def ntfy_message(topic_url: str, payload: dict) -> tuple[str, dict]:
    """(server URL, JSON publish body) for ntfy: https://ntfy.sh/my-topic -> https://ntfy.sh + topic."""
    parts = urlsplit(topic_url)
    resolved = payload.get("status") == "resolved"
    return f"{parts.scheme}://{parts.netloc}", {
        "topic": parts.path.strip("/"), "title": title(payload), "message": text(payload),
        "tags": ["white_check_mark"] if resolved else ["warning"], "priority": 3 if resolved else 4}


def forward(receiver: AlertReceiver, payload: dict) -> None:
    """Post the message; raises http_client.RequestException (message without the URL)."""
    headers = {"Authorization": f"Bearer {receiver.token}"} if receiver.token else {}
    if receiver.kind == "msteams":
        url, body = receiver.url, teams_message(payload)
    else:
        url, body = ntfy_message(receiver.url, payload)
    try:
        # A token, or a webhook URL that is one: never to a link-local or metadata address.
        response = http_client.post(url, json=body, headers=headers, timeout=TIMEOUT, carries_secret=True)
    except http_client.ForbiddenDestination as exc:
        raise http_client.RequestException(f"{receiver.kind}: {exc}") from None
    except http_client.RequestException as exc:
        raise http_client.RequestException(f"{receiver.kind} did not answer ({type(exc).__name__})") from None
    if response.status_code >= 300:
        raise http_client.RequestException(f"{receiver.kind} answered HTTP {response.status_code}")


def blueprint(ctx) -> Blueprint:
    bp = Blueprint("alerts_relay", __name__)

    @bp.route("/alerts-relay/<int:receiver_id>", methods=["POST"])
    def relay(receiver_id: int):
        # Bytes: compare_digest raises TypeError on a str with non-ASCII characters (a 500).
        sent = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(sent, f"Bearer {relay_token(ctx.sessions)}".encode()):
            abort(401)
        with ctx.sessions() as session:
            receiver = session.get(AlertReceiver, receiver_id)
        if receiver is None or receiver.kind not in RELAYED_KINDS:
            abort(404)
        payload = request.get_json(silent=True)
        if not isinstance(payload, dict):
            abort(400, description="expected Alertmanager's webhook JSON")
        try:
            forward(receiver, payload)
        except http_client.RequestException as exc:
            log.warning("relay to receiver %s failed: %s", receiver.name, exc)
            return {"error": str(exc)}, 502
        return {"status": "sent"}

    return bp
