"""Autostop: stop (never terminate) a running VM left idle on its GPUs, or running too long.

Opt-in per VM or on its template (the VM's own value wins): after N minutes with every GPU
under X % utilization, and/or after N hours running. "Keep running" restarts both windows.

Idle is decided on the MAX utilization over the whole window, read from the VM's own
exporter through Prometheus (admin/cloud/gpu_window.py), so one low sample amid busy ones
never stops a VM in use; and only when the samples cover the whole window: no data, or a
hole, means "don't know", and the VM is not stopped (the note says why).

Each check writes the VM's countdown (`autostop_at`, published by the exporter as
wordslab_vm_autostop_seconds_remaining) and a note the admin shows. A stop goes through the
same code as the admin's stop button, then a notification goes out through Alertmanager
saying what it saves. The guard runs in the admin's background loop (common.background).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from common import redact
from common.background import BackgroundSource
from common.config import Settings
from common.store.vms import Vm

from admin.alerting.alertmanager import Alertmanager, AlertmanagerError, iso
from admin.cloud.gpu_window import GpuWindow, query_window
from admin.formatting import usd
from admin.prometheus_api import PrometheusError
from admin.ops.vm_ops import VmActionCalledOff, VmActionError, run_action

log = logging.getLogger(__name__)
Clock = Callable[[], float]
DEFAULT_GPU_PERCENT = 5.0
NOTIFY_ALERT = "WordslabVmAutostopped"
FAILED_ALERT = "WordslabVmAutostopFailed"
# Statuses in which the provider may be running (and billing) the VM and a stop is offered:
# one stuck booting, or left out of the provider's list answers, still runs into its limits.
WATCHED_STATUSES = ("starting", "running", "missing")
# "unknown" (the provider's API failed the last status read) counts as watched while the VM was
# last seen billed (its running interval is still open): a flaky API must not suspend autostop.


def watched(vm: Vm) -> bool:
    return vm.status in WATCHED_STATUSES or (
        vm.status == "unknown" and any(i.ended_at is None for i in vm.intervals))


@dataclass(frozen=True)
class Policy:
    """Effective autostop settings of one VM, windows in (scaled) seconds; None = off."""

    idle_seconds: float | None
    gpu_ratio: float
    max_run_seconds: float | None

    @property
    def enabled(self) -> bool:
        return self.idle_seconds is not None or self.max_run_seconds is not None


def policy_of(vm: Vm, time_scale: float = 1.0) -> Policy:
    """The VM's own values, else its template's."""
    t = vm.template

    def pick(name):
        own = getattr(vm, name)
        return own if own is not None else getattr(t, name, None)

    idle, percent, hours = pick("autostop_idle_minutes"), pick("autostop_gpu_percent"), pick("autostop_after_hours")
    return Policy(idle * 60 * time_scale if idle else None,
                  (percent if percent is not None else DEFAULT_GPU_PERCENT) / 100.0,
                  hours * 3600 * time_scale if hours else None)


@dataclass(frozen=True)
class Decision:
    stop: bool
    stop_at: float | None  # when it stops unless used; None: no countdown
    note: str


def _minutes(seconds: float) -> str:
    """A duration in words: '45 s', '12 min', '4 h', '2.5 h'."""
    if seconds >= 7200:
        return f"{round(seconds / 3600, 1):g} h"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def decide(policy: Policy, anchor: float, now: float, window: GpuWindow | None,
           window_error: str | None = None) -> Decision:
    """Stop or not, and when. `anchor`: when the VM started or "keep running" was pressed,
    whichever is later; `window`: its GPU samples over the idle window (None when the idle
    rule is off or the window could not be read, `window_error` saying why)."""
    reasons, deadlines, stop_reasons = [], [], []
    if policy.max_run_seconds is not None:
        due = anchor + policy.max_run_seconds
        deadlines.append(due)
        if now < due:
            reasons.append(f"running-time limit {_minutes(policy.max_run_seconds)}")
        else:
            stop_reasons.append(f"running for {_minutes(now - anchor)}, its limit is {_minutes(policy.max_run_seconds)}")
    if policy.idle_seconds is not None:
        w, pct = policy.idle_seconds, f"{policy.gpu_ratio * 100:g} %"
        if window is None:
            reasons.append(f"idle check not possible: {window_error}; not stopped for idleness")
        else:
            last_used = window.last_at_or_above(policy.gpu_ratio)
            idle_since = max(anchor, last_used if last_used is not None else window.start)
            due = idle_since + w
            gap = window.coverage_gap()
            if last_used is not None:
                deadlines.append(due)
                reasons.append(f"GPU at {window.max_ratio * 100:.0f} % within the last {_minutes(w)}")
            elif not window.samples:
                reasons.append(f"no GPU data from its exporter in the last {_minutes(w)}: "
                               "not stopped for idleness")
            elif now - anchor < w:
                deadlines.append(anchor + w)
                reasons.append(f"GPUs under {pct} since it (re)started")
            elif gap:
                reasons.append(f"GPUs under {pct} but {gap}: not stopped until the data covers "
                               f"{_minutes(w)}")
            else:
                deadlines.append(due)
                stop_reasons.append(f"every GPU under {pct} for {_minutes(w)} "
                                    f"(max {window.max_ratio * 100:.1f} %)")
    if stop_reasons:
        return Decision(True, now, "; ".join(stop_reasons))
    # The countdown itself is shown live from stop_at; the note says why.
    return Decision(False, min(deadlines) if deadlines else None, "; ".join(reasons))


def savings_text(name: str, usd_per_hour: float, reason: str) -> str:
    """What a stop saves, for the notification: $/h and $ per day it would have stayed idle."""
    return (f"Autostop stopped VM {name} ({reason}). It cost {usd(usd_per_hour, '/h')}: "
            f"{usd(usd_per_hour * 24)} saved for each day it would have stayed on. Its disks are kept; "
            "start it again from the admin (/admin/vms/).")


def notify(settings: Settings, name: str, summary: str, description: str, now: float,
           alertname: str = NOTIFY_ALERT) -> str | None:
    """Post a one-off alert to Alertmanager (routed to every receiver); the error, if any."""
    try:
        Alertmanager(settings.alertmanager_url).post_alerts([{
            "labels": {"alertname": alertname, "severity": "info", "vm": name},
            "annotations": {"summary": summary, "description": description},
            "startsAt": iso(now), "endsAt": iso(now + 3600)}])
    except AlertmanagerError as exc:
        log.warning("notification %s for %s not sent: %s", alertname, name, exc)
        return str(exc)
    return None


@dataclass(frozen=True)
class _Candidate:
    vm_id: int
    name: str
    policy: Policy
    anchor: float
    usd_per_hour: float
    kept_at: float | None = None
    last_started_at: float | None = None

    def changed(self, settings: Settings):
        """A `still` check for run_action: why the decision taken on this candidate no longer
        holds ("keep running" pressed, the VM restarted, its autostop settings changed), or None."""
        def still(session, vm: Vm) -> str | None:
            if vm.autostop_kept_at != self.kept_at:
                return "kept running meanwhile"
            if vm.last_started_at != self.last_started_at or not watched(vm):
                return "its state changed meanwhile"
            if policy_of(vm, settings.autostop_time_scale) != self.policy:
                return "its autostop settings changed meanwhile"
            return None
        return still


def _candidates(sessions: sessionmaker, settings: Settings, now: float) -> list[_Candidate]:
    with sessions() as session:
        out = []
        for vm in session.scalars(select(Vm).where(Vm.status.in_(WATCHED_STATUSES + ("unknown",)))):
            policy = policy_of(vm, settings.autostop_time_scale)
            if policy.enabled and watched(vm):
                anchor = max(vm.last_started_at or now, vm.autostop_kept_at or 0.0)
                out.append(_Candidate(vm.id, vm.name, policy, anchor, vm.template.compute_usd_per_hour,
                                      vm.autostop_kept_at, vm.last_started_at))
        return out


def _record(sessions: sessionmaker, vm_id: int, stop_at: float | None, note: str, still=None) -> None:
    """Write the countdown and note; with `still`, only while the decision still holds."""
    with sessions.begin() as session:
        vm = session.get(Vm, vm_id)
        if vm is not None and (still is None or still(session, vm) is None):
            vm.autostop_at, vm.autostop_note = stop_at, note


def clear_countdowns(sessions: sessionmaker, settings: Settings) -> None:
    """VMs not running, or without autostop, show no countdown."""
    with sessions.begin() as session:
        for vm in session.scalars(select(Vm).where(Vm.autostop_at.is_not(None))):
            if not watched(vm) or not policy_of(vm, settings.autostop_time_scale).enabled:
                vm.autostop_at = None


def check(sessions: sessionmaker, settings: Settings, clock: Clock = time.time) -> list[str]:
    """One pass over the VMs that may be running (WATCHED_STATUSES); the names of those stopped."""
    now = clock()
    clear_countdowns(sessions, settings)
    stopped = []
    for c in _candidates(sessions, settings, now):
        try:
            if _check_one(sessions, settings, c, now, clock):
                stopped.append(c.name)
        except Exception:  # one VM's trouble (a DB busy, a bug) never skips the others' limits
            log.exception("autostop check of %s failed", c.name)
    return stopped


def _check_one(sessions: sessionmaker, settings: Settings, c: _Candidate, now: float, clock: Clock) -> bool:
    """Decide on one VM, record the countdown, stop it when due; True when stopped."""
    window, error = None, None
    if c.policy.idle_seconds is not None:
        try:
            window = query_window(settings.prometheus_url, c.name, c.policy.idle_seconds, now)
        except PrometheusError as exc:
            error = str(exc)
    decision = decide(c.policy, c.anchor, now, window, error)
    _record(sessions, c.vm_id, decision.stop_at, decision.note, c.changed(settings))
    return decision.stop and stop_vm(sessions, settings, c.vm_id, c.name, decision.note, c.usd_per_hour,
                                     clock, still=c.changed(settings))


def stop_vm(sessions: sessionmaker, settings: Settings, vm_id: int, name: str, reason: str,
            usd_per_hour: float, clock: Clock = time.time, alertname: str = NOTIFY_ALERT,
            still=None) -> bool:
    """Stop through the admin's own stop action, note it, notify. False when the stop failed
    or was called off (`still`, see run_action: the decision no longer holds)."""
    try:
        run_action(sessions, settings, vm_id, "stop", True, clock, still)
    except VmActionCalledOff as exc:
        log.info("autostop of %s called off: %s", name, exc)
        return False
    except VmActionError as exc:
        _record(sessions, vm_id, None, f"autostop could not stop it: {exc}")
        log.warning("autostop of %s failed: %s", name, exc)
        # It still bills: say so where the user looks (the same alert each pass: Alertmanager
        # notifies once, then repeats it every few hours while it lasts).
        notify(settings, name, f"autostop could not stop VM {name}",
               redact.scrub(f"Autostop wanted to stop VM {name} ({reason}) but the stop failed: {exc}. "
                            f"It may still cost ${usd_per_hour:.2f}/h: stop it from the admin (/admin/vms/) "
                            "or the provider's console."), clock(), FAILED_ALERT)
        return False
    now = clock()
    text = savings_text(name, usd_per_hour, reason)
    error = notify(settings, name, f"VM {name} stopped by autostop", text, now, alertname)
    note = f"stopped at {time.strftime('%H:%M UTC', time.gmtime(now))}: {reason}"
    _record(sessions, vm_id, None, note + (f" (notification not sent: {error})" if error else ""))
    log.info("autostop stopped %s: %s", name, reason)
    return True


def keep_running(sessions: sessionmaker, vm_id: int, now: float) -> str:
    """"Keep running": both windows start again now. Returns a message for the user."""
    with sessions.begin() as session:
        vm = session.get(Vm, vm_id)
        if vm is None:
            raise VmActionError("no such VM")
        vm.autostop_kept_at = now
        vm.autostop_note = "kept running: the autostop windows start again now"
        vm.autostop_at = None
        return f"{vm.name} kept running: autostop counts again from now"


class AutostopGuard:
    """The background loop: every `settings.autostop_interval_seconds` (0: off; tests call check)."""

    def __init__(self, sessions: sessionmaker, settings: Settings, clock: Clock = time.time,
                 extra: Callable[[], object] | None = None):
        def run():
            stopped = check(sessions, settings, clock)
            if extra is not None:
                extra()
            return stopped

        self.source = BackgroundSource("autostop", run, settings.autostop_interval_seconds)

    def start(self) -> None:
        if self.source.interval_seconds > 0:
            self.source.start()

    def stop(self) -> None:
        self.source.stop()
