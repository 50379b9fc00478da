"""`wordslab-admin`: the create/delete forms and actions of the dashboard."""
from __future__ import annotations

import argparse
import logging
import sys

from exporter.config import Settings
from exporter.server import parse_listen_address

DEFAULT_LISTEN = "127.0.0.1:9878"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wordslab-admin", description=__doc__)
    parser.add_argument("--listen-address", default=DEFAULT_LISTEN,
                        help="HOST:PORT (default %(default)s: loopback only)")
    parser.add_argument("--db", dest="db_path", help="dashboard SQLite file")
    parser.add_argument("--grafana-url", default=None, help="link back to the dashboards")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        host, port = parse_listen_address(args.listen_address)
    except ValueError as exc:
        print(f"wordslab-admin: {exc}", file=sys.stderr)
        return 2
    import os
    overrides = {"db_path": args.db_path} if args.db_path else {}
    settings = Settings.from_env(**overrides)
    from .app import create_app
    app = create_app(settings, password=os.environ.get("WORDSLAB_DASHBOARD_ADMIN_PASSWORD"),
                     grafana_url=args.grafana_url or os.environ.get("WORDSLAB_GRAFANA_URL"))
    generated = app.config.get("WORDSLAB_GENERATED_PASSWORD")
    if generated:
        # Shown once, on the terminal only (never in a log file or URL).
        print(f"wordslab-admin: first start, generated admin password: {generated}", flush=True)
    print(f"wordslab-admin: serving on http://{host}:{port}/admin (db {settings.db_path})", flush=True)
    from werkzeug.serving import run_simple
    run_simple(host, port, app, threaded=True, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
