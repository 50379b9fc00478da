#!/usr/bin/env python3
"""Benchmark: our exporter beside Debian's prometheus-node-exporter, one run, same machine.

Each world is made on disk (git projects cloned from a local bare remote, models in the
Hugging Face cache and the PyTorch/fastai/Keras folders), then the admin is started once
(it creates and initialises the SQLite DB, as on every real install) and the exporter. For
each world it measures:

- scrape latency p50/p99 of /metrics, plain and gzip (Prometheus asks for gzip), ours and
  node_exporter's in turn, and CPU per scrape (process and its children);
- RSS of the exporter;
- idle CPU at one scrape per 5 s, as a share of one core, of the process tree (git children
  included: psutil's children_user/children_system count the waited-for ones), for both;
  plus the amortised cost of the periodic work that a short window may miss (the full sweep
  every --sweep-interval), measured by running the same code in this process with os.times()
  (children included). `git fetch` is spread over --git-fetch-interval in rounds a minute
  apart, so the window holds its share; a whole round's CPU is measured and printed too;
- admin Projects and Models page times (p50 over a logged-in session);
- freshness: seconds from a file edit, a commit, a grown file and a new Hugging Face model
  to the changed series in /metrics.

Numbers are printed (and written as JSON with --json), not asserted: speed is measured here,
never in unit tests. `--growth` adds the 500/1000 and 1000/2000 worlds.
"""
from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PASSWORD = "bench-password-0123"
from common.config import Settings  # noqa: E402  (after the path is set)

# The exporter's defaults, which the amortised idle cost assumes.
SWEEP_SECONDS = Settings.sweep_interval_seconds
FETCH_SECONDS = Settings.git_fetch_interval_seconds
SCRAPE_EVERY = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"not ready: {url}")


def fetch(url: str, gzipped: bool = False) -> tuple[float, bytes]:
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzipped else {})
    started = time.perf_counter()
    body = urllib.request.urlopen(request, timeout=30).read()
    return time.perf_counter() - started, body


def tree_cpu(proc: psutil.Process) -> float:
    """CPU seconds of the process and of its children (waited-for ones and live ones)."""
    t = proc.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in proc.children(recursive=True):
        try:
            c = child.cpu_times()
            total += c.user + c.system
        except psutil.NoSuchProcess:
            pass
    return total


def latency(name: str, url: str, pid: int, scrapes: int, gzipped: bool) -> dict:
    proc = psutil.Process(pid)
    for _ in range(5):
        fetch(url, gzipped)
    cpu_before = tree_cpu(proc)
    times = sorted(fetch(url, gzipped)[0] for _ in range(scrapes))
    cpu = tree_cpu(proc) - cpu_before
    return {"name": name, "gzip": gzipped, "p50_ms": 1000 * statistics.median(times),
            "p99_ms": 1000 * times[int(0.99 * (len(times) - 1))], "cpu_ms_per_scrape": 1000 * cpu / scrapes}


def idle(urls_pids: dict[str, tuple[str, int]], seconds: float) -> dict[str, float]:
    """Share of one core used by each process tree while scraped every 5 s."""
    procs = {name: psutil.Process(pid) for name, (_, pid) in urls_pids.items()}
    before = {name: tree_cpu(p) for name, p in procs.items()}
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        for url, _ in urls_pids.values():
            fetch(url, True)
        time.sleep(SCRAPE_EVERY)
    elapsed = time.monotonic() - started
    return {name: (tree_cpu(p) - before[name]) / elapsed for name, p in procs.items()}


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def periodic_cost(env: dict) -> dict[str, float]:
    """CPU seconds (children included) of the work the exporter does on timers, not on events."""
    from common.sources.model_sources import ModelSources
    from common.sources.projects_tracker import ProjectsTracker
    workspace = Path(env["WORDSLAB_WORKSPACE"])
    tracker = ProjectsTracker(workspace, env, sweep_seconds=SWEEP_SECONDS, polling_seconds=30,
                              files_polling_seconds=120, watch=False)
    tracker.sweep_now()  # warm the caches as the running exporter has them
    before = own_cpu()
    tracker.sweep_now()
    sweep = own_cpu() - before
    before = own_cpu()
    tracker.fetch_all()
    fetch_cpu = own_cpu() - before
    models = ModelSources(env, sweep_seconds=SWEEP_SECONDS, polling_seconds=30)
    for source in (models.hf_source, models.files_source):
        source.refresh_now()
    before = own_cpu()
    for source in (models.hf_source, models.files_source):
        source.refresh_now()
    models_sweep = own_cpu() - before
    for group in (tracker, models):
        group.stop()
    return {"projects_sweep_cpu_s": sweep, "fetch_cpu_s": fetch_cpu, "models_sweep_cpu_s": models_sweep,
            "amortised_share": (sweep + models_sweep) / SWEEP_SECONDS, "fetch_share": fetch_cpu / FETCH_SECONDS}


