"""Links to the VM's apps and whether each one answers (section 2.1).

Which apps exist is read once from the VM's *_PORT / *_URL variables. An app whose
variables are unset is "not configured": `wordslab_app_configured` 0, empty url/ports,
and no `wordslab_app_up` series (not down). Probes run in parallel in the background.

Most apps have a default port, so "configured" does not mean the app is there. The
app-down alert therefore also needs `wordslab_app_seen_up` (the app answered once on this
machine, remembered across exporter restarts in the state directory) and no
`wordslab_app_installed` 0 (its install folder gone).
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable
from urllib.parse import urlsplit

from prometheus_client.core import GaugeMetricFamily, Metric

from common import http_client
from common.background import BackgroundSource
from common.config import GRAFANA_OFF, TUNABLE_VARS, Settings
from common.sources.ollama_client import resolve_ollama
from common.urls import dashboard_url, public_port, public_port_url, public_url
from exporter.state_file import save_json
from exporter.collectors.base import PREFIX, WordslabCollector

log = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 2.0
PROBE_INTERVAL_SECONDS = 10.0
_ANY_ADDRESS = ("", "0.0.0.0", "::", "[::]")

# (app, port variable, the platform's default port, URL variable)
VM_APPS = (
    ("jupyterlab", "JUPYTERLAB_PORT", 8880, "JUPYTERLAB_URL"),
    ("vscode", "VSCODE_PORT", 8881, "VSCODE_URL"),
    ("openwebui", "OPENWEBUI_PORT", 8882, "OPENWEBUI_URL"),
    ("hermes-agent", "HERMESAGENT_PORT", 8883, "HERMESAGENT_URL"),
    *((f"user-app{n}", f"USER_APP{n}_PORT", 8883 + n, f"USER_APP{n}_URL") for n in range(1, 5)),
    ("dashboard", "DASHBOARD_PORT", 8888, "DASHBOARD_URL"),
)
# Where wordslab-notebooks installs an app (linux/_wordslab-notebooks-env.bashrc): the variable
# naming the folder, else its folder under WORDSLAB_HOME; apps not listed cannot be told.
INSTALL_DIRS = {"jupyterlab": ("JUPYTERLAB_ENV", "jupyterlab"), "vscode": ("VSCODE_DIR", "code-server"),
                "openwebui": ("OPENWEBUI_ENV", "open-webui"), "ollama": ("OLLAMA_DIR", "ollama")}
SEEN_UP_FILE = "apps_seen_up.json"
# This project's own services: (app, Settings field of the URL probed on loopback, path behind
# the front door). Users open them through the door: the link is the door's public URL + path.
SERVICE_APPS = (("admin", "admin_url", "/admin/"), ("grafana", "grafana_url", "/"),
                ("prometheus", "prometheus_url", "/prometheus/"))


@dataclass(frozen=True)
class App:
    app: str
    url: str  # link for users, "" when not configured
    port_var: str
    internal_port: str
    external_port: str
    probe_url: str | None  # None when not configured

    @property
    def configured(self) -> bool:
        return self.probe_url is not None


def _port(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit() or not 0 < int(value) < 65536:
        return None
    return int(value)


def _external_port(settings: Settings, internal: int) -> int:
    return public_port(settings.env, internal) or internal


def vm_app(settings: Settings, app: str, port_var: str, default_port: int, url_var: str) -> App:
    port_value, url_value = settings.get(port_var), settings.get(url_var)
    internal = _port(port_value) if port_value else default_port
    if (port_value is None and url_value is None) or internal is None:
        if port_value is not None:
            log.warning("%s=%r is not a port number (1-65535): %s is not configured", port_var, port_value, app)
        return App(app, "", port_var, "", "", None)
    external = _external_port(settings, internal)
    url = public_port_url(settings, internal, url_var)
    return App(app, url, port_var, str(internal), str(external), f"http://127.0.0.1:{internal}/")


def url_app(settings: Settings, app: str, var: str, value: str) -> App:
    """An app known by its URL; a bind-all host (0.0.0.0, ":9090") is probed on loopback;
    "off" (GRAFANA_OFF) means the stack runs none: not configured, never probed."""
    if value.strip().lower() == GRAFANA_OFF:
        return App(app, "", var, "", "", None)
    raw = value.strip() if "://" in value else f"http://{value.strip()}"
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        log.warning("%s=%r is not an http(s) URL: %s is not configured", var, value, app)
        return App(app, "", var, "", "", None)
    host = parts.hostname or ""
    host = "127.0.0.1" if host in _ANY_ADDRESS else (f"[{host}]" if ":" in host else host)
    port = port or (443 if parts.scheme == "https" else 80)
    base = public_url(f"{parts.scheme}://{host}:{port}{parts.path}")
    return App(app, base, var, str(port), str(_external_port(settings, port)), base.rstrip("/") + "/")


def ollama_app(settings: Settings) -> App:
    address = resolve_ollama(settings.env)
    if address.problem:
        log.warning("%s: ollama is not configured", address.problem)
        return App("ollama", "", address.var, "", "", None)
    base = public_url(address.base_url)
    return App("ollama", base, address.var, str(address.port), str(_external_port(settings, address.port)),
               base + "/")


def resolve_apps(settings: Settings) -> list[App]:
    apps = [vm_app(settings, *spec) for spec in VM_APPS]
    apps.append(ollama_app(settings))
    door = dashboard_url(settings)
    for app, name, path in SERVICE_APPS:
        found = url_app(settings, app, TUNABLE_VARS[name][0], getattr(settings, name))
        apps.append(replace(found, url=door + path) if found.configured else found)
    return apps


def installed(settings: Settings, app: str) -> bool | None:
    """Whether the app's install folder exists (ollama: or its binary is on PATH); None when
    this app's installation cannot be told."""
    if app not in INSTALL_DIRS:
        return None
    var, default = INSTALL_DIRS[app]
    folder = settings.get(var) or (str(settings.home / default) if settings.home else None)
    if app == "ollama" and shutil.which("ollama", path=settings.get("PATH")):
        return True
    return os.path.isdir(folder) if folder else None


