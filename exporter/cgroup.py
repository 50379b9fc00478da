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
        return path.read_text().strip()
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


def read_limits(root: Path = DEFAULT_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP) -> CgroupLimits:
    """The limits and usage of our cgroup under `root` (cgroup v2 when root/cgroup.controllers exists)."""
    paths = own_paths(proc_self_cgroup)
    if (root / "cgroup.controllers").exists():
        levels = _levels(root, paths.get("", "/"))
        usage_usec = _first(_stat_field(_read(d / "cpu.stat"), "usage_usec") for d in levels)
        return CgroupLimits(
            memory_limit_bytes=_lowest(_int(_read(d / "memory.max")) for d in levels),
            memory_usage_bytes=_first(_int(_read(d / "memory.current")) for d in levels),
            cpu_limit=_lowest(_v2_quota(_read(d / "cpu.max")) for d in levels),
            cpu_usage_seconds=usage_usec / 1e6 if usage_usec is not None else None)
    memory = _v1_dir(root, "memory")
    cpu = _v1_dir(root, "cpu", "cpu,cpuacct")
    cpuacct = _v1_dir(root, "cpuacct", "cpu,cpuacct")
    memory_levels = _levels(memory, paths.get("memory", "/")) if memory else []
    cpu_levels = _levels(cpu, paths.get("cpu", "/")) if cpu else []
    acct_levels = _levels(cpuacct, paths.get("cpuacct", "/")) if cpuacct else []
    usage_ns = _first(_int(_read(d / "cpuacct.usage")) for d in acct_levels)
    return CgroupLimits(
        memory_limit_bytes=_lowest(_int(_read(d / "memory.limit_in_bytes")) for d in memory_levels),
        memory_usage_bytes=_first(_int(_read(d / "memory.usage_in_bytes")) for d in memory_levels),
        cpu_limit=_lowest(_v1_quota(d) for d in cpu_levels),
        cpu_usage_seconds=usage_ns / 1e9 if usage_ns is not None else None)
