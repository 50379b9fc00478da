"""Budget guard: when the month's spend passes the budget and the user asked for it (Cloud VMs →
Budget & polling), stop every running VM (never terminate) and say so through Alertmanager.

The warning at 80 % is an alert rule (WordslabMonthCostNearBudget in
prometheus/rules/ai-services-alerts.yml), delivered like the others. The spend is Prometheus'
`instance:wordslab_cost_month_usd:sum` (VMs + external APIs) of the machine that publishes the
budget, compared with the budget set in the admin.
"""
from __future__ import annotations

import math
import time
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from common.config import Settings
from common.store.alerts import BUDGET_STOP_SETTING
from common.store.settings import get_setting
from common.store.vms import BUDGET_SETTING, Vm

from admin.cloud.autostop import WATCHED_STATUSES, stop_vm, watched
from admin.formatting import usd
from admin.prometheus_api import PrometheusError, query

SPEND = "max(instance:wordslab_cost_month_usd:sum and on (instance) wordslab_cost_budget_month_usd)"
ALERT = "WordslabBudgetGuardStopped"


def month_spend(settings: Settings, now: float) -> float | None:
    """This month's spend in USD, None when Prometheus has no figure or not a number (NaN, Inf:
    never a reason to stop). Raises PrometheusError."""
    result = query(settings.prometheus_url, SPEND, now)
    try:
        spend = float(result[0]["value"][1]) if result else None
    except (KeyError, IndexError, TypeError, ValueError):
        raise PrometheusError("Prometheus answered a spend that is not a [time, value] number") from None
    return spend if spend is not None and math.isfinite(spend) else None


def check_budget(sessions: sessionmaker, settings: Settings, clock: Callable[[], float] = time.time) -> list[str]:
    """Stop every running VM when the guard is on and the spend is over budget; their names."""
    with sessions() as session:
        enabled = get_setting(session, BUDGET_STOP_SETTING) == "1"
        budget = get_setting(session, BUDGET_SETTING)
        running = [(vm.id, vm.name, vm.template.compute_usd_per_hour)
                   for vm in session.scalars(select(Vm).where(Vm.status.in_(WATCHED_STATUSES + ("unknown",))))
                   if watched(vm)]
    if not enabled or not budget or not running:
        return []
    spend = month_spend(settings, clock())
    if spend is None or spend <= float(budget):
        return []
    reason = f"this month's spend {usd(spend)} passed the budget {usd(float(budget))}"

    def still(session, vm) -> str | None:
        # Each stop may wait on a slow provider: the user may untick the guard or raise the budget meanwhile.
        if get_setting(session, BUDGET_STOP_SETTING) != "1" or get_setting(session, BUDGET_SETTING) != budget:
            return "the budget guard's settings changed meanwhile"
        return None

    return [name for vm_id, name, price in running
            if stop_vm(sessions, settings, vm_id, name, reason, price, clock, alertname=ALERT, still=still)]
