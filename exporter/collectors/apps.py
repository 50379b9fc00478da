"""Links to the VM's apps and whether each one answers (section 2.1).

Which apps exist is read once from the VM's *_PORT / *_URL variables. An app whose
variables are unset is "not configured": `wordslab_app_configured` 0, empty url/ports,
and no `wordslab_app_up` series (not down). Probes run in parallel in the background.
"""
from __future__ import annotations

import http.client
import logging
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import urlsplit

from prometheus_client.core import GaugeMetricFamily, Metric

from common.background import BackgroundSource
from common.config import Settings
from common.sources.ollama_client import resolve_ollama
from common.urls import public_url, url_for_port
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
# This project's own services: (app, URL variable, default URL).
SERVICE_APPS = (
    ("admin", "WORDSLAB_ADMIN_URL", "http://127.0.0.1:9878"),
    ("grafana", "WORDSLAB_GRAFANA_URL", "http://127.0.0.1:3000"),
    ("prometheus", "WORDSLAB_PROMETHEUS_URL", "http://127.0.0.1:9090"),
)


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
    # Vast.ai publishes internal port P on the host port in VAST_TCP_PORT_P.
    return _port(settings.get(f"VAST_TCP_PORT_{internal}")) or internal


def vm_app(settings: Settings, app: str, port_var: str, default_port: int, url_var: str) -> App:
    port_value, url_value = settings.get(port_var), settings.get(url_var)
    internal = _port(port_value) if port_value else default_port
    if (port_value is None and url_value is None) or internal is None:
        if port_value is not None:
            log.warning("%s=%r is not a port number (1-65535): %s is not configured", port_var, port_value, app)
        return App(app, "", port_var, "", "", None)
    external = _external_port(settings, internal)
    url = public_url(url_value) if url_value else url_for_port(settings.root_url, external)
    return App(app, url, port_var, str(internal), str(external), f"http://127.0.0.1:{internal}/")


def url_app(settings: Settings, app: str, var: str, value: str) -> App:
    """An app known by its URL; a bind-all host (0.0.0.0, ":9090") is probed on loopback."""
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
    apps.extend(url_app(settings, app, var, settings.get(var, default)) for app, var, default in SERVICE_APPS)
    return apps


def _status(url: str, timeout: float) -> int:
    parts = urlsplit(url)
    if parts.scheme == "https":
        # An up-check of our own apps, often behind self-signed certificates: nothing secret is sent.
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                           context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/", headers={"User-Agent": "wordslab-exporter"})
        return conn.getresponse().status
    finally:
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

    def __init__(self, settings: Settings, *, probe_interval_seconds: float = PROBE_INTERVAL_SECONDS,
                 probe_timeout_seconds: float = PROBE_TIMEOUT_SECONDS):
        super().__init__(settings)
        self.apps = resolve_apps(settings)
        self.probe_timeout_seconds = probe_timeout_seconds
        configured = [a for a in self.apps if a.configured]
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(configured)), thread_name_prefix="app-probe")
        self.probe_source = BackgroundSource("app_probes", self.probe_all, probe_interval_seconds)
        self.sources.append(self.probe_source)

    def probe_all(self) -> dict[str, tuple[bool, float]]:
        """{app: (up, seconds the probe took)} for every configured app, probed in parallel."""
        def timed(app: App) -> tuple[bool, float]:
            started = time.perf_counter()
            return probe(app.probe_url, self.probe_timeout_seconds), time.perf_counter() - started

        configured = [a for a in self.apps if a.configured]
        return dict(zip((a.app for a in configured), self._pool.map(timed, configured)))

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
        results = self.probe_source.snapshot().value or {}
        for app in self.apps:
            info.add_metric([app.app, app.url, app.port_var, app.internal_port, app.external_port], 1)
            configured.add_metric([app.app], 1 if app.configured else 0)
            if app.app in results:
                is_up, seconds = results[app.app]
                up.add_metric([app.app], 1 if is_up else 0)
                took.add_metric([app.app], seconds)
        yield from (info, configured, up, took)
