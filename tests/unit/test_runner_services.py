"""What `wordslab-dashboard up` plans to start, and what it tells the other processes."""
from pathlib import Path

from common.config import Settings
from wordslab_dashboard.cli import build_parser, plan_services
from wordslab_dashboard.grafana_install import GrafanaInstall
from wordslab_dashboard.layout import Layout
from tests.support.env import free_port

REPO = Path(__file__).resolve().parents[2]


def _plan(vm_env, tmp_path, *flags, grafana=None):
    args = build_parser().parse_args(["up", "--door-host", "127.0.0.1", "--dashboard-port", str(free_port()), *flags])
    settings = Settings.from_env(vm_env)
    services, _missing = plan_services(args, Layout(repo=REPO, state=tmp_path / "state"), settings, grafana)
    return {s.name: s for s in services}


def test_a_stack_without_grafana_tells_the_exporter_and_admin_so(vm_env, tmp_path):
    services = _plan(vm_env, tmp_path, "--no-grafana")
    assert "grafana" not in services
    # Not probed, so Grafana seen up on an earlier start cannot raise an app-down alert now.
    assert services["exporter"].env["WORDSLAB_GRAFANA_URL"] == "off"
    assert services["admin"].env["WORDSLAB_GRAFANA_URL"] == "off"


def test_a_stack_with_grafana_points_both_at_its_loopback_port(vm_env, tmp_path):
    install = GrafanaInstall(tmp_path / "grafana-home", tmp_path / "grafana-home" / "bin" / "grafana")
    services = _plan(vm_env, tmp_path, "--grafana-port", "3123", grafana=install)
    assert "grafana" in services
    assert services["exporter"].env["WORDSLAB_GRAFANA_URL"] == "http://127.0.0.1:3123"
