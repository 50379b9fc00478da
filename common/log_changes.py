"""Logging for checks that run again and again (background refreshes every 30 s, scrapes):
a condition is logged when it starts, changes or ends, not at every run.
"""
from __future__ import annotations

import logging
import threading


class ChangeLog:
    """Per key, the last state logged. `report(key, state, message)` logs `message` only when
    `state` differs from the key's last one; `state` None means all is well again (logged once
    at INFO as `recovered`, when something had been logged before)."""

    def __init__(self, logger: logging.Logger, level: int = logging.WARNING):
        self.logger = logger
        self.level = level
        self._states: dict[str, str] = {}
        self._lock = threading.Lock()

    def changed(self, key: str, state: str | None) -> bool:
        """Record `state` for `key`; True when it differs from the key's last one."""
        with self._lock:
            if self._states.get(key) == state:
                return False
            if state is None:
                del self._states[key]
            else:
                self._states[key] = state
            return True

    def report(self, key: str, state: str | None, message: str = "", *args, recovered: str = "") -> bool:
        """Log `message % args` when `state` is new for `key`, `recovered` (INFO) when it goes back
        to None; returns whether something was logged."""
        if not self.changed(key, state):
            return False
        if state is not None:
            self.logger.log(self.level, message, *args)
        elif recovered:
            self.logger.info(recovered)
        return True
