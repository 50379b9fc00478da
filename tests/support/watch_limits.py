"""The kernel's inotify limits as a test sees them: watches refused, or refused for a while."""
from __future__ import annotations

import errno

from watchdog.observers import Observer


class ExhaustedWhileHeld(Observer):
    """The kernel refusing watches while another program holds them all (`held`), then not."""

    held = True

    def schedule(self, *args, **kwargs):
        if type(self).held:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")
        return super().schedule(*args, **kwargs)
