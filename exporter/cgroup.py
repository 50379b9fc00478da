"""Memory and CPU limits of the cgroup the exporter runs in, and what it uses of them.

Cloud GPU "machines" on Runpod or Vast.ai are containers: /proc/meminfo and /proc/stat show
the host (25 GB, 64 cores) while the container may use 4 GiB and 2 cores. The limits live in
the cgroup files: cgroup v2 `memory.max`, `memory.current`, `cpu.max`, `cpu.stat`; cgroup v1
`memory/memory.limit_in_bytes`, `memory/memory.usage_in_bytes`, `cpu/cpu.cfs_quota_us` and
`cpu.cfs_period_us`, `cpuacct/cpuacct.usage`. Our cgroup's directory comes from
/proc/self/cgroup; where a container shows the host's path under its own mount (no cgroup
namespace), the mount's root is our cgroup. A limit counts at every level up to the root, so
the lowest one applies. Missing or unreadable files mean no limit, never an error.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

DEFAULT_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class CgroupLimits:
    memory_limit_bytes: int | None = None  # None: no limit
    memory_usage_bytes: int | None = None  # the cgroup's own usage (page cache included, as the kernel counts it)
    cpu_limit: float | None = None  # cores the CPU quota allows (quota / period), None: no quota
    cpu_usage_seconds: float | None = None  # CPU time the cgroup used, for a usage ratio between scrapes


def own_paths(proc_self_cgroup: Path = PROC_SELF_CGROUP) -> dict[str, str]:
    """Controller -> our cgroup path, from "hierarchy:controllers:path" lines ("" is cgroup v2)."""
    paths: dict[str, str] = {}
    try:
        lines = proc_self_cgroup.read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                paths.setdefault(controller, parts[2])
    return paths


def _levels(base: Path, path: str) -> list[Path]:
    """Our cgroup's directory under `base` and its parents up to `base`, deepest first."""
    parts = [p for p in PurePosixPath(path or "/").parts if p != "/"]
    levels = [base.joinpath(*parts[:depth]) for depth in range(len(parts), 0, -1)]
    return [d for d in levels if d.is_dir()] + [base]


def _read(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:  # bytes: half the cost of read_text, read twice per scrape
            return fh.read().decode("ascii", "replace").strip()
    except (OSError, ValueError):
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None  # "max" (v2 unlimited) or garbage


def _lowest(values) -> int | float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _first(values):
    return next((v for v in values if v is not None), None)


def _v2_quota(text: str | None) -> float | None:
    """`cpu.max` "quota period" ("max 100000" is no quota) -> cores."""
    fields = (text or "").split()
    quota, period = (_int(fields[0]), _int(fields[1])) if len(fields) == 2 else (None, None)
    return quota / period if quota and period and quota > 0 else None


def _v1_quota(directory: Path) -> float | None:
    quota, period = _int(_read(directory / "cpu.cfs_quota_us")), _int(_read(directory / "cpu.cfs_period_us"))
    return quota / period if quota and period and quota > 0 else None  # -1: no quota


def _stat_field(text: str | None, key: str) -> int | None:
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return _int(value.strip())
    return None


def _v1_dir(root: Path, *names: str) -> Path | None:
    """A v1 controller's mount: `cpu`, or the combined `cpu,cpuacct` some distributions mount."""
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def _v2_levels(root: Path, proc_self_cgroup: Path) -> list[Path] | None:
    """Our cgroup v2 directory and its parents, or None on a cgroup v1 machine."""
    if not (root / "cgroup.controllers").exists():
        return None
    return _levels(root, own_paths(proc_self_cgroup).get("", "/"))


def _v1_levels(root: Path, proc_self_cgroup: Path, *mounts: str) -> list[Path]:
    """Our cgroup v1 directory and its parents under the first of `mounts` that exists."""
    base = _v1_dir(root, *mounts)
    if base is None:
        return []
    return _levels(base, own_paths(proc_self_cgroup).get(mounts[0], "/"))


def memory_limits(root: Path = DEFAULT_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP) -> CgroupLimits:
    """Memory limit and usage of our cgroup under `root` (cgroup v2 when root/cgroup.controllers
    exists, else v1's memory controller); the CPU fields stay None."""
    levels = _v2_levels(root, proc_self_cgroup)
    if levels is not None:
        return CgroupLimits(memory_limit_bytes=_lowest(_int(_read(d / "memory.max")) for d in levels),
                            memory_usage_bytes=_first(_int(_read(d / "memory.current")) for d in levels))
    levels = _v1_levels(root, proc_self_cgroup, "memory")
    return CgroupLimits(
        memory_limit_bytes=_lowest(_int(_read(d / "memory.limit_in_bytes")) for d in levels),
        memory_usage_bytes=_first(_int(_read(d / "memory.usage_in_bytes")) for d in levels))


def cpu_limits(root: Path = DEFAULT_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP) -> CgroupLimits:
    """CPU quota and usage of our cgroup under `root` (cgroup v2 when root/cgroup.controllers
    exists, else v1's cpu and cpuacct controllers); the memory fields stay None."""
    levels = _v2_levels(root, proc_self_cgroup)
    if levels is not None:
        usage_usec = _first(_stat_field(_read(d / "cpu.stat"), "usage_usec") for d in levels)
        return CgroupLimits(cpu_limit=_lowest(_v2_quota(_read(d / "cpu.max")) for d in levels),
                            cpu_usage_seconds=usage_usec / 1e6 if usage_usec is not None else None)
    cpu_levels = _v1_levels(root, proc_self_cgroup, "cpu", "cpu,cpuacct")
    usage_ns = _first(_int(_read(d / "cpuacct.usage"))
                      for d in _v1_levels(root, proc_self_cgroup, "cpuacct", "cpu,cpuacct"))
    return CgroupLimits(cpu_limit=_lowest(_v1_quota(d) for d in cpu_levels),
                        cpu_usage_seconds=usage_ns / 1e9 if usage_ns is not None else None)

