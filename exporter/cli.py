"""`wordslab-exporter`: serve the metrics of this machine."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from common import redact
from common.config import DEFAULT_LISTEN_ADDRESS, TUNABLE_VARS, Settings, parse_listen_address
from exporter.exposition import Exposition
from exporter.registry import build_collectors
from exporter.server import make_app, serve
from exporter.version import program_version


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wordslab-exporter", description=__doc__)
    parser.add_argument("--listen-address", default=DEFAULT_LISTEN_ADDRESS,
                        help="HOST:PORT to serve /metrics on (default %(default)s)")
    parser.add_argument("--db", dest="db_path", help="dashboard SQLite file (default: "
                        "$WORDSLAB_WORKSPACE/.wordslab-dashboard/dashboard.db)")
    parser.add_argument("--state-dir", help="where small state kept across restarts lives")
    parser.add_argument("--git-fetch-interval", type=float, dest="git_fetch_interval_seconds", help="seconds between background `git fetch` "
                        "of workspace projects; 0 turns it off (default $WORDSLAB_GIT_FETCH_INTERVAL_SECONDS or "
                        f"{Settings.git_fetch_interval_seconds:g})")
    parser.add_argument("--root-path", type=Path, help="where the host's / is seen "
                        "(default $WORDSLAB_DASHBOARD_ROOT_PATH or /; compose mounts it at /host/root)")
    for name, app in (("admin", "admin"), ("grafana", "Grafana"), ("prometheus", "Prometheus")):
        parser.add_argument(f"--{name}-url", help=f"the {app} URL linked and probed as an app "
                            f"(default ${TUNABLE_VARS[name + '_url'][0]} or {getattr(Settings, name + '_url')})")
    parser.add_argument("--sweep-interval", type=float, dest="sweep_interval_seconds",
                        help="seconds between full re-reads of the watched projects and model caches, "
                        "the safety net behind file events (default $WORDSLAB_DASHBOARD_SWEEP_INTERVAL or 900)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--cgroup-root", type=Path, help="cgroup file system whose memory and CPU limits bound the "
                        "machine's figures (default $WORDSLAB_DASHBOARD_CGROUP_ROOT or /sys/fs/cgroup)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {program_version()}",
                        help="print this program's version and exit")
    for var in ("WORDSLAB_PLATFORM", "WORDSLAB_VERSION", "WORDSLAB_HOME", "WORDSLAB_WORKSPACE",
                "WORDSLAB_MODELS", "WORDSLAB_NOTEBOOKS_ENV", "WORDSLAB_ROOT_URL"):
        # --wordslab-version: --version is the program's own, as in every command-line tool.
        name = var.lower() if var == "WORDSLAB_VERSION" else var.lower().removeprefix("wordslab_")
        parser.add_argument("--" + name.replace("_", "-"), dest=var, help=f"overrides ${var}")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def settings_from_args(args: argparse.Namespace, env=None) -> Settings:
    """Settings from the environment (`env`, default os.environ) with the flags winning."""
    set_vars = {key: value for key, value in vars(args).items() if key.startswith("WORDSLAB_")}
    return Settings.from_env(env, set_vars, listen_address=args.listen_address,
                             git_fetch_interval_seconds=args.git_fetch_interval_seconds, db_path=args.db_path,
                             state_dir=args.state_dir, root_path=args.root_path, admin_url=args.admin_url,
                             grafana_url=args.grafana_url, prometheus_url=args.prometheus_url,
                             cgroup_root=args.cgroup_root,
                             sweep_interval_seconds=args.sweep_interval_seconds)


def _warn_if_db_unusable(settings: Settings) -> None:
    """One line at start when the admin's DB is damaged; the exporter still serves everything
    else (one broken source never breaks a scrape) and reports config_db as failing."""
    from common.store.db import connect
    from common.store.health import DatabaseUnusable, check_database
    if settings.db_path is None or not Path(settings.db_path).is_file():
        return
    engine = connect(settings.db_path, readonly=True)
    try:
        check_database(engine, settings.db_path)
    except DatabaseUnusable as exc:
        print(f"wordslab-exporter: warning: {exc}; serving the other metrics meanwhile "
              '(wordslab_source_refresh_success{source="config_db"} is 0)', file=sys.stderr, flush=True)
    finally:
        engine.dispose()


# glibc's mallopt parameter for MALLOC_ARENA_MAX (malloc.h).
M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas, as MALLOC_ARENA_MAX does: each of the ~20 threads (sources,
    HTTP, watcher) would otherwise get its own arena, about 3 MB of RSS for nothing at this
    allocation rate. Before any thread starts; a no-op (False) without glibc."""
    import ctypes
    import ctypes.util
    name = ctypes.util.find_library("c")
    try:
        return bool(ctypes.CDLL(name).mallopt(M_ARENA_MAX, arenas)) if name else False
    except (OSError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit_malloc_arenas()
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        parse_listen_address(args.listen_address)
    except ValueError as exc:
        print(f"wordslab-exporter: {exc}", file=sys.stderr)
        return 2
    settings = settings_from_args(args)
    _warn_if_db_unusable(settings)
    redact.protect_process(settings.env)
    collectors = build_collectors(settings)
    exposition = Exposition(collectors)  # before start(): it listens to the sources' refreshes
    for collector in collectors:
        collector.start()
    try:
        server, _ = serve(make_app(exposition), args.listen_address)
    except OSError as exc:
        print(f"wordslab-exporter: cannot listen on {args.listen_address}: {exc}", file=sys.stderr)
        return 1
    logging.getLogger("exporter").info("serving /metrics on http://%s/metrics", args.listen_address)
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    server.shutdown()
    for collector in collectors:
        collector.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
