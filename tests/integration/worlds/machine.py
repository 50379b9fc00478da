"""Machine resources and app links for the integration world.

The VM is a WSL one with a faked Windows side (drive folders, ext4.vhdx files, a fake
`wslpath` on PATH) so the virtual-disk series exist too; its Python env has torch
installed; JupyterLab answers and VS Code fails with 500, so `wordslab_app_up` has
both values. CPU, memory, disks and network are this machine's own.
"""
from __future__ import annotations

from pathlib import Path

from tests.fakes.http_apps import answering
from tests.fakes.notebooks_env import make_notebooks_env
from tests.fakes.wsl import FakeWindows
from tests.support.world import World

GiB = 2**30


def build(world: World) -> None:
    env = world.env
    make_notebooks_env(Path(env["WORDSLAB_NOTEBOOKS_ENV"]))

    windows = FakeWindows(world.root / "windows")
    windows.install_wslpath()
    env["PATH"] = f"{windows.bin_dir}:{env['PATH']}"
    env["WORDSLAB_PLATFORM"] = "WindowsSubsystemForLinux"
    # The installer's layout (VM and workspace disks under C:\wordslab), the models disk on D:.
    env["WORDSLAB_WINDOWS_HOME"] = "C:\\wordslab"
    windows.install_wordslab(env, {"home": 4 * GiB, "workspace": 8 * GiB, "models": 16 * GiB},
                             models=r"D:\wordslab-models")

    env["WORDSLAB_ROOT_URL"] = "http://127.0.0.1:"
    env["JUPYTERLAB_PORT"] = world.serve(answering(200)).rsplit(":", 1)[1]
    env["VSCODE_PORT"] = world.serve(answering(500)).rsplit(":", 1)[1]
