"""The Windows side of a WSL VM: the ext4.vhdx virtual disks and the drives holding them.

wordslab-notebooks keeps each VM disk as `<dir>\\ext4.vhdx` on Windows, where <dir> is
WORDSLAB_WINDOWS_HOME / _WORKSPACE / _MODELS, or, when those variables are not set in
the VM, the content of the `.WORDSLAB_WINDOWS_<ROLE>` file it writes in the matching
Linux directory. Windows paths become Linux paths through `wslpath`, else through the
/mnt/<letter> automount convention.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

from common.config import Settings

log = logging.getLogger(__name__)

ROLE_VARS = {"home": "WORDSLAB_WINDOWS_HOME", "workspace": "WORDSLAB_WINDOWS_WORKSPACE",
             "models": "WORDSLAB_WINDOWS_MODELS"}
VHDX_NAME = "ext4.vhdx"
VIRTUAL_DISK_STATES = ("ok", "unset", "invalid", "missing")
DEFAULT_MOUNT_ROOT = Path("/mnt")
_DRIVE_PATH = re.compile(r"^([A-Za-z]):(?:[\\/]|$)")


@dataclass(frozen=True)
class VirtualDisk:
    role: str
    state: str  # one of VIRTUAL_DISK_STATES
    drive: str = ""  # "C:"
    file: str = ""  # Windows path of the ext4.vhdx
    file_size: int = 0


@dataclass(frozen=True)
class WindowsDrive:
    name: str  # "C:"
    size: int
    used: int


def windows_dir(settings: Settings, role: str) -> str | None:
    var = ROLE_VARS[role]
    if settings.get(var):
        return settings.get(var).strip()
    linux_dir = {"home": settings.home, "workspace": settings.workspace, "models": settings.models}[role]
    if linux_dir is None:
        return None
    try:
        return (linux_dir / f".{var}").read_text(errors="replace").strip() or None
    except OSError:
        return None


class PathTranslator:
    """Windows path -> Linux path; answers are cached since the mapping never changes."""

    def __init__(self, search_path: str | None, mount_root: Path = DEFAULT_MOUNT_ROOT):
        self.wslpath = shutil.which("wslpath", path=search_path)
        self.mount_root = mount_root
        self._cache: dict[str, Path] = {}

    def to_linux(self, windows_path: str) -> Path:
        if windows_path not in self._cache:
            self._cache[windows_path] = self._translate(windows_path)
        return self._cache[windows_path]

    def _translate(self, windows_path: str) -> Path:
        if self.wslpath:
            try:
                done = subprocess.run([self.wslpath, "-u", windows_path], capture_output=True,
                                      text=True, timeout=5, check=True)
                if done.stdout.strip():
                    return Path(done.stdout.strip())
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("wslpath failed for %s, using %s: %s", windows_path, self.mount_root, exc)
        letter, rest = windows_path[0].lower(), windows_path[2:].replace("\\", "/").strip("/")
        return self.mount_root / letter / rest


def read_windows_side(settings: Settings, translator: PathTranslator) -> tuple[list[VirtualDisk], list[WindowsDrive]]:
    disks, drives = [], {}
    for role in ROLE_VARS:
        directory = windows_dir(settings, role)
        if not directory:
            disks.append(VirtualDisk(role, "unset"))
            continue
        match = _DRIVE_PATH.match(directory)
        if not match:
            log.warning("%s is not a Windows path with a drive letter: %r", ROLE_VARS[role], directory)
            disks.append(VirtualDisk(role, "invalid"))
            continue
        drive = match.group(1).upper() + ":"
        file = directory.replace("/", "\\").rstrip("\\") + "\\" + VHDX_NAME
        try:
            size = os.stat(translator.to_linux(file)).st_size
        except OSError:
            disks.append(VirtualDisk(role, "missing", drive, file))
            continue
        disks.append(VirtualDisk(role, "ok", drive, file, size))
        if drive not in drives:
            try:
                usage = psutil.disk_usage(str(translator.to_linux(drive + "\\")))
                drives[drive] = WindowsDrive(drive, usage.total, usage.used)
            except OSError as exc:
                log.warning("size of Windows drive %s unknown: %s", drive, exc)
    return disks, list(drives.values())
