"""The Windows side of a WSL VM: the ext4.vhdx virtual disks and the drives holding them.

Where wordslab-notebooks' Windows installer (install-wordslab-notebooks.bat and
windows/2_, 3_*.bat) puts them:

- WORDSLAB_WINDOWS_HOME (default C:\\wordslab) is the installation folder; the VM itself,
  holding / and WORDSLAB_HOME, is imported as `<home>\\virtual-machines\\<distro>\\ext4.vhdx`
  (distro: wordslab-notebooks unless installed with --name; WSL sets WSL_DISTRO_NAME).
  Inside the VM the installer writes that VM folder (not the installation folder) to
  `$WORDSLAB_HOME/.WORDSLAB_WINDOWS_HOME`, always naming it wordslab-notebooks.
- WORDSLAB_WINDOWS_WORKSPACE / _MODELS (default `<home>\\virtual-machines\\wordslab-workspace`
  and `...\\wordslab-models`) each hold an ext4.vhdx directly; the installer writes them to
  `.WORDSLAB_WINDOWS_WORKSPACE` / `.WORDSLAB_WINDOWS_MODELS` in the matching Linux directory.

The variables win over the files; each role's candidate folders are tried in order and
the first holding an ext4.vhdx is the one reported. Windows paths become Linux paths
through `wslpath`, else through the /mnt/<letter> automount convention.
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

from common.config import WINDOWS_DIR_VARS, Settings

log = logging.getLogger(__name__)

ROLE_VARS = WINDOWS_DIR_VARS  # also the names of the installer's dot files
# The storage roles backed by a vhdx; / lives in the VM's own disk with WORDSLAB_HOME.
ROLES = ("root", "home", "workspace", "models")
VHDX_NAME = "ext4.vhdx"
DEFAULT_DISTRO = "wordslab-notebooks"
VM_FOLDER = "virtual-machines"
DEFAULT_DISK_FOLDERS = {"workspace": "wordslab-workspace", "models": "wordslab-models"}
# unreachable: the drive is not mounted in the VM (wordslab's wsl.conf turns automount off).
VIRTUAL_DISK_STATES = ("ok", "unset", "invalid", "unreachable", "missing")
DEFAULT_MOUNT_ROOT = Path("/mnt")
_DRIVE_PATH = re.compile(r"^([A-Za-z]):(?:\\|$)")


@dataclass(frozen=True)
class VirtualDisk:
    role: str
    state: str  # one of VIRTUAL_DISK_STATES
    drive: str = ""  # "C:"
    file: str = ""  # Windows path of the ext4.vhdx found, else of the first one looked for
    file_size: int = 0


@dataclass(frozen=True)
class WindowsDrive:
    name: str  # "C:"
    size: int
    used: int
    available: int  # f_bavail * f_frsize, as df's Avail


def normalize(windows_path: str) -> str:
    """`C:/wordslab\\\\virtual-machines/x\\` -> `C:\\wordslab\\virtual-machines\\x`: one separator
    style, no doubled separators (the installer's `echo` can leave them), no trailing one, no
    byte-order mark or surrounding quotes (files rewritten on Windows, cmd's `echo '...'`)."""
    path = re.sub(r"[\\/]+", r"\\", _unquote(windows_path.strip().lstrip("\ufeff").strip()))
    return path if re.fullmatch(r"[A-Za-z]:\\", path) else path.rstrip("\\")


def _unquote(text: str) -> str:
    """The text inside one pair of matching quotes ("..." from a shell, '...' from cmd's echo)."""
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def _decode(data: bytes) -> str:
    """A dot file as Windows tools may have rewritten it: UTF-16 with its BOM (PowerShell's
    Out-File), UTF-8 with or without one (Notepad); undecodable bytes replaced."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16", errors="replace")
    return data.decode("utf-8-sig", errors="replace")


def _dot_file(settings: Settings, role: str) -> str | None:
    linux_dir = {"home": settings.home, "workspace": settings.workspace, "models": settings.models}[role]
    if linux_dir is None:
        return None
    try:
        return normalize(_decode((linux_dir / f".{ROLE_VARS[role]}").read_bytes())) or None
    except OSError:
        return None


def _parent(path: str) -> str:
    return path.rsplit("\\", 1)[0] if "\\" in path else ""


def _name(path: str) -> str:
    return path.rsplit("\\", 1)[-1]


def _installation_folder(settings: Settings) -> str | None:
    """C:\\wordslab: the variable, else the grandparent of the VM folder named in the home file;
    None when neither is a drive-letter path."""
    folder = None
    if settings.windows_dirs["home"]:
        folder = normalize(settings.windows_dirs["home"])
    elif _dot_file(settings, "home"):
        vm_folder = normalize(_dot_file(settings, "home"))
        if _name(_parent(vm_folder)).lower() == VM_FOLDER:
            folder = _parent(_parent(vm_folder))
    return folder if folder and _DRIVE_PATH.match(folder) else None


def candidate_dirs(settings: Settings, role: str) -> list[str]:
    """Windows folders that may hold the role's ext4.vhdx, most likely first; [] when nothing says."""
    distro = settings.get("WSL_DISTRO_NAME") or DEFAULT_DISTRO
    found: list[str] = []
    if role in ("root", "home"):
        if settings.windows_dirs["home"]:
            home = normalize(settings.windows_dirs["home"])
            found += [f"{home}\\{VM_FOLDER}\\{distro}", home]  # the folder itself: set to the VM folder
        vm_folder = _dot_file(settings, "home")
        if vm_folder:
            vm_folder = normalize(vm_folder)
            # The installer writes wordslab-notebooks even for a VM installed under another name.
            found += [vm_folder, f"{_parent(vm_folder)}\\{distro}"]
    else:
        found += [normalize(v) for v in (settings.windows_dirs[role], _dot_file(settings, role)) if v]
        installation = _installation_folder(settings)
        if installation:
            found.append(f"{installation}\\{VM_FOLDER}\\{DEFAULT_DISK_FOLDERS[role]}")
    return list(dict.fromkeys(found))


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


def _find_vhdx(role: str, directories: list[str], translator: PathTranslator) -> VirtualDisk:
    first: VirtualDisk | None = None
    for directory in directories:
        match = _DRIVE_PATH.match(directory)
        if not match:
            log.debug("%s: %r is not a Windows path with a drive letter", role, directory)
            first = first or VirtualDisk(role, "invalid", file=directory)
            continue
        drive = match.group(1).upper() + ":"
        file = directory.rstrip("\\") + "\\" + VHDX_NAME
        try:
            size = os.stat(translator.to_linux(file)).st_size
        except OSError:
            reachable = os.path.isdir(translator.to_linux(drive + "\\"))
            first = first or VirtualDisk(role, "missing" if reachable else "unreachable", drive, file)
            continue
        return VirtualDisk(role, "ok", drive, file, size)
    return first or VirtualDisk(role, "unset")


def read_windows_side(settings: Settings, translator: PathTranslator) -> tuple[list[VirtualDisk], list[WindowsDrive]]:
    """Each role's vhdx (found, or the first one looked for and why it is not usable) and the
    size of each drive holding one. Never raises: a problem is a role's state."""
    disks, drives = [], {}
    for role in ROLES:
        disk = _find_vhdx(role, candidate_dirs(settings, role), translator)
        disks.append(disk)
        if disk.state != "ok" or disk.drive in drives:
            continue
        try:
            usage = psutil.disk_usage(str(translator.to_linux(disk.drive + "\\")))
            drives[disk.drive] = WindowsDrive(disk.drive, usage.total, usage.used, usage.free)
        except OSError as exc:
            log.debug("size of Windows drive %s unknown: %s", disk.drive, exc)
    return disks, list(drives.values())
