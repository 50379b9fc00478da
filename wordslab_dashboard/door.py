"""The front door: nginx on DASHBOARD_PORT, the one address the user's browser needs.

On Runpod, Jarvislabs, Vast.ai and WSL only ports 8880-8888 reach the browser; DASHBOARD_PORT
(8888) is the dashboard's. nginx (Debian's package natively, the official image in compose)
listens there and everything else stays on loopback:

    /               Grafana (its home dashboard), as the signed-in user (auth proxy)
    /admin/         the admin (its own login page lives here)
    /prometheus/    Prometheus' UI and API (run with --web.external-url .../prometheus/)
    /alertmanager/  Alertmanager, when it runs (any Route added by the runner)
    /docs/          the wordslab docs folder, or a page saying where the docs are

One login: before each request outside /admin/, nginx asks the admin (`auth_request` to
/admin/auth/check). A 401 sends the browser to the admin's login with next= the asked URL;
a 200 carries the user, which nginx puts in Grafana's AUTH_PROXY_HEADER. A copy of that header
sent by the client never passes: nginx replaces it on the Grafana route and blanks it elsewhere
(and drops header names with underscores, its default).
"""
from __future__ import annotations

import html
import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from common.config import Settings

AUTH_PROXY_HEADER = "X-WEBAUTH-USER"
MIME_TYPES = Path("/etc/nginx/mime.types")
DOCS_HOME = "https://github.com/wordslab-org/wordslab-notebooks/tree/main/docs"


@dataclass(frozen=True)
class Route:
    """A loopback service behind the door at `path` ("/name/"); the prefix is stripped, so the
    service runs at its root and generates its links from its external URL."""

    path: str
    upstream: str  # host:port on loopback


@dataclass(frozen=True)
class Door:
    listen_host: str
    port: int
    runtime: Path  # nginx.conf, pid, temp files
    admin: str  # host:port of the admin
    grafana: str | None = None  # host:port; None: "/" goes to the admin
    routes: tuple[Route, ...] = ()
    docs_dir: Path | None = None
    # nginx running as root switches its workers to "nobody", which cannot read the state
    # directory; keep them as the user that ran `up` (often root in cloud containers).
    workers_as_root: bool = field(default_factory=lambda: os.geteuid() == 0)
    # Debian's and the official image's; None: a few types inline.
    mime_types: Path | None = field(default_factory=lambda: MIME_TYPES if MIME_TYPES.is_file() else None)

    @property
    def config_path(self) -> Path:
        return self.runtime / "nginx.conf"

    def argv(self, nginx: str) -> list[str]:
        return [nginx, "-p", str(self.runtime), "-c", str(self.config_path), "-e", "stderr"]

    def write(self) -> Path:
        """Write nginx.conf (and the docs placeholder page when there is no docs folder)."""
        for sub in ("tmp", "docs-placeholder"):
            (self.runtime / sub).mkdir(parents=True, exist_ok=True)
        if self.docs_dir is None:
            (self.runtime / "docs-placeholder" / "index.html").write_text(_docs_placeholder())
        self.config_path.write_text(render(self))
        return self.config_path


_FORWARDED = """\
            proxy_http_version 1.1;
            proxy_set_header Host $wordslab_host;
            proxy_set_header X-Forwarded-Host $wordslab_host;
            proxy_set_header X-Forwarded-Proto $wordslab_proto;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"""

# WebSockets (Grafana Live) pass to the services only: the admin's auth question and login
# redirect get no Upgrade (nginx drops the hop-by-hop header unless set), since the admin's
# server answers an upgrade request with 400, which auth_request turns into a 500 for the user.
_UPGRADE = """\
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $wordslab_connection;"""

_GUARD = """\
            auth_request /_wordslab/auth;
            auth_request_set $wordslab_user $upstream_http_x_wordslab_user;
            error_page 401 = @wordslab_login;"""


def _location(path: str, body: str) -> str:
    return f"        location {path} {{\n{body}\n        }}\n"


# Prometheus' and Alertmanager's UIs and the docs say nothing about framing: without this, a
# page of the same site (which gets the SameSite=Lax cookie in a frame) could frame Alertmanager's
# prefilled "new silence" form under a decoy button. Grafana and the admin forbid it themselves.
_NO_FOREIGN_FRAMES = """\
            add_header X-Frame-Options SAMEORIGIN always;"""


