"""The config store: SQLAlchemy models over one SQLite file.

Written by the admin, read by the exporter. Importing this package registers
every table on `Base.metadata` so `init_db` creates and upgrades all of them.
"""
from common.store.db import Base, connect, init_db, session_factory  # noqa: F401
from common.store import alerts, jobs, settings, services, vms, models  # noqa: F401  (registers tables)
