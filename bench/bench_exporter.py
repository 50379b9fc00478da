#!/usr/bin/env python3
"""Benchmark: our exporter beside Debian's prometheus-node-exporter on this machine.

Prints, for each: scrape latency p50/p99 over N scrapes, CPU seconds per scrape,
RSS; then our idle CPU at one scrape per 5 s; then (with --scale) /metrics p99 and
background refresh cost per cycle with 200 git projects and 500 models on disk.
Numbers are printed, not asserted: speed is measured here, not in unit tests.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"not ready: {url}")


def scrape(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    body = urllib.request.urlopen(url, timeout=10).read()
    return time.perf_counter() - started, len(body)


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def measure(name: str, url: str, pid: int, scrapes: int) -> dict:
    proc = psutil.Process(pid)
    for _ in range(5):  # warm up (first scrape initialises NVML, caches...)
        scrape(url)
    cpu_before = cpu_seconds(proc)
    latencies, size = [], 0
    for _ in range(scrapes):
        took, size = scrape(url)
        latencies.append(took)
    cpu_after = cpu_seconds(proc)
    latencies.sort()
    return {
        "name": name,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "cpu_ms_per_scrape": 1000 * (cpu_after - cpu_before) / scrapes,
        "rss_mb": proc.memory_info().rss / 2**20,
        "bytes": size,
    }


def idle_cpu(url: str, pid: int, seconds: float) -> float:
    """Share of one core used at one scrape per 5 s (as Prometheus would)."""
    proc = psutil.Process(pid)
    before, started = cpu_seconds(proc), time.monotonic()
    while time.monotonic() - started < seconds:
        scrape(url)
        time.sleep(5)
    return (cpu_seconds(proc) - before) / (time.monotonic() - started)


def start_exporter(env: dict, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "exporter", "--listen-address", f"127.0.0.1:{port}"],
                            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def print_row(r: dict) -> None:
    print(f"{r['name']:<22} p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
          f"cpu {r['cpu_ms_per_scrape']:6.2f} ms/scrape  rss {r['rss_mb']:6.1f} MB  {r['bytes']} bytes")


def source_durations(url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "wordslab_source_refresh_duration_seconds":
            for s in family.samples:
                out[s.labels["source"]] = s.value
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--scale", action="store_true", help="also measure with 200 projects and 500 models")
    args = parser.parse_args()

    from tests.support.env import wordslab_env
    tmp = Path(tempfile.mkdtemp(prefix="wordslab-bench-"))
    env = wordslab_env(tmp)
    procs = []
    try:
        port = free_port()
        ours = start_exporter(env, port)
        procs.append(ours)
        url = f"http://127.0.0.1:{port}/metrics"
        wait_ready(url)
        rows = [measure("wordslab-exporter", url, ours.pid, args.scrapes)]
        node = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
        if node:
            nport = free_port()
            nproc = subprocess.Popen([node, f"--web.listen-address=127.0.0.1:{nport}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(nproc)
            nurl = f"http://127.0.0.1:{nport}/metrics"
            wait_ready(nurl)
            rows.append(measure("node_exporter", nurl, nproc.pid, args.scrapes))
        else:
            print("prometheus-node-exporter not installed (apt-get install prometheus-node-exporter)")
        print(f"== {args.scrapes} sequential scrapes, {os.cpu_count()} cores")
        for r in rows:
            print_row(r)
        if len(rows) == 2:
            print(f"p99 ratio ours/node_exporter: {rows[0]['p99_ms'] / rows[1]['p99_ms']:.2f}x (target <= 2x)")
        print(f"RSS target < 60 MB: {rows[0]['rss_mb']:.1f} MB")
        if args.idle_seconds > 0:
            share = idle_cpu(url, ours.pid, args.idle_seconds)
            print(f"idle CPU at 1 scrape / 5 s over {args.idle_seconds:.0f} s: {100 * share:.2f} % of a core "
                  f"(target < 1 %)")
        if args.scale:
            run_scale(tmp, env, args.scrapes, procs)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def run_scale(tmp: Path, env: dict, scrapes: int, procs: list) -> None:
    from bench.scale_models import make_models
    from bench.scale_projects import make_projects
    started = time.perf_counter()
    make_projects(Path(env["WORDSLAB_WORKSPACE"]), 200)
    made_models = make_models(env, 500)
    print(f"== scale: 200 git projects and {made_models} models created in {time.perf_counter() - started:.1f} s")
    port = free_port()
    proc = start_exporter(env, port)
    procs.append(proc)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_ready(url)
    # Wait for the background sources' first full refresh before timing scrapes.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        if text.count("wordslab_project_size_bytes{") >= 200 and text.count("wordslab_model_size_bytes{") >= 500:
            break
        time.sleep(2)
    else:
        print("warning: background sources did not report 200 projects / 500 models within 300 s")
    row = measure("exporter (scale)", url, proc.pid, scrapes)
    print_row(row)
    print(f"/metrics p99 with 200 projects + 500 models: {row['p99_ms']:.2f} ms (target < 50 ms)")
    for source, seconds in sorted(source_durations(url).items()):
        print(f"background refresh cost per cycle: {source:<24} {seconds * 1000:9.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
