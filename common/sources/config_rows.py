"""Read rows of the config store from the exporter: read-only, a missing file means none."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

from sqlalchemy import select

from common.store.db import read_session

T = TypeVar("T")


def read_rows(db_path: Path | None, model, convert: Callable[[object], T]) -> list[T]:
    """All rows of `model`, each turned into a plain value by `convert` inside the session."""
    with read_session(db_path) as session:
        if session is None:
            return []
        return [convert(row) for row in session.scalars(select(model).order_by(model.name))]
