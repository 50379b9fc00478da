"""Autostop's decision on a VM's GPU window: max over the whole window, only on full coverage,
the countdown, the running-hours limit and "keep running" (the anchor); the policy falls back
from the VM to its template. Windows are built from sample lists; nothing sleeps."""
import pytest

from admin.cloud.autostop import Policy, decide, policy_of, savings_text
from admin.cloud.gpu_window import GpuWindow
from common.store.vms import Vm, VmTemplate

NOW = 10_000.0
W = 1800.0  # 30 min
IDLE = Policy(idle_seconds=W, gpu_ratio=0.05, max_run_seconds=None)


def window(values, step=5.0, start=NOW - W, gpus=1):
    """Samples every `step` s from `start` to NOW, value i from `values` (cycled), on each GPU."""
    samples, t, i = [], start, 0
    while t <= NOW:
        for _ in range(gpus):
            samples.append((t, values[i % len(values)]))
        t, i = t + step, i + 1
    return GpuWindow(NOW - W, NOW, tuple(sorted(samples)))


def test_idle_for_the_whole_covered_window_stops():
    d = decide(IDLE, anchor=NOW - 2 * W, now=NOW, window=window([0.01, 0.0, 0.02]))
    assert d.stop and "every GPU under 5 % for 30 min (max 2.0 %)" in d.note


def test_one_busy_sample_in_the_window_keeps_it_and_counts_down_from_it():
    values = [0.0] * 400
    values[150] = 0.9  # at NOW - W + 750 s
    d = decide(IDLE, anchor=NOW - 2 * W, now=NOW, window=window(values))
    assert not d.stop
    assert d.stop_at == pytest.approx(NOW - W + 750 + W)
    assert d.note == "GPU at 90 % within the last 30 min"


def test_flapping_metric_one_low_sample_amid_busy_ones_is_in_use():
    values = [0.9] * 400
    values[50] = 0.0
    d = decide(IDLE, anchor=NOW - 2 * W, now=NOW, window=window(values))
    assert not d.stop and d.stop_at == pytest.approx(NOW + W)


@pytest.mark.parametrize("samples, reason", [
    ((), "no GPU data from its exporter"),
    (tuple((t, 0.0) for t in range(int(NOW - W / 2), int(NOW) + 1, 5)), "GPU data only since 900 s into the window"),
    (tuple((t, 0.0) for t in range(int(NOW - W), int(NOW - 600), 5)), "no GPU data for the last 60"),
    (tuple((t, 0.0) for t in range(int(NOW - W), int(NOW) + 1, 5) if not NOW - 1000 < t < NOW - 500),
     "hole in the GPU data"),
])
def test_window_not_covered_by_data_never_stops(samples, reason):
    d = decide(IDLE, anchor=NOW - 2 * W, now=NOW, window=GpuWindow(NOW - W, NOW, samples))
    assert not d.stop and reason in d.note


def test_prometheus_unreachable_never_stops():
    d = decide(IDLE, anchor=NOW - 2 * W, now=NOW, window=None, window_error="Prometheus did not answer")
    assert not d.stop and d.stop_at is None and "Prometheus did not answer" in d.note


def test_keep_running_restarts_the_window():
    kept = NOW - 600
    d = decide(IDLE, anchor=kept, now=NOW, window=window([0.0]))
    assert not d.stop and d.stop_at == pytest.approx(kept + W)
    assert d.note == "GPUs under 5 % since it (re)started"


def test_running_hours_limit_stops_even_when_busy_and_counts_down_before():
    policy = Policy(idle_seconds=None, gpu_ratio=0.05, max_run_seconds=4 * 3600)
    assert decide(policy, anchor=NOW - 4 * 3600 - 1, now=NOW, window=None).stop
    before = decide(policy, anchor=NOW - 3 * 3600, now=NOW, window=None)
    assert not before.stop and before.stop_at == NOW + 3600 and before.note == "running-time limit 4 h"


def test_policy_falls_back_to_the_template_and_scales():
    template = VmTemplate(name="t", gpu="H100", autostop_idle_minutes=30, autostop_gpu_percent=None,
                          autostop_after_hours=None)
    vm = Vm(name="v", template=template, autostop_idle_minutes=None, autostop_gpu_percent=10,
            autostop_after_hours=2)
    p = policy_of(vm, time_scale=0.5)
    assert p == Policy(idle_seconds=900.0, gpu_ratio=0.10, max_run_seconds=3600.0)
    assert not policy_of(Vm(name="w", template=VmTemplate(name="u", gpu="A"))).enabled
    assert policy_of(Vm(name="x", template=template)).gpu_ratio == 0.05  # default threshold


def test_savings_say_dollars_per_hour_and_per_day():
    text = savings_text("box", 2.5, "idle")
    assert "$2.50/h" in text and "$60.00 saved for each day" in text
    # A cheap VM's price is not rounded away to "$0.00/h" (the admin's one money format).
    cheap = savings_text("tiny", 0.0001, "idle")
    assert "<$0.01/h" in cheap and "<$0.01 saved for each day" in cheap and "$0.00" not in cheap
