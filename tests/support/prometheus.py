"""The real exporter and the real Prometheus as subprocesses, for integration tests.

Prometheus runs on a temporary copy of the project's own prometheus/ directory; only
targets/local.yml is rewritten to point at the exporter under test, and
targets/dynamic is the directory the admin writes file_sd groups into (as in production).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Mapping, Sequence

from wordslab_dashboard.layout import Layout

from tests.support.env import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_BIN = "/usr/bin/prometheus"


class StartupError(RuntimeError):
    pass


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


class Process:
    """A subprocess whose combined output goes to a log file kept for failure reports."""

    def __init__(self, name: str, args: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(list(args), stdout=self._log, stderr=subprocess.STDOUT,
                                      env=dict(env) if env is not None else None, cwd=cwd)

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return _tail(self.log_path, lines)

    def wait_http(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise StartupError(f"{self.name} exited with {self.popen.returncode} before answering "
                                   f"{url}; log {self.log_path}:\n{self.log_tail()}")
            try:
                _http_get(url, timeout=2)
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise StartupError(f"{self.name} did not answer {url} within {timeout:.0f} s; "
                           f"log {self.log_path}:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.running():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


def start_exporter(env: Mapping[str, str], pythonpath: Sequence[str], workdir: Path) -> tuple[Process, str]:
    """`python -m exporter` on $WORDSLAB_EXPORTER_ADDRESS of `env`, else a free loopback port;
    returns the process and its host:port."""
    address = env.get("WORDSLAB_EXPORTER_ADDRESS") or f"127.0.0.1:{free_port()}"
    process_env = dict(env)
    process_env["PYTHONPATH"] = os.pathsep.join([*pythonpath, str(REPO_ROOT)])
    process = Process("exporter", [sys.executable, "-m", "exporter", "--listen-address", address],
                      workdir / "exporter.log", env=process_env, cwd=REPO_ROOT)
    try:
        process.wait_http(f"http://{address}/metrics", timeout=30)
    except StartupError:
        process.stop()
        raise
    return process, address


def prepare_config(state_dir: Path, exporter_address: str) -> Path:
    """The runtime copy of prometheus/ the native runner makes, scraping `exporter_address`;
    its targets/dynamic is where the admin of that state dir writes file_sd groups."""
    layout = Layout(repo=REPO_ROOT, state=state_dir)
    layout.prepare_prometheus(exporter_address)
    return layout.prometheus_runtime


def start_ready(name: str, args: Sequence[str], port: int, workdir: Path) -> tuple[Process, str]:
    """Start a Prometheus-family server listening on `port`; returns once /-/ready answers."""
    process = Process(name, args, workdir / f"{name}.log")
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_http(f"{url}/-/ready", timeout=30)
    except StartupError:
        process.stop()
        raise
    return process, url


class PrometheusServer:
    def __init__(self, process: Process, url: str):
        self.process = process
        self.url = url

    @classmethod
    def start(cls, config_dir: Path, workdir: Path) -> "PrometheusServer":
        port = free_port()
        args = [PROMETHEUS_BIN, f"--config.file={config_dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"]
        return cls(*start_ready("prometheus", args, port, workdir))

    def api(self, path: str, **params: str) -> dict:
        """GET /api/v1/<path>; returns the whole response, errors included (status, error)."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            return json.loads(_http_get(url, timeout=10))
        except urllib.error.HTTPError as exc:  # 400/422 carry the PromQL error as JSON
            return json.loads(exc.read() or b"{}")

    def query(self, expr: str) -> dict:
        return self.api("query", query=expr)

    def series_count(self, expr: str) -> int:
        response = self.query(expr)
        return len(response.get("data", {}).get("result", [])) if response.get("status") == "success" else 0

    def wait_for_samples(self, instance: str, samples: int, timeout: float) -> None:
        """Until the exporter has been scraped successfully `samples` times (enough for rate())."""
        deadline = time.monotonic() + timeout
        expr = f'count_over_time(up{{instance="{instance}"}}[1m]) >= {samples} and up{{instance="{instance}"}} == 1'
        while time.monotonic() < deadline:
            if not self.process.running():
                raise StartupError(f"prometheus exited: {self.process.log_tail()}")
            if self.series_count(expr):
                return
            time.sleep(0.5)
        targets = self.api("targets").get("data", {}).get("activeTargets", [])
        states = [(t.get("scrapeUrl"), t.get("health"), t.get("lastError")) for t in targets]
        raise StartupError(f"no {samples} successful scrapes of {instance} within {timeout:.0f} s; "
                           f"targets: {states}\nprometheus log:\n{self.process.log_tail()}")

    def stop(self) -> None:
        self.process.stop()
