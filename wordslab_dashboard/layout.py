"""Where the stack's files live: the repo's config and the runtime state directory."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ALERTMANAGER = "127.0.0.1:9093"
EMPTY_ALERTMANAGER_CONFIG = """# Replaced by wordslab-admin with the receivers set in its Alerts menu.
route:
  receiver: wordslab-none
receivers:
  - name: wordslab-none
"""


@dataclass(frozen=True)
class Layout:
    repo: Path
    state: Path

    @property
    def prometheus_runtime(self) -> Path:
        return self.state / "prometheus"

    @property
    def prometheus_config(self) -> Path:
        return self.prometheus_runtime / "prometheus.yml"

    @property
    def dynamic_targets(self) -> Path:
        # Same default as admin.file_sd.targets_dir: the admin writes here.
        return self.prometheus_runtime / "targets" / "dynamic"

    @property
    def prometheus_data(self) -> Path:
        return self.state / "prometheus-data"

    @property
    def grafana_data(self) -> Path:
        return self.state / "grafana-data"

    @property
    def alertmanager_runtime(self) -> Path:
        # Same default as admin.alerting.config.config_path: the admin renders the config here.
        return self.state / "alertmanager"

    @property
    def alertmanager_config(self) -> Path:
        return self.alertmanager_runtime / "alertmanager.yml"

    @property
    def alertmanager_data(self) -> Path:
        return self.state / "alertmanager-data"

    def prepare_alertmanager(self) -> None:
        """A config with no receiver until the admin renders the real one (never overwritten)."""
        self.alertmanager_runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.alertmanager_config.exists():
            self.alertmanager_config.write_text(EMPTY_ALERTMANAGER_CONFIG)

    def prepare_prometheus(self, exporter_address: str, alertmanager_address: str = DEFAULT_ALERTMANAGER) -> None:
        """Copy prometheus/ into the state dir, keeping the admin's dynamic targets.

        Prometheus resolves rule and file_sd paths relative to its config file, so the
        runtime copy lets the admin add targets without writing into the repo.
        """
        src = self.repo / "prometheus"
        dst = self.prometheus_runtime
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / "prometheus.yml", dst / "prometheus.yml")
        if (dst / "rules").exists():
            shutil.rmtree(dst / "rules")
        shutil.copytree(src / "rules", dst / "rules")
        targets = dst / "targets"
        targets.mkdir(exist_ok=True)
        self.dynamic_targets.mkdir(parents=True, exist_ok=True)
        local = (src / "targets" / "local.yml").read_text()
        (targets / "local.yml").write_text(local.replace("127.0.0.1:9877", exporter_address))
        config = (dst / "prometheus.yml").read_text()
        (dst / "prometheus.yml").write_text(config.replace(f'"{DEFAULT_ALERTMANAGER}"', f'"{alertmanager_address}"'))
