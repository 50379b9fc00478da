"""`wordslab-admin`: the create/delete forms and actions of the dashboard."""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
from pathlib import Path

from common import redact
from common.config import TUNABLE_VARS, Settings, parse_listen_address
from common.sources.endpoint_probe import REFRESH_SECONDS
from common.store.vms import DEFAULT_STATUS_INTERVAL_SECONDS
from common.urls import dashboard_url

DEFAULT_LISTEN = "127.0.0.1:9878"
PASSWORD_ENV = TUNABLE_VARS["admin_password"][0]
# Flags of the admin's tunables: (flag, Settings field, help).
SECONDS_FLAGS = (
    ("--vm-status-interval", "vm_status_interval_seconds",
     "seconds between cloud VM status refreshes; 0 turns polling off (a value set in the admin wins; "
     f"default {DEFAULT_STATUS_INTERVAL_SECONDS:g})"),
    ("--vm-provider-timeout", "vm_provider_timeout_seconds",
     "seconds a cloud provider API call may take (default: each client's own)"),
    ("--endpoint-status-interval", "endpoint_status_interval_seconds",
     f"seconds between live probes of the model endpoints; 0 turns probing off (default {REFRESH_SECONDS:g})"),
)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_host_port(value: str) -> tuple[str, int]:
    """HOST:PORT as the exporter parses it, plus port 0 (a free port, printed at start)."""
    if value.endswith(":0"):
        return parse_listen_address(value[:-1] + "1")[0], 0
    return parse_listen_address(value)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {value!r}")
    return seconds


def _factor(value: str) -> float:
    try:
        factor = float(value)
    except ValueError:
        factor = -1.0
    if not 0 < factor < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a factor > 0, got {value!r}")
    return factor


def _stop(*_):
    raise KeyboardInterrupt


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wordslab-admin", description=__doc__)
    parser.add_argument("--listen-address", default=DEFAULT_LISTEN,
                        help="HOST:PORT (default %(default)s: loopback only; port 0 picks a free one)")
    parser.add_argument("--db", dest="db_path", help="dashboard SQLite file (default: "
                        "$WORDSLAB_WORKSPACE/.wordslab-dashboard/dashboard.db)")
    parser.add_argument("--grafana-url", default=None,
                        help="Grafana base URL for links back to the dashboards (default: the front "
                             "door's public URL, where Grafana is at the root)")
    parser.add_argument("--alertmanager-url", help="Alertmanager the admin configures and asks for alerts "
                        "(default $WORDSLAB_ALERTMANAGER_URL or http://127.0.0.1:9093)")
    parser.add_argument("--prometheus-url", help="Prometheus autostop and the budget guard query "
                        "(default $WORDSLAB_PROMETHEUS_URL or http://127.0.0.1:9090)")
    parser.add_argument("--admin-url", help="this admin's URL as Alertmanager reaches it, for the Teams/ntfy "
                        "relay (default $WORDSLAB_ADMIN_URL or http://127.0.0.1:9878)")
    parser.add_argument("--autostop-interval", type=float, dest="autostop_interval_seconds",
                        help="seconds between autostop checks (default $WORDSLAB_AUTOSTOP_INTERVAL_SECONDS or 60; 0: off)")
    parser.add_argument("--autostop-time-scale", type=_factor, dest="autostop_time_scale",
                        help="factor on autostop windows, for tests (default $WORDSLAB_AUTOSTOP_TIME_SCALE or 1)")
    parser.add_argument("--alertmanager-config", type=Path,
                        help="the alertmanager.yml the admin writes (default $WORDSLAB_ALERTMANAGER_CONFIG or "
                             "<state dir>/alertmanager/alertmanager.yml)")
    parser.add_argument("--exporter-address", help="this machine's exporter HOST:PORT as Prometheus scrapes "
                        "it; the vLLM servers the admin starts get it as their instance label "
                        "(default $WORDSLAB_EXPORTER_ADDRESS or 127.0.0.1:9877)")
    parser.add_argument("--prometheus-targets-dir", type=Path,
                        help="where Prometheus file_sd targets are written (default "
                             "$WORDSLAB_PROMETHEUS_TARGETS_DIR or <state dir>/prometheus/targets/dynamic)")
    for flag, name, text in SECONDS_FLAGS:
        parser.add_argument(flag, dest=name, type=_seconds, help=f"{text} (${TUNABLE_VARS[name][0]})")
    parser.add_argument("--reset-password", action="store_true",
                        help=f"generate a new admin password and show it once (unless ${PASSWORD_ENV} is set)")
    parser.add_argument("--log-level", default="INFO")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per request (jobs pages poll every few seconds) only when debugging.
    logging.getLogger("werkzeug").setLevel(logging.DEBUG if args.log_level.upper() == "DEBUG" else logging.WARNING)
    try:
        host, port = listen_host_port(args.listen_address)
    except ValueError as exc:
        print(f"wordslab-admin: {exc}", file=sys.stderr)
        return 2
    if not _is_loopback(host):
        print(f"wordslab-admin: warning: listening on {host}, not loopback: anyone who can reach "
              "this port sees the login page", file=sys.stderr)
    alerting = ("alertmanager_url", "prometheus_url", "admin_url", "autostop_interval_seconds", "autostop_time_scale",
                "exporter_address")
    settings = Settings.from_env(db_path=args.db_path, prometheus_targets_dir=args.prometheus_targets_dir,
                                 alertmanager_config=args.alertmanager_config,
                                 **{name: getattr(args, name) for _, name, _ in SECONDS_FLAGS},
                                 **{name: getattr(args, name) for name in alerting})
    redact.protect_process(settings.env)
    from admin.app import create_app
    from common.store.health import DatabaseUnusable, advice, reason_of
    from sqlalchemy.exc import DatabaseError
    try:
        app = create_app(settings, password=settings.admin_password,
                         grafana_url=args.grafana_url or dashboard_url(settings),
                         reset_password=args.reset_password)
    except DatabaseUnusable as exc:
        print(f"wordslab-admin: {exc}", file=sys.stderr)
        return 1
    except DatabaseError as exc:  # damage quick_check did not reach, found while upgrading the schema
        print(f"wordslab-admin: {advice(settings.db_path, reason_of(exc))}", file=sys.stderr)
        return 1
    generated = app.config.pop("WORDSLAB_GENERATED_PASSWORD", None)
    if generated:
        # Shown once, on the terminal only (never in a log file or URL).
        print(f"wordslab-admin: generated admin password (shown once): {generated}", flush=True)
    from werkzeug.serving import make_server
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        print(f"wordslab-admin: cannot listen on {args.listen_address}: {exc}", file=sys.stderr)
        return 1
    print(f"wordslab-admin: serving on http://{host}:{server.server_port}/admin (db {settings.db_path})",
          flush=True)
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    server.server_close()
    running = app.extensions["wordslab"].jobs.active_count()
    if running:
        # Worker threads would keep the process alive until their downloads end; the next
        # start marks these jobs "failed: interrupted".
        logging.getLogger("admin").warning("stopping with %d job(s) unfinished", running)
        logging.shutdown()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
