"""Admin views, one module per domain; each exposes `register(admin, ctx)`."""
from __future__ import annotations

import importlib

# Add a domain's view module here.
VIEW_MODULES = (
    "projects",
    "models",
    "jobs",
    "vms",
    "endpoints",
    "external_apis",
)


def register_views(admin, ctx, names=None) -> None:
    for name in VIEW_MODULES if names is None else names:
        importlib.import_module(f"admin.views.{name}").register(admin, ctx)
