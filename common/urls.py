"""Building and cleaning the VM's app URLs."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from common.config import Settings


def url_for_port(root_url: str | None, port: int | str | None) -> str:
    """WORDSLAB_ROOT_URL + port: "https://host:" + 8888 -> "https://host:8888" ("" if either is missing)."""
    if not root_url or port in (None, ""):
        return ""
    root = root_url.rstrip("/")
    if not root.endswith(":"):
        root += ":"
    return f"{root}{port}"


def public_url(url: str) -> str:
    """Drop credentials, query and fragment so tokens in a URL never reach /metrics."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return ""
    if not parts.scheme or not host:
        return ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _port_number(value: int | str | None) -> int | None:
    text = str(value).strip() if value not in (None, "") else ""
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def public_port(env: Mapping[str, str], port: int | str) -> int | None:
    """The port the user's browser connects to for the VM's `port`: Vast.ai publishes port P
    on VAST_TCP_PORT_P; elsewhere the same port. None when `port` is no port number."""
    internal = _port_number(port)
    if internal is None:
        return None
    return _port_number(env.get(f"VAST_TCP_PORT_{internal}")) or internal


def public_port_url(settings: "Settings", port: int | str, url_var: str | None = None) -> str:
    """The URL at which the user's browser reaches the VM's `port`, by the platform's own rules
    (those wordslab-notebooks uses for its app links), first match wins:

    1. the app's URL variable (`url_var`, e.g. DASHBOARD_URL) when the platform set it
       (Jarvislabs gives one endpoint per port);
    2. Runpod: https://<RUNPOD_POD_ID>-<port>.proxy.runpod.net (its HTTPS proxy);
    3. WORDSLAB_ROOT_URL + the public port ("https://host:" + 8888; WSL: http://localhost:);
    4. Vast.ai without WORDSLAB_ROOT_URL: http://<PUBLIC_IPADDR>:<VAST_TCP_PORT_<port>>.

    Credentials, query and fragment are dropped. "" when no rule applies or `port` is invalid.
    """
    env = settings.env
    if url_var and env.get(url_var):
        return public_url(env[url_var])
    external = public_port(env, port)
    if external is None:
        return ""
    if env.get("RUNPOD_POD_ID"):
        return f"https://{env['RUNPOD_POD_ID']}-{_port_number(port)}.proxy.runpod.net"
    if settings.root_url:
        return url_for_port(settings.root_url, external)
    if env.get("PUBLIC_IPADDR") and env.get(f"VAST_TCP_PORT_{_port_number(port)}"):
        return f"http://{env['PUBLIC_IPADDR']}:{external}"
    return ""


def dashboard_url(settings: "Settings") -> str:
    """Where the user's browser opens the dashboard's front door, without a trailing slash:
    WORDSLAB_DASHBOARD_PUBLIC_URL when set, else the platform's public URL for the door's port
    (public_port_url; DASHBOARD_URL counts when the door is on DASHBOARD_PORT), else
    http://localhost:<port> (a local machine, WSL with localhost forwarding)."""
    port = settings.dashboard_port
    if settings.public_url:
        return public_url(settings.public_url).rstrip("/")
    same_port = str(port) == (settings.get("DASHBOARD_PORT") or "8888")
    found = public_port_url(settings, port, "DASHBOARD_URL" if same_port else None)
    return (found or f"http://localhost:{port}").rstrip("/")
