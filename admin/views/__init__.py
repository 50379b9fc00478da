"""Admin views, one module per domain; each exposes `register(admin, ctx)`."""
from __future__ import annotations

import importlib

# Add a domain's view module here.
VIEW_MODULES = (
    "jobs",
)


def register_views(admin, ctx) -> None:
    for name in VIEW_MODULES:
        importlib.import_module(f"admin.views.{name}").register(admin, ctx)
