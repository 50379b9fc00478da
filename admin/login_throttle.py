"""Slows password guessing with one counter for the admin account, whatever the source address.

The admin has one account and everyone comes from 127.0.0.1 (or any 127.x address, or
through one proxy), so a per-address count is both bypassable and a lock-out of the owner.
Instead each wrong password doubles the wait before the next check is allowed, after
FREE_FAILURES free ones: 1 s, 2 s, 4 s ... capped at MAX_DELAY_SECONDS. An attacker gets
about one guess a minute; the owner, even while someone guesses, waits at most a minute for
a try (and `wordslab-admin --reset-password` sets a new password from the terminal).

Attempts are claimed before the password is checked (a check takes ~0.1 s of PBKDF2), so
40 concurrent guesses get FREE_FAILURES checks, the rest a 429 with Retry-After. A right
password resets the count; so do QUIET_RESET_SECONDS without a failure.

In memory on purpose: the admin is a single local process; a restart (which an attacker
cannot trigger) starts over.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Callable

FREE_FAILURES = 3
BASE_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 60.0
QUIET_RESET_SECONDS = 900.0


def delay_after(failures: int, free: int = FREE_FAILURES, base: float = BASE_DELAY_SECONDS,
                cap: float = MAX_DELAY_SECONDS) -> float:
    """Seconds to wait after `failures` wrong (or pending) passwords: 0, ..., then base * 2^k."""
    if failures < free:
        return 0.0
    return min(cap, base * 2 ** (failures - free))


class LoginThrottle:
    def __init__(self, free: int = FREE_FAILURES, base: float = BASE_DELAY_SECONDS,
                 cap: float = MAX_DELAY_SECONDS, quiet_reset: float = QUIET_RESET_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.free, self.base, self.cap, self.quiet_reset = free, base, cap, quiet_reset
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._pending = 0
        self._next_allowed = 0.0
        self._last_failure = -math.inf

    def _delay(self, count: int) -> float:
        return delay_after(count, self.free, self.base, self.cap)

    def acquire(self) -> int:
        """Claim the right to check one password: 0 when granted (then call `release`), else
        the whole seconds to wait before trying again."""
        with self._lock:
            now = self._clock()
            if not self._pending and now - self._last_failure >= self.quiet_reset:
                self._failures = 0
            if now < self._next_allowed:
                return max(1, math.ceil(self._next_allowed - now))
            self._pending += 1
            # Counted as a failure until it proves otherwise: concurrent guesses cannot share a slot.
            self._next_allowed = max(self._next_allowed, now + self._delay(self._failures + self._pending))
            return 0

    def release(self, succeeded: bool) -> None:
        """The claimed check's result."""
        with self._lock:
            now = self._clock()
            self._pending = max(0, self._pending - 1)
            if succeeded:
                self._failures = 0
                self._next_allowed = now + self._delay(self._pending) if self._pending else now
                return
            self._failures += 1
            self._last_failure = now
            self._next_allowed = max(self._next_allowed, now + self._delay(self._failures + self._pending))

    def retry_after(self) -> int:
        """Seconds until a password may be checked again; 0 when one may be now."""
        with self._lock:
            return max(0, math.ceil(self._next_allowed - self._clock()))
