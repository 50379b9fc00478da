"""Prometheus' HTTP API as the admin reads it (autostop, budget guard): instant queries."""
from __future__ import annotations

from common import http_client, redact

TIMEOUT = (3.0, 10.0)


class PrometheusError(Exception):
    """Prometheus did not answer, or refused the query; the message says which."""


def query(prometheus_url: str, expr: str, now: float) -> list[dict]:
    """GET /api/v1/query at `now`: the result list ([{metric, value}] for an instant vector,
    [{metric, values}] for a range vector). Raises PrometheusError."""
    try:
        response = http_client.get(prometheus_url.rstrip("/") + "/api/v1/query",
                                   params={"query": expr, "time": f"{now:.3f}"}, timeout=TIMEOUT)
        body = response.json()
    except (http_client.RequestException, ValueError) as exc:
        raise PrometheusError(f"Prometheus did not answer: {exc}") from None
    if not isinstance(body, dict):
        raise PrometheusError(f"Prometheus answered something else than its API's JSON (HTTP {response.status_code})")
    if body.get("status") != "success":
        raise PrometheusError(f"Prometheus refused the query: {redact.excerpt(str(body.get('error', response.status_code)), 300)}")
    result = (body.get("data") or {}).get("result") if isinstance(body.get("data"), dict) else None
    if not isinstance(result, list):
        raise PrometheusError("Prometheus answered without a result list")
    return result
