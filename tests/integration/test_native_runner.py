"""`wordslab-dashboard up` starts exporter, admin and a real Prometheus that scrapes the exporter."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.env import free_port, wordslab_env

ROOT = Path(__file__).resolve().parents[2]


def _get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read().decode()


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: {last}")


@pytest.mark.integration
def test_up_runs_the_stack_and_prometheus_scrapes_the_exporter(tmp_path):
    ports = {name: free_port() for name in ("exporter", "admin", "prometheus", "grafana")}
    env = {**os.environ, **wordslab_env(tmp_path), "WORDSLAB_DASHBOARD_ADMIN_PASSWORD": "s3cret-pass",
           "PYTHONPATH": str(ROOT)}
    env["PATH"] = os.environ["PATH"]
    argv = [sys.executable, "-m", "wordslab_dashboard", "up",
            "--exporter-address", f"127.0.0.1:{ports['exporter']}",
            "--admin-address", f"127.0.0.1:{ports['admin']}",
            "--prometheus-address", f"127.0.0.1:{ports['prometheus']}",
            "--grafana-port", str(ports["grafana"]),
            "--state-dir", str(tmp_path / "state")]
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _wait(lambda: _get(f"http://127.0.0.1:{ports['exporter']}/metrics")[0] == 200, 30, "exporter")
        status, body = _wait(lambda: _get(f"http://127.0.0.1:{ports['admin']}/login"), 30, "admin")
        assert "Password" in body

        def exporter_scraped():
            q = urllib.request.quote('up{job="wordslab"}')
            _, text = _get(f"http://127.0.0.1:{ports['prometheus']}/api/v1/query?query={q}")
            result = json.loads(text)["data"]["result"]
            return result and result[0]["value"][1] == "1" and result

        result = _wait(exporter_scraped, 40, "Prometheus to scrape the exporter")
        assert result[0]["metric"]["instance"] == f"127.0.0.1:{ports['exporter']}"
        # The runtime copy of prometheus/ has the dynamic targets directory the admin writes to.
        assert (tmp_path / "state" / "prometheus" / "targets" / "dynamic").is_dir()
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    assert "exporter" in output and "prometheus" in output
    if not any(Path(d, "grafana").exists() or Path(d, "grafana-server").exists()
               for d in env["PATH"].split(os.pathsep)):
        assert "not started: grafana" in output
    # Every child is gone after the runner stops.
    for port in (ports["exporter"], ports["admin"], ports["prometheus"]):
        with pytest.raises(OSError):
            _get(f"http://127.0.0.1:{port}/", timeout=1)
