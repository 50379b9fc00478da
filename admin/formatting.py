"""Display helpers shared by Python formatters, templates and the JSON endpoints."""
from __future__ import annotations

from datetime import datetime, timezone

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(count: int | float | None) -> str:
    if count is None:
        return ""
    value = float(count)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""  # unreachable: the loop returns on the last unit


def progress_text(job) -> str:
    """'42 % · 1.2 GiB / 3.0 GiB' for a job (bytes only when known)."""
    text = f"{(job.progress or 0.0) * 100:.0f} %"
    if job.bytes_total:
        text += f" · {human_bytes(job.bytes_done or 0)} / {human_bytes(job.bytes_total)}"
    elif job.bytes_done:
        text += f" · {human_bytes(job.bytes_done)}"
    return text


def utc_iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC; SQLite hands back naive datetimes that were stored as UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
