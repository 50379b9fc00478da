"""Names from the file system made safe to show: UTF-8 text a page or /metrics can always encode.

Python decodes file names that are not valid UTF-8 (a Latin-1 `café` written as b"caf\\xe9")
with surrogate escapes; such a str cannot be encoded as UTF-8, so rendering it fails. Here
each undecodable byte becomes a visible `\\xNN` escape, which keeps two different names
different (a U+FFFD replacement would merge them into one series).
"""
from __future__ import annotations

import os
from typing import Any


def readable(text: str) -> str:
    """`text` unchanged when it is valid UTF-8 text, else with each stray byte as `\\xNN`.

    Example: readable(os.fsdecode(b"caf\\xe9-notes")) == "caf\\\\xe9-notes".
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:  # surrogate escapes from os.fsdecode / os.scandir: back to the bytes, then escaped
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # other lone surrogates (e.g. from JSON "\ud800")
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def readable_value(value: Any) -> Any:
    """`readable` for strings (str subclasses such as markupsafe.Markup keep their type) and
    paths (as str), anything else as is. Used as the admin's Jinja `finalize`."""
    if isinstance(value, str):
        text = readable(value)
        return value if text is value else type(value)(text)
    if isinstance(value, os.PathLike):
        return readable(os.fspath(value))
    return value
