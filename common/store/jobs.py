"""Background jobs (clones, model downloads...) started by the admin, published by the exporter."""
from __future__ import annotations

import re
from datetime import datetime, timezone

from sqlalchemy import DateTime, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from common.store.db import Base

JOB_STATUSES = ("queued", "running", "done", "failed")
ACTIVE_STATUSES = ("queued", "running")

# The user-info part of a URL: "https://user:token@host", "https://token@host".
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<user>[^/@:\s]*)(?P<password>:[^/@\s]*)?@")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(400))
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    bytes_done: Mapped[int | None] = mapped_column(Integer, nullable=True)
    bytes_total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} {self.target} {self.status}>"


def public_target(target: str) -> str:
    """The target without URL credentials: it is shown in lists, logs and /metrics.

    Over http(s) any user-info may be a token and goes; an ssh user name ("git@") stays.
    """
    def scrub(match: re.Match) -> str:
        scheme = match["scheme"]
        if scheme.lower() in ("http", "https"):
            return f"{scheme}://"
        return f"{scheme}://{match['user']}@"
    return _URL_USERINFO.sub(scrub, target)