def _proxied(path: str, upstream_url: str, *, user: bool) -> str:
    header = "$wordslab_user" if user else '""'
    frames = "" if user else f"\n            proxy_hide_header X-Frame-Options;\n{_NO_FOREIGN_FRAMES}"
    # Grafana refuses a POST whose Origin is not the Host it sees ("origin not allowed"), which
    # a platform proxy that rewrites Host causes for every panel query. A request the browser
    # itself marks same-origin (Sec-Fetch-Site, not settable by pages) needs no such check: its
    # Origin is dropped; any other keeps it, and Grafana checks it.
    origin = "\n            proxy_set_header Origin $wordslab_origin;" if user else ""
    return _location(path, f"{_GUARD}\n            proxy_pass {upstream_url};\n{_FORWARDED}\n{_UPGRADE}\n"
                           f"            proxy_set_header {AUTH_PROXY_HEADER} {header};{origin}{frames}")


def render(door: Door) -> str:
    """nginx.conf for `door`."""
    mime = (f"include {door.mime_types};" if door.mime_types else
            "types { text/html html; text/css css; application/javascript js; image/svg+xml svg; }")
    tmp = door.runtime / "tmp"
    locations = [
        # The question asked before every guarded request; never reachable from outside.
        _location("= /_wordslab/auth", f"""\
            internal;
            proxy_pass http://{door.admin}/admin/auth/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
{_FORWARDED}
            proxy_set_header {AUTH_PROXY_HEADER} "";"""),
        # Refused: the admin answers with a redirect to its login, next= the asked URL (encoded).
        _location("@wordslab_login", f"""\
            rewrite ^ /admin/auth/login-redirect break;
            proxy_method GET;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_pass http://{door.admin};
{_FORWARDED}
            proxy_set_header {AUTH_PROXY_HEADER} "";"""),
        # The admin guards its own pages (its login page must open without a session).
        _location("/admin/", f"""\
            proxy_pass http://{door.admin};
{_FORWARDED}
            proxy_set_header {AUTH_PROXY_HEADER} "";"""),
        _location("= /admin", "            return 301 /admin/;"),
    ]
    for route in door.routes:
        locations.append(_proxied(route.path, f"http://{route.upstream}/", user=False))
        locations.append(_location(f"= {route.path.rstrip('/')}", f"            return 301 {route.path};"))
    docs = door.docs_dir or door.runtime / "docs-placeholder"
    locations.append(_location("/docs/", f"""\
{_GUARD}
            alias {docs}/;
            index index.html index.md README.md;
            autoindex on;
            charset utf-8;
            types {{ text/html html htm; text/plain md txt; text/css css; application/javascript js;
                    image/png png; image/jpeg jpg jpeg; image/gif gif; image/svg+xml svg;
                    application/pdf pdf; }}
            default_type application/octet-stream;
{_NO_FOREIGN_FRAMES}"""))
    locations.append(_location("= /docs", "            return 301 /docs/;"))
    if door.grafana:
        locations.append(_proxied("/", f"http://{door.grafana}", user=True))
    else:
        locations.append(_location("= /", "            return 302 /admin/;"))
    user = "user root root;\n" if door.workers_as_root else ""
    return f"""\
# Written by wordslab-dashboard (wordslab_dashboard/door.py) at each start: edits are lost.
{user}worker_processes 1;
pid {door.runtime / "nginx.pid"};
error_log stderr warn;
daemon off;

events {{
    worker_connections 512;
}}

http {{
    {mime}
    default_type application/octet-stream;
    access_log off;
    server_tokens off;
    # Redirects stay relative: the browser's host is the platform proxy's, not ours.
    absolute_redirect off;
    client_max_body_size 64m;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    # What the platform's proxy (Runpod, Jarvislabs: HTTPS) says, else what we see.
    map $http_x_forwarded_proto $wordslab_proto {{
        default $http_x_forwarded_proto;
        "" $scheme;
    }}
    map $http_x_forwarded_host $wordslab_host {{
        default $http_x_forwarded_host;
        "" $http_host;
    }}
    map $http_sec_fetch_site $wordslab_origin {{
        same-origin "";
        default $http_origin;
    }}
    map $http_upgrade $wordslab_connection {{
        default upgrade;
        "" close;
    }}
    # A write another site's page makes (the browser says so in Sec-Fetch-Site, which pages
    # cannot set). SameSite=Lax keeps the door's cookie from cross-site ones only: a same-site
    # page still sends it, and same-site here means any other pod on the platform's proxy
    # domain (proxy.runpod.net is no public suffix) or any other port of the same host, while
    # Alertmanager, Prometheus and Grafana in auth-proxy mode have no CSRF check of their own.
    map "$request_method $http_sec_fetch_site" $wordslab_foreign_write {{
        "~*^(GET|HEAD|OPTIONS) " 0;
        "~* (cross-site|same-site)$" 1;
        default 0;
    }}

    server {{
        listen {url_host(door.listen_host)}:{door.port};
        server_name _;

        if ($wordslab_foreign_write) {{
            return 403 "refused: a write from another site's page\n";
        }}

{"".join(locations)}    }}
}}
"""


