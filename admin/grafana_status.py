"""Whether Grafana answers where it listens, checked in the background.

Every admin page links to Grafana; when Grafana is not running those links open nothing.
A thread GETs `<settings.grafana_url>/api/health` (Grafana's own health endpoint, no login
needed) every CHECK_SECONDS, on loopback where Grafana listens: the links' public URL goes
through the front door, whose login would answer for a Grafana that is down. The base
template says, instead of leaving dead links, that Grafana does not answer and how to start
it. Pages never wait for the check.
"""
from __future__ import annotations

from dataclasses import dataclass

from common import http_client
from common.background import BackgroundSource
from common.config import GRAFANA_OFF

CHECK_SECONDS = 15.0
TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class GrafanaHealth:
    ok: bool
    detail: str  # why it is not ok ("connection refused", "HTTP 502"); "" when ok


def check(grafana_url: str) -> GrafanaHealth:
    """GET /api/health: ok on a 200 answer, else what went wrong. Never raises."""
    if grafana_url.strip().lower() == GRAFANA_OFF:
        return GrafanaHealth(False, "it was not started: no Grafana is installed for this stack")
    try:
        response = http_client.get(grafana_url.rstrip("/") + "/api/health", timeout=TIMEOUT_SECONDS,
                                   allow_redirects=False)
    except http_client.RequestException as exc:
        return GrafanaHealth(False, str(exc) or type(exc).__name__)
    if response.status_code != 200:
        return GrafanaHealth(False, f"/api/health answered HTTP {response.status_code}")
    return GrafanaHealth(True, "")


class GrafanaStatus:
    def __init__(self, grafana_url: str, interval_seconds: float = CHECK_SECONDS):
        self.grafana_url = grafana_url
        self.source = BackgroundSource("grafana_health", lambda: check(grafana_url), interval_seconds)

    def start(self) -> None:
        self.source.start()

    def current(self) -> GrafanaHealth | None:
        """The last check's answer; None before the first one."""
        return self.source.snapshot().value