class SeenUpStore:
    """Names of the apps that answered a probe once, in a JSON list rewritten only when one is added."""

    def __init__(self, path: Path | None):
        self.path = path  # None: kept in memory only
        self.apps: set[str] = self._load()

    def _load(self) -> set[str]:
        try:
            raw = json.loads(self.path.read_text()) if self.path else []
        except (OSError, ValueError):  # missing or damaged: nothing seen yet
            return set()
        return {a for a in raw if isinstance(a, str)} if isinstance(raw, list) else set()

    def add(self, apps: Iterable[str]) -> None:
        new = set(apps) - self.apps
        if not new:
            return
        self.apps |= new
        if self.path is None:
            return
        try:
            save_json(self.path, sorted(self.apps))
        except OSError as exc:  # kept in memory; logged once per app added, which is rare
            log.warning("cannot save the apps seen up to %s: %s", self.path, exc)


@dataclass(frozen=True)
class ProbeRound:
    results: dict  # {app: (up, seconds the probe took)} for every configured app
    installed: dict  # {app: bool} for the apps whose installation can be told
    seen_up: frozenset


def _status(url: str, timeout: float) -> int:
    parts = urlsplit(url)
    if parts.scheme == "https":
        # An up-check of our own apps, often behind self-signed certificates: nothing secret is sent.
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                           context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    # Status line and headers within twice the timeout in all: a server trickling them
    # byte by byte would otherwise hold the probe round for ever.
    deadline = http_client.Deadline(2 * timeout)
    try:
        conn.connect()
        deadline.guard(conn)
        conn.request("GET", parts.path or "/", headers={"User-Agent": "wordslab-exporter"})
        status = conn.getresponse().status
        if deadline.expired:  # headers cut short by the deadline read as complete ones
            raise TimeoutError(f"no answer within {deadline.seconds:g} s")
        return status
    except (OSError, http.client.HTTPException):
        if deadline.expired:
            raise TimeoutError(f"no answer within {deadline.seconds:g} s") from None
        raise
    finally:
        deadline.cancel()
        conn.close()


