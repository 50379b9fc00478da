"""AppsCollector: real loopback HTTP(S) servers as the VM's apps; probes run in the background source."""
from __future__ import annotations

import socket
import ssl
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from exporter.collectors.apps import AppsCollector
from common.config import Settings
from tests.fakes.http_apps import answering
from tests.fakes.loopback import serving
from tests.support.env import free_port
from tests.support.metrics import promtool_problems, refreshed, scrape

TLS_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tls"


def port_of(url: str) -> str:
    return url.rsplit(":", 1)[1]


@pytest.fixture
def services_down(vm_env):
    """This project's services and the dashboard on closed ports, so nothing on the host answers."""
    return {**vm_env, "DASHBOARD_PORT": str(free_port()),
            "WORDSLAB_ADMIN_URL": f"http://127.0.0.1:{free_port()}",
            "WORDSLAB_GRAFANA_URL": f"http://127.0.0.1:{free_port()}/",
            "WORDSLAB_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}"}


def up_values(result) -> dict[str, float]:
    return {lbl["app"]: v for lbl, v in result.series("wordslab_app_up")}


def test_up_down_and_not_configured_apps(services_down):
    seen = []
    with serving(answering(200, seen)) as ok, serving(answering(500)) as failing, serving(answering(302)) as login:
        env = {**services_down, "JUPYTERLAB_PORT": port_of(ok), "VSCODE_PORT": port_of(failing),
               "OPENWEBUI_PORT": str(free_port()), "USER_APP1_PORT": port_of(login),
               "USER_APP1_URL": "https://me:secret@app1.example.net/?token=abc123#frag",
               "OLLAMA_HOST": f"0.0.0.0:{port_of(ok)}", "USER_APP2_PORT": "not-a-port"}
        collector = AppsCollector(Settings.from_env(env))
        assert up_values(scrape(collector)) == {}  # a scrape never probes; the background source does
        assert seen == []
        collector.probe_source.refresh_now()
        result = scrape(collector)
        collector.stop()

    assert up_values(result) == {"jupyterlab": 1, "vscode": 0, "openwebui": 0, "user-app1": 1,
                                 "dashboard": 0, "ollama": 1, "admin": 0, "grafana": 0, "prometheus": 0}
    assert seen == ["/", "/"]  # jupyterlab and ollama, both on the internal port over loopback
    configured = {lbl["app"]: v for lbl, v in result.series("wordslab_app_configured")}
    assert [app for app, v in configured.items() if v == 0] == [
        "hermes-agent", "user-app2", "user-app3", "user-app4"]

    info = {lbl["app"]: lbl for lbl in result.labels("wordslab_app_info")}
    assert info["jupyterlab"] == {"app": "jupyterlab", "url": f"http://127.0.0.1:{port_of(ok)}",
                                  "port_var": "JUPYTERLAB_PORT", "internal_port": port_of(ok),
                                  "external_port": port_of(ok)}
    assert info["hermes-agent"] == {"app": "hermes-agent", "url": "", "port_var": "HERMESAGENT_PORT",
                                    "internal_port": "", "external_port": ""}
    assert info["user-app1"]["url"] == "https://app1.example.net/"  # no credentials, no token
    assert "secret" not in result.text and "abc123" not in result.text
    assert info["ollama"]["url"] == f"http://127.0.0.1:{port_of(ok)}"
    assert info["ollama"]["port_var"] == "OLLAMA_HOST"
    assert info["grafana"]["internal_port"] == port_of(services_down["WORDSLAB_GRAFANA_URL"].rstrip("/"))
    assert len(result.series("wordslab_app_probe_duration_seconds")) == 9
    assert result.value("wordslab_source_refresh_success", source="app_probes") == 1
    assert promtool_problems(result.text) == ""


def test_vast_ai_maps_internal_ports_to_public_ones(services_down):
    env = {**services_down, "WORDSLAB_ROOT_URL": "http://203.0.113.7:", "JUPYTERLAB_PORT": "8880",
           "VAST_TCP_PORT_8880": "41234", "VSCODE_PORT": "8881"}
    info = {lbl["app"]: lbl for lbl in scrape(AppsCollector(Settings.from_env(env))).labels("wordslab_app_info")}
    assert (info["jupyterlab"]["url"], info["jupyterlab"]["internal_port"], info["jupyterlab"]["external_port"]) \
        == ("http://203.0.113.7:41234", "8880", "41234")
    assert info["vscode"]["url"] == "http://203.0.113.7:8881"


def test_runpod_links_each_port_through_its_https_proxy(services_down):
    # The same rule as the front door's own public URL (common.urls.public_port_url).
    env = {**services_down, "RUNPOD_POD_ID": "ebkhet9vq5flt7", "WORDSLAB_ROOT_URL": "http://127.0.0.1:",
           "JUPYTERLAB_PORT": "8880", "DASHBOARD_PORT": "8888"}
    info = {lbl["app"]: lbl for lbl in scrape(AppsCollector(Settings.from_env(env))).labels("wordslab_app_info")}
    assert info["jupyterlab"]["url"] == "https://ebkhet9vq5flt7-8880.proxy.runpod.net"
    assert info["dashboard"]["url"] == "https://ebkhet9vq5flt7-8888.proxy.runpod.net"


