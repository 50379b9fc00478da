"""A temporary wordslab VM layout: WORDSLAB_* dirs under tmp_path, as the platform sets them."""
from __future__ import annotations

import socket
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wordslab_env(root: Path, **extra: str) -> dict[str, str]:
    """Environment of a fresh VM whose home, workspace and models live under `root`."""
    home, workspace, models = root / "home", root / "workspace", root / "models"
    for d in (home, workspace, models):
        d.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "WORDSLAB_PLATFORM": "UnknownLinux",
        "WORDSLAB_VERSION": "2026-11",
        "WORDSLAB_HOME": str(home),
        "WORDSLAB_WORKSPACE": str(workspace),
        "WORDSLAB_MODELS": str(models),
        "WORDSLAB_NOTEBOOKS_ENV": str(home / "notebooks-env"),
        "WORDSLAB_ROOT_URL": "http://127.0.0.1:",
        "DASHBOARD_PORT": "8888",
        "OLLAMA_MODELS": str(models / "ollama"),
        "HF_HOME": str(models / "huggingface"),
        "TORCH_HOME": str(models / "torch"),
        "FASTAI_HOME": str(models / "fastai"),
        "KERAS_HOME": str(models / "keras"),
        "WORDSLAB_DASHBOARD_DB": str(root / "dashboard.db"),
        "WORDSLAB_DASHBOARD_STATE_DIR": str(root / "state"),
    }
    env.update(extra)
    return env
