"""Read rows of the config store from the exporter: read-only, a missing file means none."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..store import connect

T = TypeVar("T")


def read_rows(db_path: Path | None, model, convert: Callable[[object], T]) -> list[T]:
    """All rows of `model`, each turned into a plain value by `convert` inside the session."""
    if db_path is None or not Path(db_path).exists():
        return []
    engine = connect(db_path, readonly=True)
    try:
        with Session(engine) as session:
            return [convert(row) for row in session.scalars(select(model).order_by(model.name))]
    finally:
        engine.dispose()
