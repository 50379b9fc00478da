"""`wordslab-dashboard up` starts exporter, admin and a real Prometheus that scrapes the exporter."""
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from tests.fakes import grafana_tarball
from tests.fakes.loopback import serving
from tests.support.env import free_port, wordslab_env
from wordslab_dashboard.grafana_install import machine_arch

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
    ports = {name: free_port() for name in ("exporter", "admin", "prometheus", "grafana", "alertmanager")}
    env = {**os.environ, **wordslab_env(tmp_path), "WORDSLAB_DASHBOARD_ADMIN_PASSWORD": "s3cret-pass",
           "PYTHONPATH": str(ROOT), "WORDSLAB_DASHBOARD_CACHE_DIR": str(tmp_path / "cache"),
           # Grafana's download site is unreachable, as on a machine without network.
           "WORDSLAB_DASHBOARD_GRAFANA_DOWNLOAD_URL": f"http://127.0.0.1:{free_port()}/"}
    env["PATH"] = os.environ["PATH"]
    argv = [sys.executable, "-m", "wordslab_dashboard", "up",
            "--exporter-address", f"127.0.0.1:{ports['exporter']}",
            "--admin-address", f"127.0.0.1:{ports['admin']}",
            "--prometheus-address", f"127.0.0.1:{ports['prometheus']}",
            "--grafana-port", str(ports["grafana"]),
            "--alertmanager-address", f"127.0.0.1:{ports['alertmanager']}",
            "--state-dir", str(tmp_path / "state"),
            "--door-host", "127.0.0.1", "--dashboard-port", str(free_port())]
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

        # Alertmanager runs on loopback with the config the admin renders, and Prometheus sends to it.
        def alertmanager_known():
            _, text = _get(f"http://127.0.0.1:{ports['prometheus']}/api/v1/alertmanagers")
            return json.loads(text)["data"]["activeAlertmanagers"]
        active = _wait(alertmanager_known, 30, "Prometheus to find Alertmanager")
        assert active[0]["url"] == f"http://127.0.0.1:{ports['alertmanager']}/api/v2/alerts"
        _wait(lambda: _get(f"http://127.0.0.1:{ports['alertmanager']}/-/ready")[0] == 200, 30, "Alertmanager")
        rendered = _wait(lambda: "wordslab-admin" in (tmp_path / "state" / "alertmanager" / "alertmanager.yml")
                         .read_text(), 30, "the admin to render alertmanager.yml")
        assert rendered
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    assert "exporter" in output and "prometheus" in output
    if not any(Path(d, "grafana").exists() or Path(d, "grafana-server").exists()
               for d in env["PATH"].split(os.pathsep)):
        # Without network `up` says what to do, and starts the rest.
        assert "not started: grafana: cannot download Grafana" in output
        assert "--grafana-tarball PATH" in output
    # Every child is gone after the runner stops.
    for port in (ports["exporter"], ports["admin"], ports["prometheus"], ports["alertmanager"]):
        with pytest.raises(OSError):
            _get(f"http://127.0.0.1:{port}/", timeout=1)


def _up_with_release(tmp_path: Path, name: str, sha256: str, url: str, ports: dict[str, int]) -> subprocess.Popen:
    """`wordslab-dashboard up` whose pinned Grafana release is the fake tarball (the one seam:
    its name and checksum), downloading from the loopback site `url`."""
    env = {**os.environ, **wordslab_env(tmp_path), "WORDSLAB_DASHBOARD_ADMIN_PASSWORD": "s3cret-pass",
           "PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"],
           "WORDSLAB_DASHBOARD_CACHE_DIR": str(tmp_path / "cache"),
           "WORDSLAB_DASHBOARD_GRAFANA_DOWNLOAD_URL": url}
    code = ("import sys; from wordslab_dashboard import grafana_install as g, cli; "
            "from tests.fakes.grafana_tarball import release_for; "
            f"g.PINNED = release_for({name!r}, {sha256!r}); sys.exit(cli.main(sys.argv[1:]))")
    argv = [sys.executable, "-c", code, "up",
            "--exporter-address", f"127.0.0.1:{ports['exporter']}",
            "--admin-address", f"127.0.0.1:{ports['admin']}",
            "--prometheus-address", f"127.0.0.1:{ports['prometheus']}",
            "--grafana-port", str(ports["grafana"]), "--state-dir", str(tmp_path / "state"),
            "--alertmanager-address", f"127.0.0.1:{free_port()}",
            "--door-host", "127.0.0.1", "--dashboard-port", str(free_port())]
    return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("grafana") or shutil.which("grafana-server"),
                    reason="a system Grafana on the PATH is used instead of the tarball")
