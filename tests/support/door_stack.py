"""`wordslab-dashboard up` as a user runs it, on free loopback ports, behind a Runpod-like setup.

The stack: the real nginx door, the real admin, Prometheus and Alertmanager (Debian's), and a
stand-in Grafana installed from the fake tarball (tests/fakes/grafana_tarball.py) through the
real install path; it records each request and the auth-proxy header it got. RUNPOD_POD_ID makes
the public URL https://<pod>-<door port>.proxy.runpod.net. The platform's docs folder exists.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.fakes import grafana_tarball
from tests.support.env import free_port, wordslab_env
from wordslab_dashboard.door import url_host

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "door-pass-123"
POD = "abc123xyz"


def start_door_stack(tmp: Path, door_host: str = "127.0.0.1") -> dict:
    """Start it (the door on `door_host`) and wait until door, Grafana, Prometheus and Alertmanager
    answer. Returns door (loopback URL), public (the platform URL), public_host, ports, grafana_log, proc."""
    tarball = tmp / "grafana.tar.gz"
    sha = grafana_tarball.build(tarball)
    ports = {name: free_port() for name in ("exporter", "admin", "prometheus", "grafana", "door", "alertmanager")}
    env = {**os.environ, **wordslab_env(tmp), "PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT),
           "WORDSLAB_DASHBOARD_ADMIN_PASSWORD": PASSWORD, "WORDSLAB_DASHBOARD_CACHE_DIR": str(tmp / "cache"),
           # Runpod: the platform's public URL for the door's port is its HTTPS proxy's.
           "RUNPOD_POD_ID": POD, "DASHBOARD_PORT": str(ports["door"])}
    docs = Path(env["WORDSLAB_HOME"]) / f"wordslab-notebooks-{env['WORDSLAB_VERSION']}" / "docs"
    docs.mkdir(parents=True)
    (docs / "index.md").write_text("# wordslab docs\n\nThe platform's own docs folder.\n")
    code = ("import sys; from wordslab_dashboard import grafana_install as g, cli; "
            "from tests.fakes.grafana_tarball import release_for; "
            f"g.PINNED = release_for('x.tar.gz', {sha!r}); sys.exit(cli.main(sys.argv[1:]))")
    argv = [sys.executable, "-c", code, "up", "--grafana-tarball", str(tarball),
            "--exporter-address", f"127.0.0.1:{ports['exporter']}",
            "--admin-address", f"127.0.0.1:{ports['admin']}",
            "--prometheus-address", f"127.0.0.1:{ports['prometheus']}",
            "--alertmanager-address", f"127.0.0.1:{ports['alertmanager']}",
            "--grafana-port", str(ports["grafana"]), "--door-host", door_host,
            "--state-dir", str(tmp / "state")]
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    door = f"http://{url_host(door_host)}:{ports['door']}"
    ready = [door + "/admin/login", f"http://127.0.0.1:{ports['grafana']}/api/health",
             f"http://127.0.0.1:{ports['prometheus']}/-/ready", f"http://127.0.0.1:{ports['alertmanager']}/-/ready"]
    deadline = time.monotonic() + 60
    while True:
        try:
            if all(requests.get(url, timeout=2).status_code == 200 for url in ready):
                break
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGTERM)
            raise AssertionError("the stack did not come up:\n" + proc.communicate(timeout=30)[0])
        time.sleep(0.5)
    public_host = f"{POD}-{ports['door']}.proxy.runpod.net"
    return {"door": door, "public": f"https://{public_host}", "public_host": public_host, "ports": ports,
            "grafana_log": tmp / "state" / "grafana-data" / "requests.jsonl", "proc": proc}


def stop_door_stack(stack: dict) -> str:
    """Stop it (SIGTERM to the runner's group); returns the runner's output."""
    proc = stack["proc"]
    os.killpg(proc.pid, signal.SIGTERM)
    return proc.communicate(timeout=30)[0]
