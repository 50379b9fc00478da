"""Prometheus file_sd target files the admin writes (vLLM servers, remote VMs' exporters).

prometheus.yml reads `targets/*.yml` (static, shipped) and `targets/dynamic/*.json`;
the dynamic directory is WORDSLAB_PROMETHEUS_TARGETS_DIR, by default under the state dir.
Files are written atomically so Prometheus never reads half a file.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from common.config import Settings

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def targets_dir(settings: Settings) -> Path:
    return settings.prometheus_targets_dir or Path(settings.state_dir) / "prometheus" / "targets" / "dynamic"


def _target_file(settings: Settings, name: str) -> Path:
    if not _SAFE_NAME.match(name) or ".." in name:
        raise ValueError(f"invalid target group name {name!r}")
    return targets_dir(settings) / f"{name}.json"


def write_targets(settings: Settings, name: str, targets: Sequence[str],
                  labels: Mapping[str, str] | None = None) -> Path:
    """Write one target group, e.g. write_targets(s, "vllm-main", ["127.0.0.1:8000"], {"job": "vllm"})."""
    path = _target_file(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = [{"targets": list(targets), "labels": dict(labels or {})}]
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2)
    os.replace(tmp, path)
    return path


def remove_targets(settings: Settings, name: str) -> None:
    _target_file(settings, name).unlink(missing_ok=True)
