"""SQLite engine, declarative base and in-place schema upgrade."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Engine, Float, Integer, Numeric, String, Text, create_engine, event, inspect, text
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from common.store.health import DatabaseUnusable, advice

# The DB holds API keys and the admin password hash: owner only, and so are SQLite's side files.
FILE_MODE = 0o600
SIDE_SUFFIXES = ("-wal", "-shm", "-journal")


class Base(DeclarativeBase):
    pass


def _ensure_private_file(db_path: Path) -> None:
    """Make the DB file owner-only BEFORE any SQLite connection of this process exists.

    Never opens an existing DB file or its side files: closing any descriptor of a file drops
    every POSIX advisory lock this process holds on it, so an open SQLite connection would lose
    its locks and another process could checkpoint and delete the WAL under it, losing every
    later write (SQLite's "How To Corrupt", 2.2). A missing file is created 0600 (O_EXCL:
    nothing can have it open); an existing one is tightened by path (chmod takes no descriptor).
    SQLite creates -wal/-shm/-journal with the main file's mode.
    Raises DatabaseUnusable (one line) when the path cannot be a DB file: a symlink loop, a
    parent that is a file, no permission.
    """
    try:
        db_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            os.close(os.open(db_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
        except FileExistsError:
            pass
        for path in (db_path, *(Path(f"{db_path}{s}") for s in SIDE_SUFFIXES)):
            try:
                if os.stat(path).st_mode & 0o077:
                    os.chmod(path, FILE_MODE)
            except FileNotFoundError:
                pass
    except OSError as exc:
        where = f" at {exc.filename}" if exc.filename and str(exc.filename) != str(db_path) else ""
        raise DatabaseUnusable(advice(db_path, f"{exc.strerror or type(exc).__name__}{where}")) from None


def connect(db_path: Path | str, *, readonly: bool = False, busy_timeout_ms: int = 5000) -> Engine:
    """Engine over the SQLite file, in WAL mode so the exporter reads while the admin writes.

    A read-only engine never creates the file; opening a missing one fails, so callers
    check `Path(db_path).exists()` first ("nothing configured"). A writer process makes one
    engine at start and keeps it (the file's mode is set here, before SQLite opens it).
    `busy_timeout_ms` is how long a statement waits for another process's lock before failing
    with "database is locked".
    """
    db_path = Path(db_path)
    if readonly:
        url = f"sqlite:///file:{db_path}?mode=ro&uri=true"
    else:
        _ensure_private_file(db_path)
        url = f"sqlite:///{db_path}"
    engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        cursor = dbapi_conn.cursor()
        if not readonly:
            cursor.execute("PRAGMA journal_mode=WAL")
            # Safe with WAL (only the last commits can be lost on power failure) and far fewer fsyncs.
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    return engine


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def _fill_value(column) -> Any:
    """Value for existing rows when a column is added: its default, else a neutral value."""
    default = column.default
    if default is not None and default.is_scalar:
        return default.arg
    if default is not None and default.is_callable:
        return default.arg(None)
    if column.nullable:
        return None
    if isinstance(column.type, (String, Text)):
        return ""
    if isinstance(column.type, Boolean):
        return False
    if isinstance(column.type, (Integer, Float, Numeric)):
        return 0
    return None


def init_db(engine: Engine) -> None:
    """Create missing tables, columns and indexes, so an upgrade keeps all data.

    SQLite's ADD COLUMN cannot add NOT NULL without a constant default, so new columns
    are added nullable and existing rows are filled with the model's default.
    """
    Base.metadata.create_all(engine)
    inspector = inspect(engine)
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            existing = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in existing:
                    continue
                col_type = column.type.compile(engine.dialect)
                server_default = ""
                if column.server_default is not None:
                    server_default = f" DEFAULT {column.server_default.arg}"
                conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {col_type}{server_default}'))
                value = None if server_default else _fill_value(column)
                if value is not None:
                    conn.execute(table.update().values({column.name: value}))
            for index in table.indexes:
                index.create(conn, checkfirst=True)
