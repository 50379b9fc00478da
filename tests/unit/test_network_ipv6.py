"""IPv6-only VMs (issue 9 C): the interface of the IPv6 default route, its global address and
its counters, from recorded /proc/net/ipv6_route lines and from a real IPv6-only network
namespace (veth pair, global address, default route) built with iproute2.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest

from exporter.collectors.network import default_route6_interface, interface_address

ZERO = "0" * 32
# As the kernel writes it: a global default via fe80::1 on ens3, a higher-metric one on wlan0,
# the kernel's unreachable ::/0 on lo (RTF_REJECT), and link-local and host routes.
IPV6_ROUTE = f"""\
fe800000000000000000000000000000 40 {ZERO} 00 {ZERO} 00000100 00000001 00000000 00000001     ens3
{ZERO} 00 {ZERO} 00 fe800000000000000000000000000001 00000600 00000001 00000000 00000003     wlan0
{ZERO} 00 {ZERO} 00 fe800000000000000000000000000001 00000400 00000001 00000000 00450003     ens3
{ZERO} 00 {ZERO} 00 {ZERO} ffffffff 00000001 00000000 00200200       lo
00000000000000000000000000000001 80 {ZERO} 00 {ZERO} 00000000 00000002 00000000 80200001       lo
"""


def test_ipv6_default_route_from_proc(tmp_path):
    path = tmp_path / "ipv6_route"
    path.write_text(IPV6_ROUTE)
    assert default_route6_interface(path) == "ens3"  # metric 0x400 beats wlan0's 0x600
    path.write_text("\n".join(l for l in IPV6_ROUTE.splitlines() if "ens3" not in l) + "\n")
    assert default_route6_interface(path) == "wlan0"
    path.write_text("\n".join(l for l in IPV6_ROUTE.splitlines() if l.endswith("lo")) + "\n")
    assert default_route6_interface(path) is None  # only the unreachable route: no way out
    assert default_route6_interface(tmp_path / "absent") is None


def test_address_prefers_ipv4_then_global_ipv6_over_link_local():
    def addr(family, address):
        return SimpleNamespace(family=family, address=address)
    link_local, ula, global_ = (addr(socket.AF_INET6, a) for a in ("fe80::5%ens3", "fd00::5", "2a01:4f8::5"))
    assert interface_address([link_local, ula, global_]) == "2a01:4f8::5"
    assert interface_address([link_local, ula]) == "fd00::5"
    assert interface_address([link_local]) == "fe80::5"
    assert interface_address([link_local, addr(socket.AF_INET, "10.0.0.5")]) == "10.0.0.5"


# Run inside the namespace: set up an IPv6-only link, send traffic out of it, scrape.
NAMESPACE_SCRIPT = r"""
import json, socket, subprocess
def ip(*args): subprocess.run(["ip", *args], check=True)
ip("link", "set", "lo", "up")
ip("link", "add", "v0", "type", "veth", "peer", "name", "v1")
ip("link", "set", "v0", "up"); ip("link", "set", "v1", "up")
ip("-6", "addr", "add", "2a01:4f8::5/64", "dev", "v0", "nodad")
ip("-6", "route", "add", "default", "via", "2a01:4f8::1", "dev", "v0")
# The router's address answered by v1's MAC, so packets leave v0 without waiting for neighbor discovery.
def link(name):  # iproute2's JSON (/sys still shows the outer namespace)
    return json.loads(subprocess.run(["ip", "-j", "-s", "link", "show", name], check=True,
                                     capture_output=True, text=True).stdout)[0]
peer_mac = link("v1")["address"]
ip("-6", "neigh", "add", "2a01:4f8::1", "lladdr", peer_mac, "dev", "v0", "nud", "permanent")
with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
    for _ in range(20):
        s.sendto(b"x" * 1000, ("2a01:4f8:ffff::99", 9))  # off-link: out through the default route
from common.config import Settings
from exporter.collectors.network import NetworkCollector
from tests.support.metrics import scrape
collector = NetworkCollector(Settings.from_env({}))
collector.interface_source.refresh_now()
result = scrape(collector)
print(json.dumps({"info": result.labels("wordslab_network_info"),
                  "sent": result.value("wordslab_network_transmit_bytes_total", interface="v0"),
                  "tx_bytes": link("v0")["stats64"]["tx"]["bytes"]}))
"""


def can_make_network_namespaces() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not can_make_network_namespaces(), reason="needs unshare -n (root) and iproute2")
def test_ipv6_only_machine_shows_the_default_route_interface_and_its_traffic():
    done = subprocess.run(["unshare", "-n", sys.executable, "-c", NAMESPACE_SCRIPT],
                          capture_output=True, text=True, env=os.environ, timeout=60)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["info"] == [{"interface": "v0", "ip_address": "2a01:4f8::5"}]
    # The counter read during the scrape: the 20 datagrams went out through v0 before it.
    assert 20 * 1000 <= got["sent"] <= got["tx_bytes"]
