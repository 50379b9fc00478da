"""Which hosting platform and OS this VM runs, detected as wordslab-notebooks does it."""
from __future__ import annotations

from pathlib import Path

from common.config import Settings

WSL = "WindowsSubsystemForLinux"
JARVISLABS = "Jarvislabs.ai"
RUNPOD = "Runpod.io"
VASTAI = "Vast.ai"
UNKNOWN_LINUX = "UnknownLinux"

PROC_VERSION = Path("/proc/version")
OS_RELEASE_PATHS = (Path("/etc/os-release"), Path("/usr/lib/os-release"))


def detect_platform(settings: Settings, proc_version: Path = PROC_VERSION) -> str:
    """WORDSLAB_PLATFORM when set, else the platform's own detection order."""
    if settings.platform:
        return settings.platform
    env = settings.env
    try:
        kernel = proc_version.read_text(errors="replace")
    except OSError:
        kernel = ""
    if "microsoft" in kernel.lower():
        return WSL
    if env.get("MACHINE_ID") and env.get("MACHINE_NAME"):
        return JARVISLABS
    if env.get("RUNPOD_POD_ID"):
        return RUNPOD
    if env.get("VAST_TCP_PORT_22"):
        return VASTAI
    return UNKNOWN_LINUX


def parse_os_release(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            fields[key] = value.strip().strip("\"'")
    return fields


def os_version(paths: tuple[Path, ...] | Path = OS_RELEASE_PATHS) -> str:
    """"Ubuntu 24.04" style: NAME and VERSION_ID of os-release, "unknown" if unreadable."""
    for path in (paths,) if isinstance(paths, Path) else paths:
        try:
            fields = parse_os_release(path.read_text(errors="replace"))
        except OSError:
            continue
        name, version = fields.get("NAME", ""), fields.get("VERSION_ID", "")
        if name:
            return f"{name} {version}".strip()
        if fields.get("PRETTY_NAME"):
            return fields["PRETTY_NAME"]
    return "unknown"