@pytest.mark.parametrize("good", [True, False], ids=["good-checksum", "bad-checksum"])
def test_up_installs_grafana_from_the_download_site_only_with_the_pinned_checksum(tmp_path, good):
    site = tmp_path / "site"
    site.mkdir()
    name = "grafana_12.4.2_1_linux_amd64.tar.gz"
    sha = grafana_tarball.build(site / name)
    ports = {name: free_port() for name in ("exporter", "admin", "prometheus", "grafana")}
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    with serving(handler) as url:
        proc = _up_with_release(tmp_path, name, sha if good else "0" * 64, url + "/", ports)
        try:
            _wait(lambda: _get(f"http://127.0.0.1:{ports['admin']}/health"), 40, "admin")
            if good:
                status, body = _wait(lambda: _get(f"http://127.0.0.1:{ports['grafana']}/api/health"),
                                     30, "Grafana from the tarball")
                assert json.loads(body)["fake"] == "grafana"
        finally:
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=30)[0]
    install = tmp_path / "cache" / f"grafana-12.4.2-linux-{machine_arch()}"
    if good:
        assert install.joinpath("bin", "grafana").is_file()
        assert "downloading Grafana 12.4.2" in output and "100 %" in output
        # Run with its data under the state directory and our provisioning.
        record = json.loads((tmp_path / "state" / "grafana-data" / "requests.jsonl").read_text().splitlines()[0])
        assert record["env"]["GF_PATHS_PROVISIONING"] == str(ROOT / "grafana" / "provisioning")
        assert record["env"]["GF_PATHS_DATA"] == str(tmp_path / "state" / "grafana-data")
        # Grafana opens on the home dashboard (the spec's one-screen view).
        assert record["env"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == str(
            ROOT / "grafana" / "dashboards" / "home.json")
    else:
        assert "not started: grafana: refusing Grafana" in output and "nothing was unpacked" in output
        assert not install.exists() and not (tmp_path / "cache" / name).exists()
        with pytest.raises(OSError):
            _get(f"http://127.0.0.1:{ports['grafana']}/", timeout=1)


@pytest.mark.integration
def test_a_second_up_on_the_same_state_dir_says_so_and_leaves_the_first_running(tmp_path):
    def up(ports: dict[str, int]) -> subprocess.Popen:
        env = {**os.environ, **wordslab_env(tmp_path), "WORDSLAB_DASHBOARD_ADMIN_PASSWORD": "s3cret-pass",
               "PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"]}
        argv = [sys.executable, "-m", "wordslab_dashboard", "up", "--no-grafana",
                *(a for name in ("exporter", "admin", "prometheus", "alertmanager")
                  for a in (f"--{name}-address", f"127.0.0.1:{ports[name]}")),
                "--state-dir", str(tmp_path / "state"), "--door-host", "127.0.0.1",
                "--dashboard-port", str(ports["door"])]
        return subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    ports = {name: free_port() for name in ("exporter", "admin", "prometheus", "alertmanager", "door")}
    first = up(ports)
    try:
        _wait(lambda: _get(f"http://127.0.0.1:{ports['exporter']}/metrics")[0] == 200, 30, "exporter")
        config = (tmp_path / "state" / "prometheus" / "prometheus.yml").read_text()
        second = up(ports)  # the same ports too, as a second `./dashboard.sh up` would
        output = second.communicate(timeout=30)[0]
        assert second.returncode == 1
        assert f"another `up` (pid {first.pid}) already runs the stack" in output, output
        assert "started" not in output and "Stopping" not in output
        assert (tmp_path / "state" / "prometheus" / "prometheus.yml").read_text() == config
        assert first.poll() is None
        assert _get(f"http://127.0.0.1:{ports['exporter']}/metrics")[0] == 200
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
