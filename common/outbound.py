"""Where an API key may be sent: anywhere but link-local addresses and cloud metadata services.

A request that carries a key (external API probes and cost reads, cloud provider calls) to
169.254.169.254 & co. would hand the key, or the VM's own cloud credentials, to whoever can
edit a base URL. Refused, by name and by address:

- link-local networks: 169.254.0.0/16 and fe80::/10 (every cloud's metadata service lives there);
- the other metadata addresses: fd00:ec2::254 (AWS IPv6), 100.100.100.200 (Alibaba);
- the metadata host names (metadata.google.internal, metadata.goog, instance-data...);
- the same addresses written otherwise: IPv4-mapped or -compatible IPv6 (::ffff:169.254.169.254),
  NAT64 (64:ff9b::a9fe:a9fe), 6to4, and the decimal, octal or hex forms the resolver accepts
  (2852039166, 0251.0376.0251.0376), since names are checked by what they resolve to.

Loopback and private networks stay allowed: local model servers, LAN gateways and proxies.
`check_url` runs at save time (a form message) and at call time; common.http_client also
checks the address it actually connected to before sending a byte (DNS rebinding).
"""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

BLOCKED_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32"))
BLOCKED_NAMES = frozenset({
    "metadata.google.internal", "metadata.goog", "metadata", "instance-data",
    "instance-data.ec2.internal", "metadata.azure.com", "metadata.platformequinix.com",
})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPAT = ipaddress.ip_network("::/96")


class ForbiddenDestination(ValueError):
    """An API key would go to a link-local or cloud metadata address; the message says which."""


def _embedded(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list:
    """The address and any IPv4 address an IPv6 one carries."""
    found = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        for v4 in (ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None):
            if v4 is not None:
                found.append(v4)
        if ip in _NAT64 or (ip in _COMPAT and int(ip) > 1):
            found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def check_address(address: str, host: str = "") -> None:
    """Raise ForbiddenDestination when `address` (an IP literal) is a refused one."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # no IPv6 zone id
    except ValueError:
        return
    for candidate in _embedded(ip):
        if any(candidate in net for net in BLOCKED_NETWORKS if net.version == candidate.version):
            shown = f"{host} ({address})" if host and host != address else address
            raise ForbiddenDestination(
                f"{shown} is a link-local or cloud metadata address: API keys are never sent there")


def resolve(host: str) -> list[str]:
    """Every address `host` resolves to ([] when it does not resolve)."""
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})
    except (OSError, UnicodeError):
        return []


def _name(host: str) -> str:
    return (host or "").strip().strip("[]").rstrip(".").lower()


def check_name(host: str) -> None:
    """Refuse a metadata host name or a refused IP literal, without resolving anything."""
    name = _name(host)
    if name in BLOCKED_NAMES:
        raise ForbiddenDestination(f"{name} is a cloud metadata service: API keys are never sent there")
    check_address(name, name)


def check_host(host: str) -> None:
    """`check_name`, then every address the name resolves to."""
    name = _name(host)
    if not name:
        return
    check_name(name)
    for address in resolve(name):
        check_address(address, name)


def check_url(url: str) -> None:
    """`check_host` for the host of an http(s) URL (anything unparsable is left to the caller)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return
    if host:
        check_host(host)
