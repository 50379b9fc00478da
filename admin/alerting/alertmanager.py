"""Alertmanager's HTTP API as the admin uses it: alerts, silences, test alerts, reload.

API v2 (Alertmanager >= 0.16): GET/POST /api/v2/alerts, POST /api/v2/silences, and
POST /-/reload to re-read the config file. Every failure raises AlertmanagerError with a
message for the user (no URL beyond Alertmanager's own address, no secret).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from prometheus_client.parser import text_string_to_metric_families

from common import http_client, redact

TIMEOUT = (3.0, 10.0)
TEST_ALERT = "WordslabTestNotification"


class AlertmanagerError(Exception):
    """Alertmanager did not answer or refused; the message says which. `refused`: it answered
    with an error (a config it would not load), as opposed to not answering at all."""

    def __init__(self, message: str, refused: bool = False):
        super().__init__(message)
        self.refused = refused


def iso(ts: float) -> str:
    """RFC 3339 in UTC, as Alertmanager's API wants times."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Alertmanager:
    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")

    def _call(self, method: str, path: str, **kwargs) -> http_client.Response:
        try:
            response = http_client.request(method, self.base_url + path, timeout=TIMEOUT, **kwargs)
        except http_client.RequestException as exc:
            raise AlertmanagerError(f"Alertmanager at {self.base_url} did not answer: {exc}") from None
        if response.status_code >= 400:
            detail = redact.excerpt(response.text, 300)
            raise AlertmanagerError(f"Alertmanager refused {method} {path}: HTTP {response.status_code} {detail}",
                                    refused=True)
        return response

    def reload(self) -> None:
        """Re-read the config file; raises with Alertmanager's reason when the file is bad."""
        self._call("POST", "/-/reload")

    def alerts(self) -> list[dict]:
        """Active (firing, not silenced) alerts: [{labels, annotations, startsAt, fingerprint, ...}]."""
        return self._call("GET", "/api/v2/alerts", params={"active": "true", "silenced": "false",
                                                              "inhibited": "false"}).json()

    def post_alerts(self, alerts: list[dict]) -> None:
        """Post alerts as Prometheus does: [{labels, annotations, startsAt?, endsAt?}]."""
        self._call("POST", "/api/v2/alerts", json=alerts)

    def silence(self, matchers: dict[str, str], seconds: float, comment: str,
                now: float | None = None) -> str:
        """Silence alerts whose labels equal `matchers` for `seconds`; returns the silence id."""
        start = time.time() if now is None else now
        body = {"matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True}
                             for k, v in sorted(matchers.items())],
                "startsAt": iso(start), "endsAt": iso(start + seconds),
                "createdBy": "wordslab-admin", "comment": comment}
        return self._call("POST", "/api/v2/silences", json=body).json().get("silenceID", "")

    def send_test(self, receiver: str | None = None, now: float | None = None) -> None:
        """A short test alert, routed to one receiver (by name) or to all of them."""
        start = time.time() if now is None else now
        labels = {"alertname": TEST_ALERT, "severity": "info", "test_id": f"{start:.3f}"}
        if receiver:
            labels["wordslab_receiver"] = receiver
        self.post_alerts([{"labels": labels, "startsAt": iso(start), "endsAt": iso(start + 300),
                           "annotations": {"summary": "Test notification from wordslab-dashboard",
                                           "description": "If you read this, alerts reach you here."}}])

    def delivery_counts(self, integration: str) -> tuple[float, float]:
        """(requests sent, requests failed) so far for one integration, from Alertmanager's /metrics
        (alertmanager_notification_requests_*: one per attempt, retries included; >= 0.22)."""
        sent = failed = 0.0
        for family in text_string_to_metric_families(self._call("GET", "/metrics").text):
            for sample in family.samples:
                if sample.labels.get("integration") != integration:
                    continue
                if sample.name == "alertmanager_notification_requests_total":
                    sent += sample.value
                elif sample.name == "alertmanager_notification_requests_failed_total":
                    failed += sample.value
        return sent, failed


# Alertmanager's integration name (its notification metrics' label) for each receiver kind.
INTEGRATIONS = {"email": "email", "webhook": "webhook", "slack": "slack", "discord": "discord",
                "msteams": "webhook", "ntfy": "webhook"}


def wait_for_delivery(am: Alertmanager, integration: str, before: tuple[float, float],
                      timeout: float = 10.0) -> str | None:
    """'sent' or 'failed' once Alertmanager tried the integration after `before`; None if not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sent, failed = am.delivery_counts(integration)
        if failed > before[1]:
            return "failed"
        if sent > before[0]:
            time.sleep(0.5)  # an attempt counts before it ends; a failure follows it
            return "failed" if am.delivery_counts(integration)[1] > before[1] else "sent"
        time.sleep(0.5)
    return None
