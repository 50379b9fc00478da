"""`wordslab-dashboard up`: run exporter, admin, Prometheus and Grafana natively.

Cloud GPU boxes are often containers without Docker, so the same files that
compose.yaml mounts are used here with local processes.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from common.config import GRAFANA_OFF, Settings
from common.urls import dashboard_url

from wordslab_dashboard import door, grafana_install
from wordslab_dashboard.grafana_install import (GrafanaInstall, GrafanaInstallError, GrafanaRelease,
                                                ensure_grafana)
from wordslab_dashboard.layout import REPO_ROOT, Layout


@dataclass
class Service:
    name: str
    argv: list[str]
    url: str
    env: dict[str, str] = field(default_factory=dict)
    stdout_to_terminal: bool = False
    # Behind the front door at this path ("/prometheus/"), proxied to `upstream` (host:port).
    route: str | None = None
    upstream: str | None = None
    process: subprocess.Popen | None = None


def _find(*names: str) -> str | None:
    # Debian puts daemons (nginx) in /usr/sbin, which a normal user's PATH often lacks.
    for name in names:
        found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(("/usr/sbin", "/sbin")))
        if found:
            return found
    return None


def find_grafana(args: argparse.Namespace, settings: Settings,
                 release: GrafanaRelease | None = None) -> tuple[GrafanaInstall | None, str | None]:
    """Grafana to run and, when there is none, a line saying why and what to do.

    A system install on the PATH (Grafana's apt repository) wins; else the pinned tarball is
    installed into the cache directory (downloaded once, or from --grafana-tarball).
    """
    if args.no_grafana:
        return None, None
    system = _find("grafana", "grafana-server")
    if system and not settings.grafana_tarball:
        return GrafanaInstall(settings.grafana_home, Path(system)), None
    try:
        return ensure_grafana(settings.cache_dir, download_url=settings.grafana_download_url,
                              tarball=settings.grafana_tarball,
                              release=release or grafana_install.PINNED), None
    except GrafanaInstallError as exc:
        return None, f"grafana: {exc}"


def grafana_service(args: argparse.Namespace, layout: Layout, grafana: GrafanaInstall,
                    common: dict[str, str], public: str) -> Service:
    """Grafana with our provisioning (grafana/) and its data, logs and plugins under the state
    dir, at the root of the front door, signing users in from the door's auth-proxy header."""
    return Service("grafana", grafana.argv(), f"http://127.0.0.1:{args.grafana_port}", {
        **common,
        "GF_SERVER_HTTP_ADDR": "127.0.0.1",
        "GF_SERVER_HTTP_PORT": str(args.grafana_port),
        "GF_PATHS_DATA": str(layout.grafana_data),
        "GF_PATHS_LOGS": str(layout.grafana_data / "log"),
        "GF_PATHS_PLUGINS": str(layout.grafana_data / "plugins"),
        "GF_PATHS_PROVISIONING": str(layout.repo / "grafana" / "provisioning"),
        "WORDSLAB_GRAFANA_DASHBOARDS_DIR": str(layout.repo / "grafana" / "dashboards"),
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH":
            str(layout.repo / "grafana" / "dashboards" / "home.json"),
        **door.grafana_env(door.grafana_settings(public)),
        "GF_SECURITY_ADMIN_PASSWORD__FILE": str(door.admin_password_file(layout.state)),
    }, route="/", upstream=f"127.0.0.1:{args.grafana_port}")


def door_service(args: argparse.Namespace, layout: Layout, settings: Settings,
                 services: list[Service]) -> tuple[Service | None, str | None]:
    """nginx on the dashboard port in front of every service that has a route."""
    nginx = _find("nginx")
    admin = next(s for s in services if s.name == "admin")
    if not nginx:
        return None, (f"door: nginx not found (Debian/Ubuntu: sudo apt-get install nginx); "
                      f"only the admin answers, on loopback: {admin.url}")
    busy = door.port_problem(args.door_host, args.dashboard_port)
    if busy:
        return None, f"door: {busy}; only the admin answers, on loopback: {admin.url}"
    grafana = next((s for s in services if s.route == "/"), None)
    the_door = door.Door(
        listen_host=args.door_host, port=args.dashboard_port, runtime=layout.state / "door",
        admin=args.admin_address, grafana=grafana.upstream if grafana else None,
        routes=tuple(door.Route(s.route, s.upstream) for s in services if s.route and s.route != "/"),
        docs_dir=door.find_docs(settings))
    the_door.write()
    return Service("door", the_door.argv(nginx),
                   f"http://{door.url_host(args.door_host)}:{args.dashboard_port}/"), None


def plan_services(args: argparse.Namespace, layout: Layout, settings: Settings,
                  grafana: GrafanaInstall | None = None) -> tuple[list[Service], list[str]]:
    """The services to start and, for what cannot start, a line saying what is missing.

    A service with a `route` is reachable through the front door (the door service, last).
    """
    py = sys.executable
    public = dashboard_url(settings)
    exporter_url = f"http://{args.exporter_address}"
    admin_url = f"http://{args.admin_address}"
    prometheus_url = f"http://{args.prometheus_address}"
    # No Grafana in this stack: the exporter probes none and the admin says it was not started.
    grafana_url = f"http://127.0.0.1:{args.grafana_port}" if grafana else GRAFANA_OFF
    alertmanager_url = f"http://{args.alertmanager_address}"
    common = {"WORDSLAB_ADMIN_URL": admin_url, "WORDSLAB_GRAFANA_URL": grafana_url,
              "WORDSLAB_PROMETHEUS_URL": prometheus_url, "WORDSLAB_ALERTMANAGER_URL": alertmanager_url,
              "WORDSLAB_DASHBOARD_STATE_DIR": str(layout.state),
              # Every process builds the browser's links from the same door URL.
              "DASHBOARD_PORT": str(args.dashboard_port), "WORDSLAB_DASHBOARD_PUBLIC_URL": public}
    services = [
        Service("exporter", [py, "-m", "exporter", "--listen-address", args.exporter_address],
                exporter_url + "/metrics", common),
        # Its links to Grafana are the browser's: the door's public URL (Grafana at its root).
        Service("admin", [py, "-m", "admin", "--listen-address", args.admin_address,
                          "--grafana-url", public, "--exporter-address", args.exporter_address],
                admin_url + "/admin/", common,
                stdout_to_terminal=True),
    ]
    missing = []
    prometheus = _find("prometheus")
    if prometheus:
        services.append(Service("prometheus", [
            prometheus, f"--config.file={layout.prometheus_config}",
            f"--storage.tsdb.path={layout.prometheus_data}",
            f"--web.listen-address={args.prometheus_address}",
            f"--storage.tsdb.retention.time={args.retention}",
            # Behind the door at /prometheus/; still served at / on loopback for Grafana and us.
            f"--web.external-url={public}/prometheus/", "--web.route-prefix=/",
        ], prometheus_url, common, route="/prometheus/", upstream=args.prometheus_address))
    else:
        missing.append("prometheus: not on PATH (Debian/Ubuntu: sudo apt-get install prometheus)")
    alertmanager = _find("prometheus-alertmanager", "alertmanager")
    if alertmanager:
        # No cluster: one Alertmanager, and its gossip port would listen on every interface.
        services.append(Service("alertmanager", [
            alertmanager, f"--config.file={layout.alertmanager_config}",
            f"--storage.path={layout.alertmanager_data}",
            f"--web.listen-address={args.alertmanager_address}", "--cluster.listen-address=",
            # Behind the door at /alertmanager/; still served at / on loopback for Prometheus.
            f"--web.external-url={public}/alertmanager/", "--web.route-prefix=/",
        ], alertmanager_url, common, route="/alertmanager/", upstream=args.alertmanager_address))
    else:
        missing.append("alertmanager: not on PATH (Debian/Ubuntu: sudo apt-get install "
                       "prometheus-alertmanager); alerts show in Prometheus but reach nobody")
    if grafana:
        services.append(grafana_service(args, layout, grafana, common, public))
    the_door, problem = door_service(args, layout, settings, services)
    if the_door:
        services.append(the_door)
    else:
        missing.append(problem)
    return services, missing


def start(service: Service, logs: Path) -> None:
    logs.mkdir(parents=True, exist_ok=True)
    log = open(logs / f"{service.name}.log", "ab")
    env = {**os.environ, **service.env}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    service.process = subprocess.Popen(
        service.argv, env=env, stdin=subprocess.DEVNULL,
        stdout=None if service.stdout_to_terminal else log, stderr=log,
        start_new_session=True)


def stop_all(services: list[Service], grace: float = 10.0) -> None:
    running = [s for s in services if s.process and s.process.poll() is None]
    for s in running:
        s.process.terminate()
    deadline = time.monotonic() + grace
    for s in running:
        try:
            s.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            s.process.kill()


def _one_up_per_state_dir(state: Path):
    """The open lock file that this `up` holds for its life, or None (said why) when another
    `up` runs on the same state dir: a second one would rewrite its config and logs, then stop."""
    state.mkdir(parents=True, exist_ok=True)
    lock = open(state / "up.lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        print(f"wordslab-dashboard: another `up` (pid {holder}) already runs the stack with the state "
              f"directory {state}; stop it (Ctrl-C) first, or give this one another --state-dir",
              file=sys.stderr)
        return None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def cmd_up(args: argparse.Namespace) -> int:
    overrides = {"state_dir": args.state_dir, "cache_dir": args.cache_dir,
                 "grafana_tarball": Path(args.grafana_tarball) if args.grafana_tarball else None,
                 "grafana_download_url": args.grafana_download_url, "door_host": args.door_host,
                 "dashboard_port": args.dashboard_port, "public_url": args.public_url,
                 "docs_dir": Path(args.docs_dir) if args.docs_dir else None}
    settings = Settings.from_env(**{k: v for k, v in overrides.items() if v})
    args.door_host, args.dashboard_port = settings.door_host, settings.dashboard_port
    layout = Layout(repo=REPO_ROOT, state=Path(settings.state_dir))
    lock = _one_up_per_state_dir(layout.state)
    if lock is None:
        return 1
    layout.prepare_prometheus(args.exporter_address, args.alertmanager_address)
    layout.prepare_alertmanager()
    grafana, grafana_missing = find_grafana(args, settings)
    services, missing = plan_services(args, layout, settings, grafana)
    missing += [grafana_missing] if grafana_missing else []
    logs = layout.state / "logs"
    for service in services:
        start(service, logs)
    print("wordslab-dashboard: started")
    for s in services:
        print(f"  {s.name:<11} pid {s.process.pid:<7} {s.url}")
    print(f"  logs in {logs}; state in {layout.state}; database {settings.db_path}")
    if any(s.name == "door" for s in services):
        print(f"open the dashboard at {dashboard_url(settings)}/ (one login: the admin password; "
              f"/admin/, /prometheus/, /docs/ behind the same door)")
    for line in missing:
        print(f"  not started: {line}")
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
    try:
        while not stopped:
            for s in services:
                code = s.process.poll()
                if code is not None:
                    print(f"wordslab-dashboard: {s.name} exited with code {code}; "
                          f"see {logs / (s.name + '.log')}. Stopping the others.", file=sys.stderr)
                    stop_all(services)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    print("wordslab-dashboard: stopping")
    stop_all(services)
    return 0


def cmd_door_config(args: argparse.Namespace) -> int:
    """compose.yaml's door: nginx.conf for the official nginx image, and grafana.ini (plus the
    admin password file) for the official Grafana image, from the same code as `up`."""
    overrides = {"door_host": args.door_host, "dashboard_port": args.dashboard_port,
                 "public_url": args.public_url, "docs_dir": Path(args.docs_dir) if args.docs_dir else None}
    settings = Settings.from_env(**{k: v for k, v in overrides.items() if v})
    runtime = Path(args.runtime)
    routes = []
    for spec in args.route:
        path, sep, upstream = spec.partition("=")
        if not sep or not path.startswith("/") or not path.endswith("/") or ":" not in upstream:
            print(f"wordslab-dashboard: --route wants /PATH/=HOST:PORT, got {spec!r}", file=sys.stderr)
            return 2
        routes.append(door.Route(path, upstream))
    public = dashboard_url(settings)
    the_door = door.Door(listen_host=settings.door_host, port=settings.dashboard_port, runtime=runtime,
                         admin=args.admin_address, grafana=args.grafana_address, routes=tuple(routes),
                         docs_dir=door.find_docs(settings),
                         mime_types=Path(args.mime_types))
    the_door.write()
    (runtime / "grafana.ini").write_text(door.grafana_ini(door.grafana_settings(public)))
    door.admin_password_file(runtime)
    print(f"wordslab-dashboard: wrote {the_door.config_path} and {runtime / 'grafana.ini'} "
          f"for {public}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wordslab-dashboard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the whole stack in the foreground")
    up.add_argument("--exporter-address", default="127.0.0.1:9877")
    up.add_argument("--admin-address", default="127.0.0.1:9878")
    up.add_argument("--prometheus-address", default="127.0.0.1:9090")
    up.add_argument("--alertmanager-address", default="127.0.0.1:9093")
    up.add_argument("--grafana-port", type=int, default=3000)
    up.add_argument("--retention", default="15d", help="Prometheus retention (default %(default)s)")
    up.add_argument("--state-dir", help="runtime state (default $WORDSLAB_WORKSPACE/.wordslab-dashboard)")
    up.add_argument("--no-grafana", action="store_true", help="do not install or start Grafana")
    up.add_argument("--grafana-tarball", metavar="PATH",
                    help="install Grafana from this tarball already on disk (machines without network; "
                         "default $WORDSLAB_DASHBOARD_GRAFANA_TARBALL)")
    up.add_argument("--grafana-download-url", metavar="URL",
                    help="where the pinned Grafana tarball is downloaded from (default "
                         "$WORDSLAB_DASHBOARD_GRAFANA_DOWNLOAD_URL or Grafana's download site)")
    up.add_argument("--dashboard-port", type=int,
                    help="the front door's port, the one the browser opens (default $DASHBOARD_PORT or 8888)")
    up.add_argument("--door-host",
                    help="where the front door listens (default $WORDSLAB_DASHBOARD_LISTEN_HOST or 0.0.0.0, "
                         "so the platform's proxy reaches it; everything else stays on loopback)")
    up.add_argument("--public-url", help="the URL the browser opens the dashboard at (default "
                                         "$WORDSLAB_DASHBOARD_PUBLIC_URL, else the platform's public URL for the port)")
    up.add_argument("--docs-dir", help="docs folder served at /docs/ (default $WORDSLAB_DASHBOARD_DOCS_DIR, "
                                       "else the wordslab-notebooks docs under $WORDSLAB_HOME)")
    up.add_argument("--cache-dir", help="downloads kept across installs (default "
                                        "$WORDSLAB_DASHBOARD_CACHE_DIR or ~/.cache/wordslab-dashboard)")
    config = sub.add_parser("door-config", help="write the front door's nginx.conf and grafana.ini "
                                                   "(compose.yaml runs it before nginx and Grafana)")
    config.add_argument("--runtime", required=True, help="folder for nginx.conf, grafana.ini, pid and temp files")
    config.add_argument("--admin-address", default="127.0.0.1:9878")
    config.add_argument("--grafana-address", default="127.0.0.1:3000")
    config.add_argument("--route", action="append", default=[], metavar="/PATH/=HOST:PORT",
                        help="another service behind the door (e.g. /prometheus/=127.0.0.1:9090)")
    config.add_argument("--mime-types", default="/etc/nginx/mime.types",
                        help="nginx's mime.types where nginx runs (default %(default)s)")
    for flag in ("--dashboard-port", "--door-host", "--public-url", "--docs-dir"):
        config.add_argument(flag, type=int if flag == "--dashboard-port" else str,
                            help=f"as for `up {flag}`")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "up":
        return cmd_up(args)
    if args.command == "door-config":
        return cmd_door_config(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
