"""Building and cleaning the VM's app URLs."""
from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


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
