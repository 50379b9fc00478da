"""`wordslab_system_info` and `wordslab_app_version_info`: what this VM is and runs.

All of it is read once at start-up ("on startup" values in the spec), except the
CUDA version, which is asked of NVML until it first answers.
"""
from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path
from typing import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from common import nvml as nvml_access
from common.config import Settings
from exporter.platform import OS_RELEASE_PATHS, PROC_VERSION, detect_platform, os_version
from common.urls import dashboard_url
from exporter.collectors.base import PREFIX, WordslabCollector

# venv writes "version = 3.12.3", uv "version_info = 3.12.3", virtualenv "version_info = 3.12.3.final.0".
_VERSION_LINE = re.compile(r"^version(?:_info)?\s*=\s*(\d+\.\d+(?:\.\d+)?)", re.MULTILINE)


def env_python_version(env_dir: Path | None) -> str | None:
    """Python version of a venv (pyvenv.cfg) or conda env (lib/pythonX.Y)."""
    if env_dir is None:
        return None
    try:
        match = _VERSION_LINE.search((env_dir / "pyvenv.cfg").read_text(errors="replace"))
    except OSError:
        match = None
    if match:
        return match.group(1)
    libs = sorted(env_dir.glob("lib/python3*"))
    return libs[-1].name.removeprefix("python") if libs else None


def env_package_version(env_dir: Path | None, dist_name: str) -> str | None:
    """Version from `<dist>-*.dist-info/METADATA` in an env's site-packages, without importing it."""
    if env_dir is None:
        return None
    for metadata in sorted(env_dir.glob(f"lib/python3*/site-packages/{dist_name}-*.dist-info/METADATA")):
        try:
            with metadata.open(errors="replace") as fh:
                for line in fh:
                    if line.startswith("Version:"):
                        return line.split(":", 1)[1].strip()
                    if not line.strip():  # end of the header block
                        break
        except OSError:
            continue
    return None


def installed_version(dist_name: str) -> str | None:
    try:
        return importlib.metadata.version(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None


class SystemCollector(WordslabCollector):
    name = "system"

    def __init__(self, settings: Settings, *, proc_version: Path = PROC_VERSION,
                 os_release: tuple[Path, ...] | Path = OS_RELEASE_PATHS,
                 nvml: nvml_access.Nvml | None = None):
        super().__init__(settings)
        self.hosting_platform = detect_platform(settings, proc_version)
        self.os_version = os_version(os_release)
        # The docs behind the dashboard's front door, at the platform's public URL for its port.
        self.docs_url = dashboard_url(settings) + "/docs" if settings.get("DASHBOARD_PORT") else ""
        env_dir = settings.notebooks_env
        self.versions: dict[str, str] = {}
        python = env_python_version(env_dir) or ".".join(map(str, sys.version_info[:3]))
        self.versions["python"] = python
        torch = env_package_version(env_dir, "torch") or installed_version("torch")
        if torch:
            self.versions["pytorch"] = torch
        self._gpu_allowed = not nvml_access.cpu_only_marker(env_dir, settings.workspace)
        self._nvml = nvml
        self._cuda: str | None = None

    def cuda_version(self) -> str | None:
        if not self._gpu_allowed:
            return None
        if self._cuda is None:
            self._cuda = (self._nvml or nvml_access.shared()).cuda_driver_version()
        return self._cuda

    def collect_metrics(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            PREFIX + "system_info",
            "Always 1: hosting platform, OS version, wordslab version and the docs URL "
            "(the front door's public URL for DASHBOARD_PORT + /docs, empty when DASHBOARD_PORT is unset).",
            labels=["hosting_platform", "os_version", "wordslab_version", "docs_url"])
        info.add_metric([self.hosting_platform, self.os_version, self.settings.version or "",
                         self.docs_url], 1)
        yield info
        versions = GaugeMetricFamily(
            PREFIX + "app_version_info",
            "Always 1: version of python and pytorch in the VM's Python env, and the CUDA "
            "version the driver supports (only when a GPU is usable).",
            labels=["app", "version"])
        for app, version in self.versions.items():
            versions.add_metric([app, version], 1)
        cuda = self.cuda_version()
        if cuda:
            versions.add_metric(["cuda", cuda], 1)
        yield versions
