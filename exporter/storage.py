"""Where the VM's storage roles live: role path -> mount -> disk.

Roles are `/` (root) and WORDSLAB_HOME, WORDSLAB_WORKSPACE, WORDSLAB_MODELS. A path's
filesystem is identified by its st_dev; /sys/dev/block names the block device behind
it (vda1, dm-0, sdc). Filesystems without one (overlay, tmpfs, 9p) are named by the
mount table's device. The result is computed in the background: it walks the mount
table, which is too slow for the scrape path on machines with many mounts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Mapping, Sequence

from common.config import Settings

ROLES = ("root", "home", "workspace", "models")
PATH_STATES = ("ok", "unset", "missing", "unreadable")
SYS_DEV_BLOCK = Path("/sys/dev/block")


@dataclass(frozen=True)
class RolePath:
    role: str
    path: str  # "" when the role's variable is unset
    state: str  # one of PATH_STATES
    disk: str  # "" unless state == "ok"


@dataclass(frozen=True)
class Disk:
    name: str
    usage_path: str  # a path on the filesystem, for statvfs
    io_name: str | None  # key in psutil.disk_io_counters(perdisk=True), None if the kernel has none


@dataclass(frozen=True)
class StorageLayout:
    paths: tuple[RolePath, ...]
    disks: tuple[Disk, ...]


def role_paths(settings: Settings) -> dict[str, Path | None]:
    # In a container the host's / is bind-mounted elsewhere (compose.yaml: /host/root).
    root = settings.root_path
    return {"root": root, "home": settings.home, "workspace": settings.workspace,
            "models": settings.models}


def _path_state(path: Path | None) -> tuple[str, os.stat_result | None]:
    if path is None:
        return "unset", None
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "missing", None
    except OSError:  # permission denied, symlink loop, I/O error
        return "unreadable", None
    if not os.access(path, os.R_OK | os.X_OK):
        return "unreadable", None
    return "ok", st


def _mount_of(path: str, mounts: Sequence[tuple[str, str]]) -> tuple[str, str] | None:
    """The (mountpoint, device) with the longest mountpoint containing path."""
    best = None
    for mountpoint, device in mounts:
        inside = path == mountpoint or path.startswith(mountpoint.rstrip("/") + "/")
        if inside and (best is None or len(mountpoint) > len(best[0])):
            best = (mountpoint, device)
    return best


class DiskNamer:
    """Names the disk behind a filesystem, and where its I/O counters are."""

    def __init__(self, mounts: Sequence[tuple[str, str]], io_names: Collection[str],
                 sys_dev_block: Path = SYS_DEV_BLOCK):
        self.mounts = mounts
        self.io_names = io_names
        self.sys_dev_block = sys_dev_block
        self._names_by_dev: dict[int, str] = {}

    def block_device(self, st_dev: int) -> tuple[str, str | None] | None:
        link = self.sys_dev_block / f"{os.major(st_dev)}:{os.minor(st_dev)}"
        try:
            target = link.resolve(strict=True)
        except OSError:
            return None
        name = target.name
        if name in self.io_names:
            return name, name
        # A partition (vda1) whose own counters are missing: use its disk's (vda).
        parent = target.parent.name
        return name, parent if parent in self.io_names else None

    def name(self, path: str, st_dev: int) -> tuple[str, str | None]:
        block = self.block_device(st_dev)
        if block is not None:
            return block
        mount = _mount_of(path, self.mounts)
        device = mount[1] if mount else f"dev-{os.major(st_dev)}:{os.minor(st_dev)}"
        name = device.removeprefix("/dev/") if device.startswith("/dev/") else device
        # Two different filesystems of one pseudo device ("tmpfs") stay two disks.
        taken = {n for dev, n in self._names_by_dev.items() if dev != st_dev}
        if name in taken and mount:
            name = f"{name}:{mount[0]}"
        self._names_by_dev[st_dev] = name
        return name, name if name in self.io_names else None


def map_storage(roles: Mapping[str, Path | None], mounts: Sequence[tuple[str, str]],
                io_names: Collection[str], sys_dev_block: Path = SYS_DEV_BLOCK) -> StorageLayout:
    namer = DiskNamer(mounts, io_names, sys_dev_block)
    paths, disks = [], {}
    for role, path in roles.items():
        state, st = _path_state(path)
        if st is None:
            paths.append(RolePath(role, str(path) if path else "", state, ""))
            continue
        real = os.path.realpath(path)
        name, io_name = namer.name(real, st.st_dev)
        disks.setdefault(name, Disk(name, real, io_name))
        paths.append(RolePath(role, str(path), state, name))
    return StorageLayout(tuple(paths), tuple(disks.values()))


def current_mounts() -> list[tuple[str, str]]:
    import psutil
    return [(p.mountpoint, p.device) for p in psutil.disk_partitions(all=True)]


def io_counters() -> dict:
    """psutil's per-disk I/O counters, {} where the kernel gives none (some containers)."""
    import psutil
    try:
        return psutil.disk_io_counters(perdisk=True) or {}
    except (OSError, RuntimeError, ValueError):
        return {}
