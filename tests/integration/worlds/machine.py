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
    for role, windows_dir, size in (("HOME", r"C:\wordslab\virtual-machines\wordslab-notebooks", 4 * GiB),
                                    ("WORKSPACE", r"C:\wordslab\virtual-machines\wordslab-workspace", 8 * GiB),
                                    ("MODELS", r"D:\wordslab-models", 16 * GiB)):
        windows.add_vhdx(windows_dir, size)
        # As the platform writes them, in the matching Linux directory.
        (Path(env[f"WORDSLAB_{role}"]) / f".WORDSLAB_WINDOWS_{role}").write_text(windows_dir + "\n")

    env["WORDSLAB_ROOT_URL"] = "http://127.0.0.1:"
    env["JUPYTERLAB_PORT"] = world.serve(answering(200)).rsplit(":", 1)[1]
    env["VSCODE_PORT"] = world.serve(answering(500)).rsplit(":", 1)[1]
