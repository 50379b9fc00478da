"""Slows password guessing: after a few wrong passwords from one address, refuse for a while.

In memory on purpose: the admin is a single local process, and a restart resetting the
counters costs an attacker a restart they cannot trigger.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from typing import Callable

MAX_FAILURES = 5
WINDOW_SECONDS = 300.0


class LoginThrottle:
    def __init__(self, max_failures: int = MAX_FAILURES, window_seconds: float = WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self._clock = clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, address: str) -> deque[float]:
        failures = self._failures[address]
        cutoff = self._clock() - self.window_seconds
        while failures and failures[0] <= cutoff:
            failures.popleft()
        return failures

    def retry_after(self, address: str) -> int:
        """Seconds until `address` may try again; 0 when it may try now."""
        with self._lock:
            failures = self._recent(address)
            if len(failures) < self.max_failures:
                return 0
            return max(1, int(failures[0] + self.window_seconds - self._clock()) + 1)

    def failed(self, address: str) -> None:
        with self._lock:
            self._recent(address).append(self._clock())

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)
