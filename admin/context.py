"""What every admin view needs, handed over at registration."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from exporter.config import Settings

from .jobs import JobRunner


@dataclass
class AdminContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker
    jobs: JobRunner
    grafana_url: str | None = None  # for links back to the dashboards