def _docs_placeholder() -> str:
    where = html.escape(DOCS_HOME)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wordslab docs</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>wordslab docs</h1>
<p>The wordslab-notebooks docs folder was not found on this machine.</p>
<p>Read them online: <a href="{where}">{where}</a>.</p>
<p>On a wordslab VM they are installed in
<code>$WORDSLAB_HOME/wordslab-notebooks-$WORDSLAB_VERSION/docs</code>; set
<code>WORDSLAB_DASHBOARD_DOCS_DIR</code> (or <code>wordslab-dashboard up --docs-dir</code>)
to serve another folder here.</p>
</body></html>
"""


def find_docs(settings: Settings) -> Path | None:
    """The docs folder to serve: settings.docs_dir when given, else the platform's own
    ($WORDSLAB_HOME/wordslab-notebooks-$WORDSLAB_VERSION/docs, or .../wordslab-notebooks/docs)."""
    if settings.docs_dir:
        return settings.docs_dir
    home = settings.home
    if not home:
        return None
    candidates = []
    if settings.version:
        candidates.append(home / f"wordslab-notebooks-{settings.version}" / "docs")
    candidates.append(home / "wordslab-notebooks" / "docs")
    return next((c for c in candidates if c.is_dir()), None)


def grafana_settings(public: str) -> dict[tuple[str, str], str]:
    """Grafana behind the door as (ini section, key) -> value, for `public` (the door's URL):
    at the door's root, signing users in from the door's header (trusted from loopback only),
    no anonymous access, no login form or basic auth (so no usable admin password), no calls home."""
    return {
        ("server", "root_url"): public.rstrip("/") + "/",
        ("auth.proxy", "enabled"): "true",
        ("auth.proxy", "header_name"): AUTH_PROXY_HEADER,
        ("auth.proxy", "header_property"): "username",
        ("auth.proxy", "auto_sign_up"): "true",
        ("auth.proxy", "whitelist"): "127.0.0.1, ::1",
        ("auth.anonymous", "enabled"): "false",
        ("auth.basic", "enabled"): "false",
        ("auth", "disable_login_form"): "true",
        ("auth", "disable_signout_menu"): "true",  # signing out is the admin's: it closes the door
        ("users", "allow_sign_up"): "false",
        ("security", "admin_user"): "admin",
        ("security", "cookie_secure"): "true" if public.startswith("https://") else "false",
        ("security", "csrf_trusted_origins"): urlsplit(public).netloc,
        ("analytics", "reporting_enabled"): "false",
        ("analytics", "check_for_updates"): "false",
        ("news", "news_feed_enabled"): "false",
    }


def grafana_env(settings: dict[tuple[str, str], str]) -> dict[str, str]:
    """The same settings as GF_<SECTION>_<KEY> variables (Grafana's override rule)."""
    return {f"GF_{section.upper().replace('.', '_')}_{key.upper()}": value
            for (section, key), value in settings.items()}


def grafana_ini(settings: dict[tuple[str, str], str]) -> str:
    sections: dict[str, list[str]] = {}
    for (section, key), value in settings.items():
        sections.setdefault(section, []).append(f"{key} = {value}")
    return "".join(f"[{name}]\n" + "\n".join(lines) + "\n\n" for name, lines in sections.items())


def admin_password_file(state: Path) -> Path:
    """A random password for Grafana's built-in admin, made once (owner-only), never shown:
    with basic auth and the login form off no one logs in with it, and it is not Grafana's
    default "admin"."""
    path = state / "grafana-admin-password"
    if not path.is_file():
        state.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24))
    return path


def url_host(host: str) -> str:
    """`host` as a URL and nginx's `listen` want it: an IPv6 literal in brackets ("::1" and
    "[::1]" -> "[::1]"), anything else as it is."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return f"[{bare}]" if ":" in bare else bare


def port_problem(host: str, port: int) -> str | None:
    """Why the door cannot listen on host:port (another program has it, e.g. wordslab-notebooks'
    own dashboard on DASHBOARD_PORT), or None. Checked before nginx starts, whose exit would
    stop the whole stack. `host` may be an IPv6 literal, bracketed or not."""
    bare = url_host(host).strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bare, port))
        except OSError as exc:
            return (f"cannot listen on {url_host(host)}:{port} ({exc.strerror or exc}): stop what uses the port "
                    f"or choose another with --dashboard-port / DASHBOARD_PORT")
    return None
