"""A faked Windows side of a WSL VM: drive folders standing for /mnt/<letter>, ext4.vhdx files, `wslpath`.

The fake `wslpath -u 'C:\\dir'` answers `<root>/mnt/c/dir`, as the real one answers
`/mnt/c/dir`, so the exporter reaches the files through the same code path.
`install_wordslab` lays the disks and dot files out as wordslab-notebooks' Windows
installer does (install-wordslab-notebooks.bat, windows/2_ and 3_*.bat).
"""
from __future__ import annotations

import sys
from pathlib import Path

_WSLPATH = '''#!{python}
import sys
if len(sys.argv) != 3 or sys.argv[1] != "-u" or sys.argv[2][1:2] != ":":
    sys.exit("wslpath: usage: wslpath -u 'X:\\\\path'")
drive, rest = sys.argv[2][0].lower(), sys.argv[2][2:].replace("\\\\", "/").strip("/")
print(("{mount_root}/" + drive + "/" + rest).rstrip("/"))
'''


class FakeWindows:
    def __init__(self, root: Path):
        self.mount_root = root / "mnt"
        self.bin_dir = root / "bin"
        self.mount_root.mkdir(parents=True, exist_ok=True)

    def linux_path(self, windows_path: str) -> Path:
        rest = windows_path[2:].replace("\\", "/").strip("/")
        return self.mount_root / windows_path[0].lower() / rest

    def add_vhdx(self, windows_dir: str, size: int) -> Path:
        """`<windows_dir>\\ext4.vhdx` of `size` bytes (sparse, so tests stay cheap)."""
        path = self.linux_path(windows_dir) / "ext4.vhdx"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            fh.truncate(size)
        return path

    def install_wordslab(self, env: dict, sizes: dict[str, int], windows_home: str = "C:\\wordslab",
                         distro: str = "wordslab-notebooks", workspace: str | None = None,
                         models: str | None = None) -> dict[str, str]:
        """The installer's layout: the VM `<home>\\virtual-machines\\<distro>\\ext4.vhdx`, the
        workspace and models disks (default beside it), and the dot files it writes in the VM.
        `sizes` maps home/workspace/models to vhdx sizes; returns each role's Windows folder."""
        folders = {"home": f"{windows_home}\\virtual-machines\\{distro}",
                   "workspace": workspace or f"{windows_home}\\virtual-machines\\wordslab-workspace",
                   "models": models or f"{windows_home}\\virtual-machines\\wordslab-models"}
        for role, folder in folders.items():
            self.add_vhdx(folder, sizes[role])
        # 2_create-linux-virtual-machine.bat: `sh -c "echo '%WORDSLAB_WINDOWS_HOME%\\\\virtual-machines\\
        # wordslab-notebooks' > /home/.WORDSLAB_WINDOWS_HOME"`: dash's echo halves the four
        # backslashes, and the name is wordslab-notebooks whatever --name said.
        (Path(env["WORDSLAB_HOME"]) / ".WORDSLAB_WINDOWS_HOME").write_text(
            f"{windows_home}\\\\virtual-machines\\wordslab-notebooks\n")
        # 3_create-linux-virtual-disks.bat: busybox echo, written as given.
        (Path(env["WORDSLAB_WORKSPACE"]) / ".WORDSLAB_WINDOWS_WORKSPACE").write_text(folders["workspace"] + "\n")
        (Path(env["WORDSLAB_MODELS"]) / ".WORDSLAB_WINDOWS_MODELS").write_text(folders["models"] + "\n")
        return folders

    def install_wslpath(self) -> Path:
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        script = self.bin_dir / "wslpath"
        script.write_text(_WSLPATH.format(python=sys.executable, mount_root=self.mount_root))
        script.chmod(0o755)
        return script