def probe(url: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """Up when the app gives any HTTP answer below 500 (a login redirect or 404 is still up)."""
    try:
        return _status(url, timeout) < 500
    except (http.client.BadStatusLine, ConnectionResetError) as exc:
        if not url.startswith("http://"):
            log.debug("probe %s: %s", url, exc)
            return False
    except (OSError, http.client.HTTPException) as exc:  # refused, timed out, reset
        log.debug("probe %s: %s", url, exc)
        return False
    try:  # the internal port speaks TLS (the platform can serve its apps over https)
        return _status("https://" + url.removeprefix("http://"), timeout) < 500
    except (OSError, http.client.HTTPException):
        return False


class AppsCollector(WordslabCollector):
    name = "apps"
    output_from_sources_only = True

    def __init__(self, settings: Settings, *, probe_interval_seconds: float = PROBE_INTERVAL_SECONDS,
                 probe_timeout_seconds: float = PROBE_TIMEOUT_SECONDS):
        super().__init__(settings)
        self.apps = resolve_apps(settings)
        self.probe_timeout_seconds = probe_timeout_seconds
        self.seen_up = SeenUpStore(Path(settings.state_dir) / SEEN_UP_FILE if settings.state_dir else None)
        configured = [a for a in self.apps if a.configured]
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(configured)), thread_name_prefix="app-probe")
        self.probe_source = BackgroundSource("app_probes", self.probe_all, probe_interval_seconds)
        self.sources.append(self.probe_source)

    def probe_all(self) -> ProbeRound:
        """Every configured app probed in parallel, which apps are installed, and the apps seen up."""
        def timed(app: App) -> tuple[bool, float]:
            started = time.perf_counter()
            return probe(app.probe_url, self.probe_timeout_seconds), time.perf_counter() - started

        configured = [a for a in self.apps if a.configured]
        results = dict(zip((a.app for a in configured), self._pool.map(timed, configured)))
        self.seen_up.add(app for app, (is_up, _) in results.items() if is_up)
        found = {a.app: installed(self.settings, a.app) for a in self.apps}
        return ProbeRound(results, {app: v for app, v in found.items() if v is not None},
                          frozenset(self.seen_up.apps))

    def stop(self) -> None:
        super().stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def collect_metrics(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            PREFIX + "app_info",
            "Always 1: each app's link, the variable giving its port (or URL) and its internal and "
            "external ports; url and ports are empty when the app is not configured.",
            labels=["app", "url", "port_var", "internal_port", "external_port"])
        configured = GaugeMetricFamily(
            PREFIX + "app_configured",
            "1 if the app's *_PORT or *_URL variable is set (or it has a default), 0 if it is not "
            "configured; not configured apps have no wordslab_app_up series.",
            labels=["app"])
        up = GaugeMetricFamily(
            PREFIX + "app_up",
            "1 if the app answered the last HTTP probe with a status below 500, 0 if it did not answer "
            "(refused, timed out) or failed with 5xx. Only for configured apps.",
            labels=["app"])
        took = GaugeMetricFamily(PREFIX + "app_probe_duration_seconds",
                                 "Time the app's last HTTP probe took.", labels=["app"])
        is_installed = GaugeMetricFamily(
            PREFIX + "app_installed",
            "1 if the app's install folder exists (JUPYTERLAB_ENV, VSCODE_DIR, OPENWEBUI_ENV, OLLAMA_DIR or "
            "their default under WORDSLAB_HOME; ollama also when on PATH), 0 if not; absent for apps "
            "whose installation cannot be told.", labels=["app"])
        seen_up = GaugeMetricFamily(
            PREFIX + "app_seen_up",
            "1 if the app has answered a probe on this machine at least once (remembered across exporter "
            "restarts), 0 if never: the app-down alert is only for apps seen up.", labels=["app"])
        round_ = self.probe_source.snapshot().value
        for app in self.apps:
            info.add_metric([app.app, app.url, app.port_var, app.internal_port, app.external_port], 1)
            configured.add_metric([app.app], 1 if app.configured else 0)
            if round_ is None:
                continue
            if app.app in round_.results:
                is_up, seconds = round_.results[app.app]
                up.add_metric([app.app], 1 if is_up else 0)
                took.add_metric([app.app], seconds)
            if app.app in round_.installed:
                is_installed.add_metric([app.app], 1 if round_.installed[app.app] else 0)
            seen_up.add_metric([app.app], 1 if app.app in round_.seen_up else 0)
        yield from (info, configured, up, took, is_installed, seen_up)
