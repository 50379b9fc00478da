"""Storage roles (/, home, workspace, models), the disks they live on, and on WSL the Windows side.

The role -> disk mapping (and the Windows side, reached over WSL's slow 9p mounts) is
refreshed in the background; a scrape only does statvfs per disk and reads /proc/diskstats.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from common.background import BackgroundSource
from common.config import Settings
from exporter.platform import WSL, detect_platform
from exporter.storage import (PATH_STATES, SYS_DEV_BLOCK, StorageLayout, current_mounts, io_counters,
                       map_storage, role_paths)
from exporter.wsl import (DEFAULT_MOUNT_ROOT, VIRTUAL_DISK_STATES, PathTranslator, VirtualDisk, WindowsDrive,
                   read_windows_side)
from exporter.collectors.base import PREFIX, WordslabCollector, add_state_set

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StorageView:
    layout: StorageLayout
    virtual_disks: tuple[VirtualDisk, ...] = ()
    windows_drives: tuple[WindowsDrive, ...] = ()


class StorageCollector(WordslabCollector):
    name = "storage"

    def __init__(self, settings: Settings, *, sys_dev_block: Path = SYS_DEV_BLOCK,
                 wsl_mount_root: Path = DEFAULT_MOUNT_ROOT):
        super().__init__(settings)
        self.sys_dev_block = sys_dev_block
        self.translator = (PathTranslator(settings.get("PATH"), wsl_mount_root)
                           if detect_platform(settings) == WSL else None)
        self.layout_source = BackgroundSource("storage_layout", self.read_view,
                                              settings.slow_refresh_interval_seconds)
        self.sources.append(self.layout_source)

    def read_view(self) -> StorageView:
        layout = map_storage(role_paths(self.settings), current_mounts(), set(io_counters()),
                             self.sys_dev_block)
        if self.translator is None:
            return StorageView(layout)
        virtual_disks, drives = read_windows_side(self.settings, self.translator)
        return StorageView(layout, tuple(virtual_disks), tuple(drives))

    def collect_metrics(self) -> Iterable[Metric]:
        path_info = GaugeMetricFamily(
            PREFIX + "storage_path_info",
            "Always 1: path of each storage role (root, home, workspace, models) and its disk; "
            "path is empty when the role's variable is unset, disk is empty when the path is not usable.",
            labels=["role", "path", "disk"])
        path_state = GaugeMetricFamily(
            PREFIX + "storage_path_state",
            "1 for the current state of each storage role's path: ok, unset (variable not set), "
            "missing (does not exist) or unreadable; 0 for the other states.",
            labels=["role", "state"])
        size = GaugeMetricFamily(PREFIX + "disk_size_bytes",
                                 "Size of the filesystem on the disk (a Windows drive like C: on WSL).",
                                 labels=["disk"])
        used = GaugeMetricFamily(PREFIX + "disk_used_bytes",
                                 "Bytes used on the disk's filesystem (blocks - free blocks, as df's Used).",
                                 labels=["disk"])
        available = GaugeMetricFamily(
            PREFIX + "disk_available_bytes",
            "Bytes unprivileged users can still write (statvfs f_bavail * f_frsize, as df's Avail): "
            "size minus used minus the blocks reserved for root. Full means used / (used + available) = 1.",
            labels=["disk"])
        read = CounterMetricFamily(PREFIX + "disk_read_bytes", "Bytes read from the disk.", labels=["disk"])
        written = CounterMetricFamily(PREFIX + "disk_written_bytes", "Bytes written to the disk.",
                                      labels=["disk"])
        view: StorageView | None = self.layout_source.snapshot().value
        if view is not None:
            for path in view.layout.paths:
                path_info.add_metric([path.role, path.path, path.disk], 1)
                add_state_set(path_state, [path.role], PATH_STATES, path.state)
            io = io_counters() if view.layout.disks else {}
            for disk in view.layout.disks:
                try:
                    usage = psutil.disk_usage(disk.usage_path)
                except OSError as exc:  # vanished since the last layout refresh
                    log.debug("disk %s: %s", disk.name, exc)
                else:
                    size.add_metric([disk.name], usage.total)
                    used.add_metric([disk.name], usage.used)
                    available.add_metric([disk.name], usage.free)  # psutil: f_bavail * f_frsize
                counters = io.get(disk.io_name) if disk.io_name else None
                if counters is not None:
                    read.add_metric([disk.name], counters.read_bytes)
                    written.add_metric([disk.name], counters.write_bytes)
            for drive in view.windows_drives:
                size.add_metric([drive.name], drive.size)
                used.add_metric([drive.name], drive.used)
                available.add_metric([drive.name], drive.available)
        yield from (path_info, path_state, size, used, available, read, written)
        if self.translator is not None:
            yield from self._windows_families(view)

    def _windows_families(self, view: StorageView | None) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            PREFIX + "virtual_disk_info",
            "WSL only, always 1: the ext4.vhdx holding each storage role (root and home share the VM's "
            "own) and the Windows drive (disk) it is on; when the state is not ok, the first file looked "
            "for (empty when unset).",
            labels=["role", "disk", "file"])
        vhdx = GaugeMetricFamily(
            PREFIX + "virtual_disk_size_bytes",
            "WSL only: size of the VM's ext4.vhdx file on the Windows drive (disk) holding it.",
            labels=["disk", "file"])
        state = GaugeMetricFamily(
            PREFIX + "virtual_disk_state",
            "WSL only: 1 for the current state of each role's ext4.vhdx: ok, unset (no "
            "WORDSLAB_WINDOWS_<ROLE> variable or file), invalid (not a drive-letter path), unreachable "
            "(its drive is not mounted in the VM) or missing (no ext4.vhdx where expected).",
            labels=["role", "state"])
        files = set()
        for disk in view.virtual_disks if view else ():
            info.add_metric([disk.role, disk.drive, disk.file], 1)
            if disk.state == "ok" and disk.file not in files:  # two roles may share one VM disk
                files.add(disk.file)
                vhdx.add_metric([disk.drive, disk.file], disk.file_size)
            add_state_set(state, [disk.role], VIRTUAL_DISK_STATES, disk.state)
        yield from (info, vhdx, state)
