"""SQLite engine, declarative base and in-place schema upgrade."""
from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.orm import DeclarativeBase, sessionmaker


class Base(DeclarativeBase):
    pass


def connect(db_path: Path | str, *, readonly: bool = False) -> Engine:
    """Engine over the SQLite file, in WAL mode so the exporter reads while the admin writes."""
    db_path = Path(db_path)
    if readonly:
        url = f"sqlite:///file:{db_path}?mode=ro&uri=true"
    else:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{db_path}"
    engine = create_engine(url, connect_args={"timeout": 10, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        cursor = dbapi_conn.cursor()
        if not readonly:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    return engine


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def init_db(engine: Engine) -> None:
    """Create missing tables and add missing columns, so an upgrade keeps all data."""
    Base.metadata.create_all(engine)
    inspector = inspect(engine)
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            existing = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in existing:
                    continue
                col_type = column.type.compile(engine.dialect)
                default = ""
                if column.server_default is not None:
                    default = f" DEFAULT {column.server_default.arg}"
                elif not column.nullable:
                    # SQLite needs a default to add a NOT NULL column to existing rows.
                    default = " DEFAULT ''" if "CHAR" in col_type or "TEXT" in col_type else " DEFAULT 0"
                conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {col_type}{default}'))
    url_path = engine.url.database
    if url_path and os.path.exists(url_path):
        os.chmod(url_path, 0o600)  # it holds API keys: owner only
