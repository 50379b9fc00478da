"""NetworkCollector: default-route parsing, real loopback traffic, max rates kept across restarts."""
from __future__ import annotations

import json
import socket
import threading

import psutil
import pytest

from exporter.collectors.network import MAX_RATES_FILE, NetworkCollector, default_route_interface
from common.config import Settings
from tests.support.metrics import promtool_problems, scrape

HEADER = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"


def route_file(tmp_path, *rows: str):
    path = tmp_path / "route"
    path.write_text(HEADER + "".join(row + "\n" for row in rows))
    return path


def route(iface, dest="00000000", flags="0003", metric=0, mask="00000000"):
    return f"{iface}\t{dest}\t010200C0\t{flags}\t0\t0\t{metric}\t{mask}\t0\t0\t0"


def test_default_route_with_the_lowest_metric_wins(tmp_path):
    path = route_file(tmp_path, route("eth0", dest="000200C0", mask="00FFFFFF"),
                      route("wlan0", metric=600), route("eth1", metric=100),
                      route("tun0", flags="0002", metric=0))  # not up
    assert default_route_interface(path) == "eth1"
    assert default_route_interface(route_file(tmp_path, route("eth0", dest="000200C0", mask="00FFFFFF"))) is None
    assert default_route_interface(tmp_path / "absent") is None


def kernel_routed_interface() -> str | None:
    """The interface the kernel's own route lookup picks for an off-link address (TEST-NET-3, so
    only a default route covers it); None without a route. Connecting UDP sends no packet."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))
        except OSError:  # ENETUNREACH: no default route
            return None
        source = probe.getsockname()[0]
    owners = [name for name, addrs in psutil.net_if_addrs().items()
              if any(a.family == socket.AF_INET and a.address == source for a in addrs)]
    assert len(owners) == 1, f"{source} belongs to {owners}"
    return owners[0]


def test_this_machines_default_route_is_the_one_the_kernel_uses():
    assert default_route_interface() == kernel_routed_interface()


def send_over_loopback(size: int) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    received = []

    def drain():
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(65536):
                received.append(len(chunk))

    reader = threading.Thread(target=drain)
    reader.start()
    with socket.create_connection(server.getsockname()) as client:
        client.sendall(b"x" * size)
    reader.join()
    server.close()
    assert sum(received) == size


def loopback_collector(tmp_path, state_dir):
    settings = Settings.from_env({}, state_dir=state_dir)
    collector = NetworkCollector(settings, route_path=route_file(tmp_path, route("lo")),
                                 min_rate_interval_seconds=0.0)
    collector.interface_source.refresh_now()
    return collector


def test_primary_interface_traffic_and_max_rates_survive_a_restart(tmp_path):
    state = tmp_path / "state"
    first = loopback_collector(tmp_path, state)
    before = psutil.net_io_counters(pernic=True)["lo"]
    scrape(first)
    send_over_loopback(4 * 2**20)
    result = scrape(first)

    assert result.series("wordslab_network_info") == [({"interface": "lo", "ip_address": "127.0.0.1"}, 1.0)]
    assert result.value("wordslab_network_receive_bytes_total", interface="lo") >= before.bytes_recv + 4 * 2**20
    assert result.value("wordslab_network_transmit_bytes_total", interface="lo") >= before.bytes_sent + 4 * 2**20
    max_in = result.value("wordslab_network_receive_max_rate_bytes_per_second", interface="lo")
    max_out = result.value("wordslab_network_transmit_max_rate_bytes_per_second", interface="lo")
    assert max_in > 0 and max_out > 0
    assert json.loads((state / MAX_RATES_FILE).read_text()) == {"lo": {"receive": max_in, "transmit": max_out}}
    assert promtool_problems(result.text) == ""

    # A restarted exporter starts from the saved maxima; quiet scrapes never lower them.
    second = loopback_collector(tmp_path, state)
    for _ in range(2):
        again = scrape(second)
        assert again.value("wordslab_network_receive_max_rate_bytes_per_second", interface="lo") >= max_in
        assert again.value("wordslab_network_transmit_max_rate_bytes_per_second", interface="lo") >= max_out


def test_first_scrape_of_a_restart_reports_exactly_the_saved_maxima(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / MAX_RATES_FILE).write_text(json.dumps({"lo": {"receive": 125e6, "transmit": 12.5e6}}))
    result = scrape(loopback_collector(tmp_path, state))
    assert result.value("wordslab_network_receive_max_rate_bytes_per_second", interface="lo") == 125e6
    assert result.value("wordslab_network_transmit_max_rate_bytes_per_second", interface="lo") == 12.5e6


@pytest.mark.parametrize("content", ["{not json", '["a list"]', '{"lo": {"receive": -5, "transmit": "fast"}}'])
def test_corrupt_state_file_starts_from_zero(tmp_path, content):
    state = tmp_path / "state"
    state.mkdir()
    (state / MAX_RATES_FILE).write_text(content)
    result = scrape(loopback_collector(tmp_path, state))
    assert result.value("wordslab_network_receive_max_rate_bytes_per_second", interface="lo") == 0
    assert result.value("wordslab_collector_success", collector="network") == 1


def test_unwritable_state_dir_keeps_maxima_in_memory(tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state dir should be")
    collector = loopback_collector(tmp_path, blocker)
    scrape(collector)
    send_over_loopback(2**20)
    result = scrape(collector)
    assert result.value("wordslab_network_receive_max_rate_bytes_per_second", interface="lo") > 0
    assert result.value("wordslab_collector_success", collector="network") == 1


def test_route_to_a_vanished_interface_falls_back_to_one_that_is_up(tmp_path):
    collector = NetworkCollector(Settings.from_env({}, state_dir=tmp_path),
                                 route_path=route_file(tmp_path, route("veth-gone")))
    collector.interface_source.refresh_now()
    [(labels, _)] = scrape(collector).series("wordslab_network_info")
    assert labels["interface"] in psutil.net_if_addrs()
    assert labels["interface"] != "veth-gone"


def test_no_series_before_the_interface_is_known(tmp_path):
    collector = NetworkCollector(Settings.from_env({}, state_dir=tmp_path))
    result = scrape(collector)
    assert result.series("wordslab_network_info") == []
    assert result.value("wordslab_source_refresh_success", source="network_interface") == 0
