"""compose.yaml validated offline: no Docker engine runs here, docker-compose's own schema check does."""
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _config(*files: str) -> subprocess.CompletedProcess:
    docker_compose = shutil.which("docker-compose")
    assert docker_compose, "docker-compose (Debian package docker-compose) is needed to validate compose.yaml"
    argv = [docker_compose]
    for f in files:
        argv += ["-f", f]
    return subprocess.run(argv + ["config"], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_compose_files_pass_the_compose_schema():
    for files in (["compose.yaml"], ["compose.yaml", "compose.gpu.yaml"]):
        result = _config(*files)
        assert result.returncode == 0, result.stderr


def test_schema_check_rejects_a_broken_file(tmp_path):
    broken = tmp_path / "compose.yaml"
    broken.write_text((ROOT / "compose.yaml").read_text().replace("network_mode: host", "network_mode: [host]"))
    result = _config(str(broken))
    assert result.returncode != 0 and "network_mode" in result.stderr


def test_stack_uses_the_repo_files_the_native_runner_uses():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"exporter", "admin", "prometheus", "alertmanager", "grafana", "door-config", "door"}
    for name, service in services.items():
        assert service["network_mode"] == "host", name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and not source.startswith("./.wordslab-run"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).name == "home.json" and (ROOT / "grafana" / "dashboards" / "home.json").exists()
    prom_cmd = " ".join(services["prometheus"]["command"])
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom_cmd
    # Alertmanager reads the file the admin renders under its state dir (/state in the containers).
    assert "./.wordslab-run/state/alertmanager:/etc/alertmanager:ro" in services["alertmanager"]["volumes"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in services["alertmanager"]["command"]
    assert services["admin"]["environment"]["WORDSLAB_DASHBOARD_STATE_DIR"] == "/state"
    prometheus_yml = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    targets = prometheus_yml["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["127.0.0.1:9093"] and "--web.listen-address=127.0.0.1:9093" in services["alertmanager"]["command"]


def test_dockerfile_installs_every_python_package():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("exporter", "admin", "wordslab_dashboard"):
        assert f"COPY {package} ./{package}" in dockerfile


def test_grafana_image_is_pinned_to_the_native_runners_version():
    from wordslab_dashboard.grafana_install import PINNED
    image = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["grafana"]["image"]
    assert image == f"grafana/grafana:{PINNED.version}"


def test_the_door_is_the_one_port_beyond_loopback_and_runs_the_runners_config(tmp_path):
    """compose's door-config command, run here, writes a config the real nginx accepts; the door
    listens on every interface, every other service on 127.0.0.1; Grafana reads the door's ini."""
    import os
    import shutil
    import sys
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert services["door"]["image"].startswith("nginx:") and services["door"]["image"] != "nginx:latest"
    command = services["door-config"]["command"]
    assert command[:2] == ["wordslab-dashboard", "door-config"]
    args = command[2:]
    args[args.index("--runtime") + 1] = str(tmp_path / "door")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DASHBOARD_PORT": "8888", "RUNPOD_POD_ID": "pod9"}
    result = subprocess.run([sys.executable, "-m", "wordslab_dashboard", "door-config", *args,
                             "--mime-types", str(tmp_path / "missing-ok")],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    conf = (tmp_path / "door" / "nginx.conf").read_text()
    assert "listen 0.0.0.0:8888;" in conf
    assert "location /prometheus/" in conf and "location /alertmanager/" in conf
    ini = (tmp_path / "door" / "grafana.ini").read_text()
    assert "root_url = https://pod9-8888.proxy.runpod.net/" in ini and "[auth.proxy]\nenabled = true" in ini
    assert (tmp_path / "door" / "grafana-admin-password").stat().st_mode & 0o077 == 0
    nginx = shutil.which("nginx", path="/usr/sbin:/usr/bin")
    if nginx:
        conf_ok = conf.replace(f"include {tmp_path / 'missing-ok'};", "include /etc/nginx/mime.types;")
        (tmp_path / "door" / "nginx.conf").write_text(conf_ok)
        check = subprocess.run([nginx, "-t", "-p", str(tmp_path / "door"), "-c", str(tmp_path / "door" / "nginx.conf"),
                                "-e", "stderr"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
    grafana_env = services["grafana"]["environment"]
    assert grafana_env["GF_PATHS_CONFIG"] == "/state/door/grafana.ini"
    assert grafana_env["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    listens = " ".join(" ".join(svc.get("command") or []) for name, svc in services.items() if name != "door-config")
    for flag in ("--web.listen-address=", "--listen-address "):
        for found in listens.split(flag)[1:]:
            assert found.startswith("127.0.0.1:"), found
    for name, svc in services.items():
        assert "ports" not in svc, name  # host networking: the door listens on the host itself
