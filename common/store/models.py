"""Per-model settings the admin writes: a model-type override and measured processing speed."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from common.store.db import Base
from common.store.jobs import utcnow


class ModelTypeOverride(Base):
    """The type a user chose when the metadata guessed wrong (or said nothing)."""

    __tablename__ = "model_type_overrides"

    provider: Mapped[str] = mapped_column(String(40), primary_key=True)
    model: Mapped[str] = mapped_column(String(400), primary_key=True)
    model_type: Mapped[str] = mapped_column(String(20))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# How a stored speed was measured: benchmark = the admin's benchmark action (the only Ollama
# generation the admin makes; loads and probes generate nothing). vLLM speeds come from vLLM's
# own metrics through Prometheus, not from here.
SPEED_SOURCES = ("benchmark",)


class ModelSpeed(Base):
    """The last processing speed measured for a model (e.g. tokens per second), and how."""

    __tablename__ = "model_speeds"

    provider: Mapped[str] = mapped_column(String(40), primary_key=True)
    model: Mapped[str] = mapped_column(String(400), primary_key=True)
    unit: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(40), default="benchmark")
    measured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def type_overrides(session: Session) -> dict[tuple[str, str], str]:
    return {(r.provider, r.model): r.model_type for r in session.scalars(select(ModelTypeOverride))}


def speeds(session: Session) -> list[ModelSpeed]:
    return list(session.scalars(select(ModelSpeed).order_by(ModelSpeed.provider, ModelSpeed.model)))


def set_type_override(session: Session, provider: str, model: str, model_type: str | None) -> None:
    """None clears the override (back to the type inferred from metadata)."""
    row = session.get(ModelTypeOverride, (provider, model))
    if model_type is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(ModelTypeOverride(provider=provider, model=model, model_type=model_type))
    else:
        row.model_type, row.updated_at = model_type, utcnow()


def record_speed(session: Session, provider: str, model: str, unit: str, value: float,
                 source: str = "benchmark") -> None:
    row = session.get(ModelSpeed, (provider, model, unit))
    if row is None:
        session.add(ModelSpeed(provider=provider, model=model, unit=unit, value=value, source=source))
    else:
        row.value, row.source, row.measured_at = value, source, utcnow()


def forget_model(session: Session, provider: str, model: str) -> None:
    """After a delete: its override and speeds would otherwise outlive it."""
    for cls in (ModelTypeOverride, ModelSpeed):
        for row in session.scalars(select(cls).where(cls.provider == provider, cls.model == model)):
            session.delete(row)
