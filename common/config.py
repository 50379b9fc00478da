"""Settings of every process: the VM's environment, read here and only here, overridable by flags.

Modules read typed fields and properties of Settings; only this module reads os.environ (a
module may still hand `settings.env` whole to a child process).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

log = logging.getLogger(__name__)

DEFAULT_LISTEN_ADDRESS = "127.0.0.1:9877"
GRAFANA_OFF = "off"
DEFAULT_ALERTMANAGER_URL = "http://127.0.0.1:9093"
DEFAULT_PROMETHEUS_URL = "http://127.0.0.1:9090"
DEFAULT_ADMIN_URL = "http://127.0.0.1:9878"
DEFAULT_GRAFANA_URL = "http://127.0.0.1:3000"


def _path_or_none(value: str | None) -> Path | None:
    return Path(value) if value else None


@dataclass(frozen=True)
class Settings:
    """Everything a collector may need, read once at start-up.

    `env` keeps the whole environment snapshot so collectors that need other
    variables (ports, URLs, provider keys) read them from one place and tests can
    pass a dict instead of mutating os.environ.
    """

    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    listen_address: str = DEFAULT_LISTEN_ADDRESS
    # Where the exporter keeps small state across restarts (network max rates...).
    state_dir: Path | None = None
    db_path: Path | None = None
    # 30 min: fetching every project is the largest part of an idle machine's cost (README,
    # Performance: 0.14 % of a core per 15 min at 200 projects); GitHub Desktop fetches hourly.
    git_fetch_interval_seconds: float = 1800.0
    slow_refresh_interval_seconds: float = 30.0
    # Full re-read of watched projects and model caches, the safety net behind file events.
    sweep_interval_seconds: float = 900.0
    # Downloads kept across installs (the Grafana tarball and its unpacked copy).
    cache_dir: Path | None = None
    # Where the pinned Grafana tarball is fetched from (None: Grafana's own download site).
    grafana_download_url: str | None = None
    # A Grafana tarball already on disk, for machines without network.
    grafana_tarball: Path | None = None
    # Alerts and autostop (admin): where Alertmanager, Prometheus and the admin itself answer
    # (Alertmanager posts Teams/ntfy notifications to the admin's relay), how often autostop
    # checks the VMs, and a factor on its windows (0.01 turns 30 min into 18 s; tests only).
    alertmanager_url: str = DEFAULT_ALERTMANAGER_URL
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    admin_url: str = DEFAULT_ADMIN_URL
    autostop_interval_seconds: float = 60.0
    autostop_time_scale: float = 1.0
    # The front door (nginx): where it listens, the URL the user's browser opens it at (None:
    # the platform's public URL for the port, common.urls.dashboard_url), the docs it serves.
    door_host: str = "0.0.0.0"
    dashboard_port: int = 8888
    public_url: str | None = None
    docs_dir: Path | None = None
    # Where the cgroup file system is mounted: memory and CPU limits of a container (Runpod, Vast).
    cgroup_root: Path = Path("/sys/fs/cgroup")
    # Tunables read from TUNABLE_VARS below (each also a flag and a README line).
    # Where the host's / is seen (compose mounts it at /host/root).
    root_path: Path = Path("/")
    # Where Grafana listens (loopback): the exporter probes it as an app and the admin checks its
    # health there (the admin's links go to the door's Grafana). GRAFANA_OFF: not part of this
    # stack (`up` started none), so nothing probes it and no app-down alert can fire for it.
    grafana_url: str = DEFAULT_GRAFANA_URL
    # The admin's file_sd directory (None: <state_dir>/prometheus/targets/dynamic).
    prometheus_targets_dir: Path | None = None
    # The alertmanager.yml the admin writes (None: <state_dir>/alertmanager/alertmanager.yml).
    alertmanager_config: Path | None = None
    # This machine's exporter as Prometheus scrapes it (its `instance`): the admin gives the vLLM
    # servers it starts the same instance label, so dashboards show them with their machine.
    exporter_address: str = DEFAULT_LISTEN_ADDRESS
    # Seconds; None means the module's default (a VM status interval set in the admin wins).
    vm_provider_timeout_seconds: float | None = None
    vm_status_interval_seconds: float | None = None
    endpoint_status_interval_seconds: float | None = None
    # Set instead of a generated admin password (no flag: a command line is visible in `ps`).
    admin_password: str | None = field(default=None, repr=False)
    # A system Grafana's home (share) directory, for the runner.
    grafana_home: Path = Path("/usr/share/grafana")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, set_vars: Mapping[str, str] | None = None,
                 **overrides) -> "Settings":
        """Settings from `env` (default os.environ) plus `set_vars` (variables given as flags, which
        win); `overrides` are field values from flags and win over both. A tunable with an unusable
        value is logged and left at its default."""
        env = dict(os.environ if env is None else env)
        env.update({k: v for k, v in (set_vars or {}).items() if v is not None})
        overrides = {k: v for k, v in overrides.items() if v is not None}
        for name, (var, parse) in TUNABLE_VARS.items():
            if name not in overrides and env.get(var):
                value = parse(var, env[var])
                if value is not None:
                    overrides[name] = value
        state_dir = overrides.pop("state_dir", None) or _default_state_dir(env)
        db_path = overrides.pop("db_path", None) or default_db_path(env)
        cache_dir = overrides.pop("cache_dir", None) or _default_cache_dir(env)
        overrides.setdefault("grafana_download_url", env.get("WORDSLAB_DASHBOARD_GRAFANA_DOWNLOAD_URL") or None)
        overrides.setdefault("grafana_tarball", _path_or_none(env.get("WORDSLAB_DASHBOARD_GRAFANA_TARBALL")))
        overrides.setdefault("door_host", env.get("WORDSLAB_DASHBOARD_LISTEN_HOST") or "0.0.0.0")
        port = env.get("DASHBOARD_PORT") or ""
        overrides.setdefault("dashboard_port", int(port) if port.isdigit() and 0 < int(port) < 65536 else 8888)
        overrides.setdefault("public_url", env.get("WORDSLAB_DASHBOARD_PUBLIC_URL") or None)
        overrides.setdefault("docs_dir", _path_or_none(env.get("WORDSLAB_DASHBOARD_DOCS_DIR")))
        # Relative paths are the caller's working directory's, made absolute once: the processes
        # `up` starts (nginx above all) and their messages need them whole.
        for name in ("grafana_tarball", "docs_dir"):
            if overrides.get(name) is not None:
                overrides[name] = Path(overrides[name]).absolute()
        return cls(env=env, state_dir=Path(state_dir).absolute(), db_path=Path(db_path).absolute(),
                   cache_dir=Path(cache_dir).absolute(), **overrides)

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.env.get(name)
        return value if value not in (None, "") else default

    @property
    def platform(self) -> str | None:
        return self.get("WORDSLAB_PLATFORM")

    @property
    def version(self) -> str | None:
        return self.get("WORDSLAB_VERSION")

    @property
    def home(self) -> Path | None:
        return _path_or_none(self.get("WORDSLAB_HOME"))

    @property
    def workspace(self) -> Path | None:
        return _path_or_none(self.get("WORDSLAB_WORKSPACE"))

    @property
    def models(self) -> Path | None:
        return _path_or_none(self.get("WORDSLAB_MODELS"))

    @property
    def notebooks_env(self) -> Path | None:
        return _path_or_none(self.get("WORDSLAB_NOTEBOOKS_ENV"))

    @property
    def root_url(self) -> str | None:
        return self.get("WORDSLAB_ROOT_URL")

    @property
    def windows_dirs(self) -> dict[str, str | None]:
        """On WSL, the Windows folders behind home/workspace/models, as wordslab-notebooks sets them."""
        return {role: self.get(var) for role, var in WINDOWS_DIR_VARS.items()}


WINDOWS_DIR_VARS = {"home": "WORDSLAB_WINDOWS_HOME", "workspace": "WORDSLAB_WINDOWS_WORKSPACE",
                    "models": "WORDSLAB_WINDOWS_MODELS"}


def _non_negative(var: str, value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0:  # also refuses nan
        log.warning("%s=%r is not a number >= 0: the default is used", var, value)
        return None
    return number


def _positive(var: str, value: str) -> float | None:
    number = _non_negative(var, value)
    if number == 0:
        log.warning("%s=%r is not a number > 0: the default is used", var, value)
        return None
    return number


def _finite_positive(var: str, value: str) -> float | None:
    number = _positive(var, value)
    if number == float("inf"):
        log.warning("%s=%r is not a finite number: the default is used", var, value)
        return None
    return number


def _path(var: str, value: str) -> Path:
    return Path(value)


def _text(var: str, value: str) -> str:
    return value


# Settings field -> (environment variable, parser).
TUNABLE_VARS = {
    "root_path": ("WORDSLAB_DASHBOARD_ROOT_PATH", _path),
    "alertmanager_url": ("WORDSLAB_ALERTMANAGER_URL", _text),
    "admin_url": ("WORDSLAB_ADMIN_URL", _text),
    "grafana_url": ("WORDSLAB_GRAFANA_URL", _text),
    "prometheus_url": ("WORDSLAB_PROMETHEUS_URL", _text),
    "exporter_address": ("WORDSLAB_EXPORTER_ADDRESS", _text),
    "prometheus_targets_dir": ("WORDSLAB_PROMETHEUS_TARGETS_DIR", _path),
    "alertmanager_config": ("WORDSLAB_ALERTMANAGER_CONFIG", _path),
    "vm_provider_timeout_seconds": ("WORDSLAB_VM_PROVIDER_TIMEOUT_SECONDS", _non_negative),
    "vm_status_interval_seconds": ("WORDSLAB_VM_STATUS_INTERVAL_SECONDS", _non_negative),
    "endpoint_status_interval_seconds": ("WORDSLAB_ENDPOINT_STATUS_INTERVAL_SECONDS", _non_negative),
    "autostop_interval_seconds": ("WORDSLAB_AUTOSTOP_INTERVAL_SECONDS", _non_negative),
    "autostop_time_scale": ("WORDSLAB_AUTOSTOP_TIME_SCALE", _finite_positive),
    "cgroup_root": ("WORDSLAB_DASHBOARD_CGROUP_ROOT", _path),
    "admin_password": ("WORDSLAB_DASHBOARD_ADMIN_PASSWORD", _text),
    "grafana_home": ("GRAFANA_HOME", _path),
    "sweep_interval_seconds": ("WORDSLAB_DASHBOARD_SWEEP_INTERVAL", _positive),
    "git_fetch_interval_seconds": ("WORDSLAB_GIT_FETCH_INTERVAL_SECONDS", _non_negative),
}


def _dashboard_dir(env: Mapping[str, str]) -> Path:
    # Beside the platform's other app data (.openwebui, .jupyter) in the workspace.
    base = env.get("WORDSLAB_WORKSPACE") or env.get("HOME") or "."
    return Path(base) / ".wordslab-dashboard"


def _default_state_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("WORDSLAB_DASHBOARD_STATE_DIR") or _dashboard_dir(env))


def _default_cache_dir(env: Mapping[str, str]) -> Path:
    if env.get("WORDSLAB_DASHBOARD_CACHE_DIR"):
        return Path(env["WORDSLAB_DASHBOARD_CACHE_DIR"])
    xdg = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or ".") / ".cache")
    return Path(xdg) / "wordslab-dashboard"


def default_db_path(env: Mapping[str, str]) -> Path:
    return Path(env.get("WORDSLAB_DASHBOARD_DB") or _dashboard_dir(env) / "dashboard.db")


# The usual spellings of the proxy variables urllib reads (common/http_client.py keeps its
# proxies until one of these changes: urllib's own read scans the whole environment).
PROXY_VARIABLES = tuple(f"{name}_proxy" for name in ("http", "https", "all", "no")) + \
    tuple(f"{name}_PROXY" for name in ("HTTP", "HTTPS", "ALL", "NO"))


def proxy_variables() -> tuple[str | None, ...]:
    """The values of PROXY_VARIABLES in this process's environment now (None: unset)."""
    return tuple(os.environ.get(name) for name in PROXY_VARIABLES)


def parse_listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"listen address must be HOST:PORT with a port 1-65535, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)
