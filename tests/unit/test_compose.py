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
    assert set(services) == {"exporter", "admin", "prometheus", "alertmanager", "grafana"}
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
