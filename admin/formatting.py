"""Display helpers shared by Python formatters, templates and the JSON endpoints."""
from __future__ import annotations

import math
from datetime import datetime, timezone

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(count: int | float | None) -> str:
    """'1.5 GiB'; '' when unknown (None, NaN, infinite)."""
    if count is None or not math.isfinite(count):
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


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """'1 unpushed commit', '2 unpushed commits' (plural_form for irregular ones: 'stashes')."""
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"


def usd(amount: float | None, per: str = "") -> str:
    """Dollars as people read them, with cents: '$0.49/h', '$1,234.50'; a positive amount under
    half a cent reads '<$0.01' rather than a misleading '$0.00' (a credit that small '>-$0.01');
    '' when unknown (None, NaN or infinite: a price a provider did not give as a number)."""
    if amount is None or not math.isfinite(amount):
        return ""
    if 0 < amount < 0.005:
        return f"<$0.01{per}"
    if -0.005 < amount < 0:
        return f">-$0.01{per}"
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.2f}{per}"