def test_the_dashboards_own_services_link_through_the_front_door(services_down):
    env = {**services_down, "RUNPOD_POD_ID": "pod7", "DASHBOARD_PORT": "8888"}
    info = {lbl["app"]: lbl for lbl in scrape(AppsCollector(Settings.from_env(env))).labels("wordslab_app_info")}
    door = "https://pod7-8888.proxy.runpod.net"
    assert (info["admin"]["url"], info["grafana"]["url"], info["prometheus"]["url"]) == \
        (door + "/admin/", door + "/", door + "/prometheus/")
    # Probed where they listen, on loopback.
    assert info["grafana"]["internal_port"] == port_of(services_down["WORDSLAB_GRAFANA_URL"].rstrip("/"))


def test_url_variable_alone_configures_the_app_on_its_default_port(services_down):
    env = {**services_down, "OPENWEBUI_URL": "https://abc-8882.proxy.runpod.net"}
    info = {lbl["app"]: lbl for lbl in scrape(AppsCollector(Settings.from_env(env))).labels("wordslab_app_info")}
    assert info["openwebui"]["url"] == "https://abc-8882.proxy.runpod.net"
    assert info["openwebui"]["internal_port"] == "8882"


@pytest.fixture
def tls_server():
    # A committed self-signed pair (test-only key, valid until 2126): no openssl needed to run the test.
    cert, key = TLS_FIXTURES / "localhost-cert.pem", TLS_FIXTURES / "localhost-key.pem"
    server = ThreadingHTTPServer(("127.0.0.1", 0), answering(200))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_app_served_over_tls_with_a_self_signed_certificate_is_up(services_down, tls_server):
    env = {**services_down, "JUPYTERLAB_PORT": str(tls_server)}
    collector = AppsCollector(Settings.from_env(env))
    collector.probe_source.refresh_now()
    assert up_values(scrape(collector))["jupyterlab"] == 1
    collector.stop()


def test_app_that_never_answers_is_down_after_the_timeout(services_down):
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never replies
    try:
        env = {**services_down, "VSCODE_PORT": str(silent.getsockname()[1])}
        collector = AppsCollector(Settings.from_env(env), probe_timeout_seconds=0.3)
        collector.probe_source.refresh_now()
        assert up_values(scrape(collector))["vscode"] == 0
        collector.stop()
    finally:
        silent.close()


def test_ollama_app_reads_the_same_address_as_the_ollama_client(services_down):
    # OLLAMA_API_BASE with /api: the app link and its probe are the server root, as the client's.
    seen = []
    with serving(answering(200, seen)) as ok:
        env = {**services_down, "OLLAMA_API_BASE": f"http://0.0.0.0:{port_of(ok)}/api/", "OLLAMA_HOST": "gpu-box:1"}
        collector = AppsCollector(Settings.from_env(env))
        collector.probe_source.refresh_now()
        result = scrape(collector)
        collector.stop()
    assert up_values(result)["ollama"] == 1 and seen == ["/"]
    info = {lbl["app"]: lbl for lbl in result.labels("wordslab_app_info")}["ollama"]
    assert info == {"app": "ollama", "url": f"http://127.0.0.1:{port_of(ok)}", "port_var": "OLLAMA_API_BASE",
                    "internal_port": port_of(ok), "external_port": port_of(ok)}


def test_unusable_ollama_address_is_not_configured(services_down):
    env = {**services_down, "OLLAMA_HOST": "ftp://gpu-box"}
    result = scrape(AppsCollector(Settings.from_env(env)))
    assert {lbl["app"]: v for lbl, v in result.series("wordslab_app_configured")}["ollama"] == 0


def test_installed_and_seen_up_apps_are_remembered_across_restarts(services_down, tmp_path):
    """Only an app seen up once, and not uninstalled since, can be 'down' for the alert."""
    home = Path(services_down["WORDSLAB_HOME"])
    (home / "jupyterlab").mkdir()  # installed by wordslab-notebooks, at its default place
    (home / "code-server").mkdir()
    with serving(answering(200)) as ok:
        env = {**services_down, "JUPYTERLAB_PORT": port_of(ok), "VSCODE_PORT": str(free_port()),
               "OPENWEBUI_ENV": str(tmp_path / "not-installed"), "PATH": str(tmp_path / "no-bin")}
        collector = AppsCollector(Settings.from_env(env))
        collector.probe_source.refresh_now()
        first = scrape(collector)
        collector.stop()
    installed = {lbl["app"]: v for lbl, v in first.series("wordslab_app_installed")}
    assert installed == {"jupyterlab": 1, "vscode": 1, "openwebui": 0, "ollama": 0}  # others: cannot tell
    seen = {lbl["app"]: v for lbl, v in first.series("wordslab_app_seen_up")}
    assert [app for app, v in seen.items() if v == 1] == ["jupyterlab"]
    assert seen["vscode"] == 0 and seen["grafana"] == 0

    # A new exporter, JupyterLab stopped meanwhile: still seen up, now down.
    collector = AppsCollector(Settings.from_env(env))
    collector.probe_source.refresh_now()
    second = scrape(collector)
    collector.stop()
    assert second.value("wordslab_app_up", app="jupyterlab") == 0
    assert second.value("wordslab_app_seen_up", app="jupyterlab") == 1
    assert promtool_problems(second.text) == ""


def test_grafana_off_is_not_probed_so_no_app_down_alert_can_fire(services_down):
    """`up` without Grafana says so with WORDSLAB_GRAFANA_URL=off: not configured, no up series."""
    env = {**services_down, "WORDSLAB_GRAFANA_URL": "off"}
    collector = AppsCollector(Settings.from_env(env))
    result = scrape(refreshed(collector))
    configured = {lbl["app"]: v for lbl, v in result.series("wordslab_app_configured")}
    assert configured["grafana"] == 0
    assert "grafana" not in {lbl["app"] for lbl, _ in result.series("wordslab_app_up")}
