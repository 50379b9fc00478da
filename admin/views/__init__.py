"""Admin views, one module per domain; each exposes `register(admin, ctx)`."""
from __future__ import annotations

from admin.views import alerts, endpoints, external_apis, jobs, models, projects, vms

# Menu order. Add a domain's view module here.
VIEW_MODULES = (projects, models, jobs, vms, endpoints, external_apis, alerts)


def register_views(admin, ctx, names=None) -> None:
    """Register every view module, or only those whose short names are given (tests of one domain)."""
    for module in VIEW_MODULES:
        if names is None or module.__name__.rsplit(".", 1)[1] in names:
            module.register(admin, ctx)
