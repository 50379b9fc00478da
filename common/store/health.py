"""Is the dashboard's SQLite file usable? One clear line when it is not, for both processes.

A file that is not a database (overwritten, truncated, a different file) or whose pages are
damaged ("database disk image is malformed") is found at start by SQLite's own
`PRAGMA quick_check` through the process's engine; the message names the file and what to
do, so nobody reads a 100-line traceback to learn it.
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, DatabaseError


class DatabaseUnusable(RuntimeError):
    """The DB file cannot be used; str() is one line naming it and what to do."""


def advice(db_path: Path | str, reason: str) -> str:
    path = Path(db_path)
    return (f"{path} is not a usable SQLite database ({reason}): move it aside "
            f"(mv {path} {path}.broken) and start again to begin with an empty one, "
            "or restore it from a backup")


def reason_of(exc: BaseException) -> str:
    """SQLite's own words, without SQLAlchemy's SQL and background link."""
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return " ".join(str(original).split()) or type(original).__name__


def check_database(engine: Engine, db_path: Path | str) -> None:
    """Raise DatabaseUnusable unless SQLite opens the file and its quick_check says "ok"."""
    try:
        with engine.connect() as conn:
            rows = [r[0] for r in conn.exec_driver_sql("PRAGMA quick_check(3)")]
    except DatabaseError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return  # in use by another process: usable, just busy now
        raise DatabaseUnusable(advice(db_path, reason_of(exc))) from None
    if rows != ["ok"]:
        found = " ".join("; ".join(map(str, rows)).replace("*", "").split())
        raise DatabaseUnusable(advice(db_path, "damaged: " + found[:200]))
