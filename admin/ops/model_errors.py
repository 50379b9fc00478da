"""The error every model operation raises for the user."""
from __future__ import annotations

from admin.jobs import JobFailed


class ModelOpError(JobFailed):
    """A refused or failed model operation, with a message meant for the user."""
