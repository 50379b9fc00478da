"""Waiting for a background outcome (a file event handled, a source refreshed) in tests."""
from __future__ import annotations

import time

# Generous, for a loaded machine: tests wait for an outcome; speed is measured in bench/.
WAIT_SECONDS = 30.0


def eventually(check, timeout: float = WAIT_SECONDS):
    """`check()`'s first truthy value, polled every 50 ms; its last value once `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
