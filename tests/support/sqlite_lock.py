"""Another process holding SQLite's exclusive lock on a DB file, as a stuck writer or a tool would."""
from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# locking_mode=EXCLUSIVE keeps the lock after the write; it is let go when stdin closes.
_HOLD_LOCK = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute('PRAGMA locking_mode=EXCLUSIVE')
c.execute('BEGIN EXCLUSIVE')
c.execute("UPDATE settings SET value = value")
print('locked', flush=True)
sys.stdin.read()
"""


@contextmanager
def exclusive_lock(db_path: Path) -> Iterator[subprocess.Popen]:
    """Hold the lock from a second process until the block ends (or `.stdin.close()` on what it
    yields, then `.wait()`)."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(db_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked", "the second process could not lock the DB"
        yield holder
    finally:
        if not holder.stdin.closed:
            holder.stdin.close()
        try:
            holder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
