"""The admin's per-model settings (type overrides, measured speeds), read by the exporter."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import OperationalError

from common.store.db import read_session
from common.store.models import speeds, type_overrides


@dataclass(frozen=True)
class ModelSettings:
    types: dict[tuple[str, str], str] = field(default_factory=dict)
    # (provider, model, unit) -> value
    speeds: dict[tuple[str, str, str], float] = field(default_factory=dict)


def read_model_settings(db_path: Path | None) -> ModelSettings:
    """A missing DB (or one from before these tables) means nothing set, not a failure."""
    try:
        with read_session(db_path) as session:
            if session is None:
                return ModelSettings()
            return ModelSettings(
                types=type_overrides(session),
                speeds={(s.provider, s.model, s.unit): s.value for s in speeds(session)})
    except OperationalError as exc:
        if "no such table" in str(exc):
            return ModelSettings()
        raise
