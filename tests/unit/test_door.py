"""The front door's nginx.conf (checked by the real nginx -t) and the public URL rules."""
import shutil
import subprocess
from pathlib import Path

import pytest

from common.config import Settings
from common.urls import dashboard_url, public_port_url
from wordslab_dashboard.door import AUTH_PROXY_HEADER, Door, Route, find_docs, render

NGINX = shutil.which("nginx", path="/usr/sbin:/usr/bin")


def _door(tmp_path, **kwargs) -> Door:
    defaults = dict(listen_host="127.0.0.1", port=18888, runtime=tmp_path / "door", admin="127.0.0.1:9878",
                    grafana="127.0.0.1:3000", routes=(Route("/prometheus/", "127.0.0.1:9090"),))
    return Door(**{**defaults, **kwargs})


@pytest.mark.skipif(not NGINX, reason="needs Debian's nginx (./dashboard.sh test installs it)")
@pytest.mark.parametrize("variant", ["full", "no-grafana", "alertmanager", "docs-dir"])
def test_nginx_accepts_the_config(tmp_path, variant):
    kwargs = {"no-grafana": {"grafana": None},
              "alertmanager": {"routes": (Route("/prometheus/", "127.0.0.1:9090"),
                                          Route("/alertmanager/", "127.0.0.1:9093"))},
              "docs-dir": {"docs_dir": tmp_path}}.get(variant, {})
    door = _door(tmp_path, **kwargs)
    door.write()
    result = subprocess.run([NGINX, "-t", "-p", str(door.runtime), "-c", str(door.config_path), "-e", "stderr"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_every_proxied_location_sets_or_blanks_the_auth_proxy_header(tmp_path):
    conf = render(_door(tmp_path, routes=(Route("/prometheus/", "127.0.0.1:9090"),
                                          Route("/alertmanager/", "127.0.0.1:9093"))))
    blocks = conf.split("location ")[1:]
    proxied = [b for b in blocks if "proxy_pass" in b]
    assert len(proxied) == 6  # auth check, login redirect, admin, prometheus, alertmanager, grafana
    for block in proxied:
        assert f"proxy_set_header {AUTH_PROXY_HEADER} " in block, block
    grafana = next(b for b in blocks if b.startswith("/ {"))
    assert f"proxy_set_header {AUTH_PROXY_HEADER} $wordslab_user;" in grafana
    assert "auth_request /_wordslab/auth;" in grafana
    for path in ("/prometheus/ {", "/alertmanager/ {", "/docs/ {"):
        assert "auth_request /_wordslab/auth;" in next(b for b in blocks if b.startswith(path)), path
    assert "listen 127.0.0.1:18888;" in conf and "absolute_redirect off;" in conf


def test_without_grafana_the_root_goes_to_the_admin_and_without_docs_a_page_says_where(tmp_path):
    door = _door(tmp_path, grafana=None)
    door.write()
    conf = door.config_path.read_text()
    assert "location = / {\n            return 302 /admin/;" in conf
    page = (door.runtime / "docs-placeholder" / "index.html").read_text()
    assert "github.com/wordslab-org/wordslab-notebooks/tree/main/docs" in page
    assert "WORDSLAB_DASHBOARD_DOCS_DIR" in page


def test_docs_folder_is_the_platforms_when_present(tmp_path):
    settings = Settings.from_env({"WORDSLAB_HOME": str(tmp_path), "WORDSLAB_VERSION": "2026-05"})
    assert find_docs(settings) is None
    (tmp_path / "wordslab-notebooks" / "docs").mkdir(parents=True)
    assert find_docs(settings) == tmp_path / "wordslab-notebooks" / "docs"
    versioned = tmp_path / "wordslab-notebooks-2026-05" / "docs"
    versioned.mkdir(parents=True)
    assert find_docs(settings) == versioned
    assert find_docs(Settings.from_env(settings.env, docs_dir=Path("/srv/docs"))) == Path("/srv/docs")


@pytest.mark.parametrize("env, expected", [
    ({"RUNPOD_POD_ID": "ebkhet9vq5flt7"}, "https://ebkhet9vq5flt7-8888.proxy.runpod.net"),
    ({"PUBLIC_IPADDR": "142.115.158.140", "VAST_TCP_PORT_8888": "42736"}, "http://142.115.158.140:42736"),
    ({"WORDSLAB_ROOT_URL": "https://142.115.158.140:", "VAST_TCP_PORT_8888": "42736",
      "PUBLIC_IPADDR": "142.115.158.140"}, "https://142.115.158.140:42736"),
    ({"DASHBOARD_URL": "https://16852028295810.notebooks.jarvislabs.net"},
     "https://16852028295810.notebooks.jarvislabs.net"),
    ({"WORDSLAB_PLATFORM": "WindowsSubsystemForLinux", "WORDSLAB_ROOT_URL": "http://localhost:"},
     "http://localhost:8888"),
    ({"WORDSLAB_PLATFORM": "UnknownLinux"}, ""),
])
def test_public_port_url_follows_each_platforms_rule(env, expected):
    assert public_port_url(Settings.from_env(env), 8888, "DASHBOARD_URL") == expected


def test_dashboard_url_override_then_platform_then_localhost():
    assert dashboard_url(Settings.from_env({"RUNPOD_POD_ID": "pod1", "DASHBOARD_PORT": "8888"})) == \
        "https://pod1-8888.proxy.runpod.net"
    assert dashboard_url(Settings.from_env({})) == "http://localhost:8888"
    override = {"RUNPOD_POD_ID": "pod1", "WORDSLAB_DASHBOARD_PUBLIC_URL": "https://me:secret@dash.example/"}
    assert dashboard_url(Settings.from_env(override)) == "https://dash.example"  # credentials dropped
    # The platform's DASHBOARD_URL is for DASHBOARD_PORT; a door elsewhere gets the port's own URL.
    other = {"DASHBOARD_URL": "https://1.notebooks.jarvislabs.net", "DASHBOARD_PORT": "8888"}
    assert dashboard_url(Settings.from_env(other)) == "https://1.notebooks.jarvislabs.net"
    assert dashboard_url(Settings.from_env(other, dashboard_port=18888)) == "http://localhost:18888"


def test_a_busy_port_is_reported_before_nginx_starts():
    import socket
    from wordslab_dashboard.door import port_problem
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        problem = port_problem("127.0.0.1", port)
        assert f"cannot listen on 127.0.0.1:{port}" in problem and "--dashboard-port" in problem
    assert port_problem("127.0.0.1", port) is None


@pytest.mark.skipif(not NGINX, reason="needs Debian's nginx (./dashboard.sh test installs it)")
@pytest.mark.parametrize("host", ["::1", "::", "[::1]", "0.0.0.0", "localhost"])
def test_nginx_accepts_any_listen_host_ipv6_included(tmp_path, host):
    door = _door(tmp_path, listen_host=host)
    door.write()
    result = subprocess.run([NGINX, "-t", "-p", str(door.runtime), "-c", str(door.config_path), "-e", "stderr"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_a_busy_ipv6_port_is_reported_with_the_address_in_brackets():
    import socket
    from wordslab_dashboard.door import port_problem
    with socket.socket(socket.AF_INET6) as taken:
        taken.bind(("::1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for host in ("::1", "[::1]"):
            problem = port_problem(host, port)
            assert f"cannot listen on [::1]:{port} (Address already in use)" in problem, problem
    assert port_problem("[::1]", port) is None and port_problem("::1", port) is None