class AdminSession:
    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        page = self.opener.open(f"{base}/login", timeout=30).read().decode()
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        data = urllib.parse.urlencode({"password": PASSWORD, "csrf_token": token}).encode()
        self.opener.open(f"{base}/login", data=data, timeout=30).read()

    def timed(self, path: str, views: int) -> float:
        self.opener.open(self.base + path, timeout=120).read()  # the first view starts the watched sources
        times = []
        for _ in range(views):
            started = time.perf_counter()
            self.opener.open(self.base + path, timeout=120).read()
            times.append(time.perf_counter() - started)
        return 1000 * statistics.median(times)


def _value(text: str, pattern: str) -> str | None:
    match = re.search(pattern, text)
    return match.group(1) if match else None


def until_changed(url: str, pattern: str, change, timeout: float = 120.0) -> float:
    """Seconds from `change()` until the first sample matching `pattern` has another value."""
    before = _value(fetch(url)[1].decode(), pattern)
    started = time.monotonic()
    change()
    while time.monotonic() - started < timeout:
        if _value(fetch(url)[1].decode(), pattern) != before:
            return time.monotonic() - started
        time.sleep(0.1)
    return float("inf")


def freshness(url: str, env: dict) -> dict[str, float]:
    from bench.scale_models import add_hf_model
    from bench.scale_projects import commit_file
    ws = Path(env["WORDSLAB_WORKSPACE"])
    sample = r'{name}\{{project="{project}"\}} (\S+)'
    return {
        "file edit -> changed files": until_changed(
            url, sample.format(name="wordslab_project_changed_files", project="project-001"),
            lambda: (ws / "project-001" / "fresh-edit.txt").write_text("edited\n")),
        "commit -> last commit time": until_changed(
            url, sample.format(name="wordslab_project_last_commit_timestamp_seconds", project="project-002"),
            lambda: commit_file(ws / "project-002", "committed.txt", f"at {time.time()}\n")),
        "file grows -> size": until_changed(
            url, sample.format(name="wordslab_project_size_bytes", project="project-003"),
            lambda: (ws / "project-003" / "data.bin").write_bytes(os.urandom(1 << 20))),
        "new HF model -> model list": until_changed(
            url, r'(wordslab_model_info\{[^}]*model="bench-org/fresh-model")',
            lambda: add_hf_model(env, "bench-org/fresh-model")),
    }


