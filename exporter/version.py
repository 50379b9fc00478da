"""This program's own version (not the wordslab-notebooks version the VM runs)."""
from __future__ import annotations

from importlib import metadata

DISTRIBUTION = "wordslab-dashboard"


def program_version() -> str:
    """The installed wordslab-dashboard distribution's version (pyproject.toml), or "unknown" when
    the code runs from a checkout that was never installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"
