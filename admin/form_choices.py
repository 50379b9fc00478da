"""`SelectChoice` for the admin's select fields, on every WTForms the project installs.

WTForms 3.3 (Python >= 3.11) has `SelectChoice` and deprecates `(value, label)` tuples;
WTForms 3.2, the newest on Python 3.10, has no `SelectChoice` and takes the tuples.
"""
from __future__ import annotations

try:
    from wtforms.fields.choices import SelectChoice
except ImportError:  # WTForms < 3.3
    def SelectChoice(value, label=None):  # noqa: N802 - stands in for the class
        """The `(value, label)` pair WTForms < 3.3 takes; the label defaults to the value."""
        return (value, value if label is None else label)

__all__ = ["SelectChoice"]
