"""`./dashboard.sh up` restarts offline: a current venv is used as is, pip never runs."""
import hashlib
import os
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

from tests.fakes import grafana_tarball
from tests.support.env import free_port, wordslab_env

ROOT = Path(__file__).resolve().parents[2]


def _current_venv(path: Path, stamp: str | None) -> Path:
    """A real venv without pip whose packages are the test venv's, like one `up` installed before.

    Without pip in it, any pip call `up` made would fail: the start proves none was made.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    purelib = Path(subprocess.run([str(path / "bin" / "python"), "-c",
                                   "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    (purelib / "test-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    script = path / "bin" / "wordslab-dashboard"
    script.write_text(f"#!{path}/bin/python\nimport sys\nfrom wordslab_dashboard.cli import main\n"
                      "sys.exit(main())\n")
    script.chmod(0o755)
    if stamp is not None:
        (path / ".wordslab-dashboard-installed").write_text(stamp + "\n")
    return path


def _stamp(extra: str = "") -> str:
    return f"{hashlib.sha256((ROOT / 'pyproject.toml').read_bytes()).hexdigest()} {extra}"


def _run_up(tmp_path: Path, venv: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    exporter = free_port()
    closed = free_port()  # nothing listens here: the package index is unreachable
    env = {**os.environ, **wordslab_env(tmp_path), "PATH": os.environ["PATH"],
           "PYTHONPATH": str(ROOT), "WORDSLAB_DASHBOARD_VENV": str(venv),
           "WORDSLAB_DASHBOARD_ADMIN_PASSWORD": "s3cret-pass",
           "PIP_INDEX_URL": f"http://127.0.0.1:{closed}/simple", "PIP_NO_INPUT": "1"}
    argv = ["bash", str(ROOT / "dashboard.sh"), "up", *(extra or ("--no-grafana", "--state-dir", str(tmp_path / "state"))),
            "--exporter-address", f"127.0.0.1:{exporter}",
            "--admin-address", f"127.0.0.1:{free_port()}",
            "--prometheus-address", f"127.0.0.1:{free_port()}",
            "--door-host", "127.0.0.1", "--dashboard-port", str(free_port()),
            "--alertmanager-address", f"127.0.0.1:{free_port()}"]
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return proc, exporter


def _wait_for_exporter(proc: subprocess.Popen, exporter: int) -> None:
    deadline = time.monotonic() + 40
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{exporter}/metrics", timeout=2) as resp:
                assert resp.status == 200
                return
        except OSError:
            assert proc.poll() is None, _stop(proc)
            assert time.monotonic() < deadline, "exporter never answered"
            time.sleep(0.5)


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    return proc.communicate(timeout=30)[0]


@pytest.mark.integration
@pytest.mark.parametrize("extra", ["", "[test]"])
def test_up_with_a_current_venv_starts_with_the_package_index_unreachable(tmp_path, extra):
    venv = _current_venv(tmp_path / "venv", _stamp(extra))
    proc, exporter = _run_up(tmp_path, venv)
    try:
        _wait_for_exporter(proc, exporter)
    finally:
        output = _stop(proc)
    assert "wordslab-dashboard: started" in output
    assert "installing the Python packages" not in output
    assert "Editable installation" not in output and "pip" not in output.lower()


@pytest.mark.integration
def test_up_reinstalls_when_pyproject_changed_and_says_what_to_do_offline(tmp_path):
    venv = _current_venv(tmp_path / "venv", "0" * 64 + " ")  # installed from another pyproject.toml
    proc, _ = _run_up(tmp_path, venv)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode != 0
    assert "installing the Python packages" in output
    assert "PIP_INDEX_URL" in output  # what to do without network
    assert "wordslab-dashboard: started" not in output
    assert (venv / ".wordslab-dashboard-installed").read_text().startswith("0" * 64)  # stamp kept


@pytest.mark.integration
def test_up_reads_relative_paths_from_where_it_was_run(tmp_path):
    """`cd ~/Downloads && ~/wordslab-dashboard/dashboard.sh up --grafana-tarball grafana.tar.gz`:
    the tarball, state and cache paths are the caller's, not the repository's."""
    grafana_tarball.build(tmp_path / "grafana.tar.gz")  # found, then refused: not the pinned sha256
    venv = _current_venv(tmp_path / "venv", _stamp())
    proc, exporter = _run_up(tmp_path, venv, "--grafana-tarball", "grafana.tar.gz",
                             "--state-dir", "state", "--cache-dir", "cache")
    try:
        _wait_for_exporter(proc, exporter)
    finally:
        output = _stop(proc)
    assert f"refusing Grafana from {tmp_path / 'grafana.tar.gz'}: sha256" in output, output
    assert "not found" not in output
    assert (tmp_path / "state").is_dir() and (tmp_path / "cache").is_dir()
    assert not (ROOT / "state").exists() and not (ROOT / "cache").exists()
