"""Background jobs (clones, model downloads...) started by the admin, published by the exporter."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import DateTime, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from common.redact import strip_userinfo
from common.store.db import Base
from common.store.scrubbed import ScrubbedString, ScrubbedText

JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE_STATUSES = ("queued", "running")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(ScrubbedString(400))
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    bytes_done: Mapped[int | None] = mapped_column(Integer, nullable=True)
    bytes_total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str] = mapped_column(ScrubbedText, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} {self.target} {self.status}>"


def public_target(target: str) -> str:
    """The target without URL credentials: it is shown in lists, logs and /metrics.

    Any user-info may be a token and goes; only an ssh user name ("git@") stays.
    Linear in len(target) (common.redact.strip_userinfo).
    """
    return strip_userinfo(target)