def start(cmd: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(cmd, env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_world(name: str, projects: int, models: int, args, node: tuple[str, int] | None) -> dict:
    from bench.scale_models import make_models
    from bench.scale_projects import make_projects
    from tests.support.env import wordslab_env
    tmp = Path(tempfile.mkdtemp(prefix="wordslab-bench-"))
    procs: list[subprocess.Popen] = []
    result: dict = {"world": name, "projects": projects, "models": models}
    try:
        env = wordslab_env(tmp, OLLAMA_API_BASE=f"http://127.0.0.1:{free_port()}",  # no Ollama here
                           WORDSLAB_DASHBOARD_ADMIN_PASSWORD=PASSWORD)
        started = time.perf_counter()
        make_projects(Path(env["WORDSLAB_WORKSPACE"]), projects) if projects else None
        made = make_models(env, models) if models else 0
        result["world_made_s"] = time.perf_counter() - started
        admin_port, port = free_port(), free_port()
        procs.append(start([sys.executable, "-m", "admin", "--listen-address", f"127.0.0.1:{admin_port}"], env))
        wait_ready(f"http://127.0.0.1:{admin_port}/login")  # the DB now exists, as on a real install
        assert Path(env["WORDSLAB_DASHBOARD_DB"]).exists()
        ours = start([sys.executable, "-m", "exporter", "--listen-address", f"127.0.0.1:{port}"], env)
        procs.append(ours)
        url = f"http://127.0.0.1:{port}/metrics"
        wait_ready(url)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            text = fetch(url)[1].decode()
            if (text.count("wordslab_project_size_bytes{") >= projects
                    and text.count("wordslab_model_size_bytes{") >= made):
                break
            time.sleep(1)
        result["ready_s"] = time.perf_counter() - started - result["world_made_s"]
        rows = []
        for gz in (False, True):
            rows.append(latency("wordslab-exporter", url, ours.pid, args.scrapes, gz))
            if node:
                rows.append(latency("node_exporter", node[0], node[1], args.scrapes, gz))
        result["latency"] = rows
        result["rss_mb"] = psutil.Process(ours.pid).memory_info().rss / 2**20
        targets = {"ours": (url, ours.pid), **({"node": node} if node else {})}
        result["idle_share"] = idle(targets, args.idle_seconds)
        if projects or models:
            result["periodic"] = periodic_cost(env)
        session = AdminSession(f"http://127.0.0.1:{admin_port}")
        result["admin_ms"] = {page: session.timed(path, args.page_views)
                              for page, path in (("Projects", "/admin/projects/"), ("Models", "/admin/models/"),
                                                 ("Endpoint form", "/admin/endpoints/new/"))}
        result["admin_rss_mb"] = psutil.Process(procs[0].pid).memory_info().rss / 2**20
        if projects >= 4:
            result["freshness_s"] = freshness(url, env)
        result["rss_mb_end"] = psutil.Process(ours.pid).memory_info().rss / 2**20
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def report(r: dict) -> None:
    print(f"\n== world {r['world']}: {r['projects']} projects, {r['models']} models "
          f"(made in {r['world_made_s']:.0f} s, exporter complete {r['ready_s']:.0f} s later)")
    by = {(x["name"], x["gzip"]): x for x in r["latency"]}
    for row in r["latency"]:
        print(f"  {row['name']:<18} {'gzip ' if row['gzip'] else 'plain'} p50 {row['p50_ms']:7.2f} ms  "
              f"p99 {row['p99_ms']:7.2f} ms  cpu {row['cpu_ms_per_scrape']:6.2f} ms/scrape")
    for gz in (False, True):
        ours, node = by.get(("wordslab-exporter", gz)), by.get(("node_exporter", gz))
        if ours and node:
            print(f"  ratio ours/node_exporter ({'gzip' if gz else 'plain'}): p50 "
                  f"{ours['p50_ms'] / node['p50_ms']:.2f}x (target <= 0.5x), p99 "
                  f"{ours['p99_ms'] / node['p99_ms']:.2f}x (target <= 1.0x)")
    print(f"  RSS {r['rss_mb']:.1f} MB (target <= 60 MB at the default world), after the admin and "
          f"freshness steps {r['rss_mb_end']:.1f} MB; admin RSS {r['admin_rss_mb']:.1f} MB")
    shares = r["idle_share"]
    line = f"  idle CPU, tree incl. children, 1 scrape / 5 s: ours {100 * shares['ours']:.2f} %"
    if "node" in shares:
        line += f", node_exporter {100 * shares['node']:.2f} %"
    print(line + " of a core")
    if "periodic" in r:
        p = r["periodic"]
        total = shares["ours"] + p["amortised_share"]
        print(f"  periodic work: full sweep {p['projects_sweep_cpu_s']:.2f} s CPU (projects) + "
              f"{p['models_sweep_cpu_s']:.2f} s (models) every {SWEEP_SECONDS:.0f} s: "
              f"{100 * p['amortised_share']:.2f} % -> idle total {100 * total:.2f} % (target <= 0.5 %); "
              f"fetch of every project {p['fetch_cpu_s']:.2f} s per {FETCH_SECONDS:.0f} s "
              f"({100 * p['fetch_share']:.2f} %), spread in rounds a minute apart: inside the window")
    print("  admin pages p50: " + ", ".join(f"{k} {v:.1f} ms" for k, v in r["admin_ms"].items())
          + " (target <= 50 ms)")
    for what, seconds in (r.get("freshness_s") or {}).items():
        print(f"  freshness {what}: {seconds:.2f} s (target <= 5 s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=180.0)
    parser.add_argument("--page-views", type=int, default=20)
    parser.add_argument("--worlds", default="default,200/500",
                        help="comma-separated: default or PROJECTS/MODELS (default %(default)s)")
    parser.add_argument("--growth", action="store_true", help="add the 500/1000 and 1000/2000 worlds")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    worlds = args.worlds.split(",") + (["500/1000", "1000/2000"] if args.growth else [])

    node_proc, node = None, None
    binary = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if binary:
        nport = free_port()
        node_proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{nport}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        node = (f"http://127.0.0.1:{nport}/metrics", node_proc.pid)
        wait_ready(node[0])
    else:
        print("prometheus-node-exporter not installed (apt-get install prometheus-node-exporter): no ratios")
    print(f"== {os.cpu_count()} cores, {args.scrapes} sequential scrapes per row, idle over "
          f"{args.idle_seconds:.0f} s")
    results = []
    try:
        for world in worlds:
            projects, models = (0, 0) if world == "default" else map(int, world.split("/"))
            results.append(run_world(world, projects, models, args, node))
            report(results[-1])
    finally:
        if node_proc:
            node_proc.terminate()
            node_proc.wait(10)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
