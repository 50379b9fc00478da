"""What every admin view needs, handed over at registration."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from common.config import Settings

from admin.jobs import JobRunner
from admin.sources import AdminSources

DEFAULT_GRAFANA_URL = "http://127.0.0.1:3000"
# Dashboard uids are fixed: Grafana panels and the admin link to them by uid.
GRAFANA_DASHBOARDS = {
    "wordslab-home": "wordslab home",
    "wordslab-machine": "Machine resources",
    "wordslab-devenv": "Development environment",
    "wordslab-ai-services": "AI services",
}


@dataclass
class AdminContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker
    jobs: JobRunner
    grafana_url: str = DEFAULT_GRAFANA_URL  # for links back to the dashboards
    # Watched snapshots of projects and models that pages read (started on first use).
    sources: AdminSources = field(init=False)

    def __post_init__(self) -> None:
        self.grafana_url = (self.grafana_url or DEFAULT_GRAFANA_URL).rstrip("/")
        self.sources = AdminSources(self.settings)

    def dashboard_url(self, uid: str) -> str:
        return f"{self.grafana_url}/d/{uid}"
