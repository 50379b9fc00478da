"""Prometheus' HTTP API as the admin reads it (autostop, budget guard): instant queries."""
from __future__ import annotations

from common import http_client

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
    if body.get("status") != "success":
        raise PrometheusError(f"Prometheus refused the query: {body.get('error', response.status_code)}")
    return body["data"]["result"]
