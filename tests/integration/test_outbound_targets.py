"""Requests that carry an API key never go to link-local or cloud metadata addresses: refused
at save time with a form message (real admin), and at call time (real exporter, real provider
calls), whatever spelling the address takes."""
from __future__ import annotations

import ipaddress
import urllib.request
from http.server import BaseHTTPRequestHandler

import pytest

from common import http_client, outbound
from common.store.services import ExternalApi
from common.store.vms import HostingPlatform, Vm, VmTemplate
from tests.fakes.loopback import send_json, serving
from tests.support.admin_http import AdminHttp, flashes, page_text
from tests.support.admin_server import start_admin
from tests.support.polling import wait_for
from tests.support.prometheus import start_exporter

pytestmark = pytest.mark.integration

METADATA_URLS = [
    "http://169.254.169.254/latest", "http://metadata.google.internal/computeMetadata/v1",
    "http://METADATA.google.internal./v1", "http://[::ffff:169.254.169.254]/v1", "http://[::ffff:a9fe:a9fe]/v1",
    "http://[fd00:ec2::254]/v1", "http://100.100.100.200/v1", "http://2852039166/v1",
    "http://0251.0376.0251.0376/v1", "http://0xa9fea9fe/v1", "http://169.254.170.2/v2", "http://[fe80::1]/v1",
    "http://[64:ff9b::a9fe:a9fe]/v1", "https://169.254.169.254:443/v1",
]


@pytest.fixture(scope="module")
def admin(tmp_path_factory):
    server = start_admin(tmp_path_factory.mktemp("outbound") / "vm")
    yield server
    server.stop()


@pytest.mark.parametrize("url", METADATA_URLS)
def test_an_external_api_at_a_metadata_address_is_refused_on_save(admin, url):
    web = AdminHttp(admin)
    response = web.post("/admin/external_apis/new/", {
        "name": "meta", "provider": "other", "api_type": "openai", "base_url": url,
        "new_api_key": "sk-test-0123456789abcdef", "probe_interval_seconds": "60"})
    assert "cloud metadata" in page_text(response.text), flashes(response.text)
    with admin.sessions()() as s:
        assert s.query(ExternalApi).count() == 0


@pytest.mark.parametrize("url", ["http://169.254.169.254/openapi.json", "http://2852039166/spec"])
def test_a_spec_url_at_a_metadata_address_is_refused_on_save(admin, url):
    response = AdminHttp(admin).post("/admin/external_apis/new/", {
        "name": "spec", "provider": "other", "api_type": "openAPI", "base_url": "http://127.0.0.1:9/v1",
        "spec_url": url, "probe_interval_seconds": "60"})
    assert "spec URL" in page_text(response.text) and "cloud metadata" in page_text(response.text)


@pytest.mark.parametrize("url", METADATA_URLS[:6])
def test_a_hosting_platform_at_a_metadata_address_is_refused_on_save(admin, url):
    response = AdminHttp(admin).post("/admin/platforms/new/", {"name": "rp", "provider": "runpod.io",
                                                                "base_url": url})
    assert "API base URL" in page_text(response.text) and "cloud metadata" in page_text(response.text)
    with admin.sessions()() as s:
        assert s.query(HostingPlatform).count() == 0


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1", "http://localhost:11434", "http://10.1.2.3:8000/v1",
                                 "https://api.openai.com/v1"])
def test_loopback_lan_and_public_addresses_are_allowed(admin, url):
    response = AdminHttp(admin).post("/admin/external_apis/new/", {
        "name": "ok", "provider": "other", "api_type": "openai", "base_url": url, "probe_interval_seconds": "3600"})
    assert "link-local" not in page_text(response.text)
    with admin.sessions().begin() as s:
        assert s.query(ExternalApi).filter_by(base_url=url.rstrip("/")).count() == 1
        s.query(ExternalApi).delete()


def test_rows_saved_before_the_check_are_refused_at_call_time(tmp_path):
    """An external API and a hosting platform at metadata addresses already in the DB: the
    exporter's probe reports the refusal, the VM create answers with it, nothing is sent."""
    server = start_admin(tmp_path / "vm")
    try:
        with server.sessions().begin() as s:
            s.add(ExternalApi(name="meta", provider="other", api_type="openai",
                              base_url="http://[::ffff:169.254.169.254]/v1", api_key="sk-test-0123456789abcdef"))
            platform = HostingPlatform(name="rp", provider="runpod.io", api_key="rpa_0123456789abcdef",
                                       base_url="http://2852039166")
            template = VmTemplate(name="t", platform=platform, gpu="A6000", compute_usd_per_hour=1.0)
            s.add_all([platform, template, Vm(name="trainer", template=template, container_gb=20, status="new")])
        with server.sessions()() as s:
            vm_id = s.query(Vm).one().id
        response = AdminHttp(server).post(f"/admin/vms/action/{vm_id}/create/", {"confirm": "1"})
        assert response.status_code == 200
        shown = " ".join(flashes(response.text))
        assert "link-local or cloud metadata" in shown and "may have created" not in shown, shown

        process, address = start_exporter(server.env, [], tmp_path)
        try:
            def refused():
                body = urllib.request.urlopen(f"http://{address}/metrics", timeout=30).read().decode()
                return [l for l in body.splitlines()
                        if l.startswith("wordslab_external_api_last_error_info") and "link-local" in l]
            assert wait_for(refused, 60, "the probe's refusal in /metrics", interval=0.5)
        finally:
            process.stop()
    finally:
        server.stop()


class _Recording(BaseHTTPRequestHandler):
    seen: list[str] = []

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        type(self).seen.append(self.headers.get("Authorization", ""))
        send_json(self, 200, {"data": []})


def test_the_address_connected_to_is_checked_before_any_byte_is_sent(monkeypatch):
    """A name that passes the name check but connects to a refused address (DNS rebinding):
    with loopback standing in for the metadata network, nothing reaches the server."""
    _Recording.seen = []
    with serving(_Recording) as url:
        port = url.rsplit(":", 1)[1]
        assert http_client.get(f"http://localhost:{port}/", headers={"Authorization": "Bearer k"},
                               timeout=5, carries_secret=True).status_code == 200
        monkeypatch.setattr(outbound, "BLOCKED_NETWORKS", (ipaddress.ip_network("127.0.0.0/8"),
                                                           ipaddress.ip_network("::1/128")))
        monkeypatch.setattr(outbound, "resolve", lambda host: [])  # the name check sees nothing wrong
        with pytest.raises(http_client.ForbiddenDestination, match="link-local or cloud metadata"):
            http_client.get(f"http://localhost:{port}/", headers={"Authorization": "Bearer k"},
                            timeout=5, carries_secret=True)
        # Without a key on board the same call is not checked.
        assert http_client.get(f"http://localhost:{port}/", timeout=5).status_code == 200
    assert _Recording.seen == ["Bearer k", ""]


def test_a_redirect_to_a_metadata_address_is_not_followed_with_the_key():
    class Redirect(BaseHTTPRequestHandler):
        def log_message(self, format, *args):
            pass

        def do_GET(self):
            send_json(self, 302, "", headers={"Location": "http://169.254.169.254/latest/meta-data/"})

    with serving(Redirect) as url:
        with pytest.raises(http_client.ForbiddenDestination):
            http_client.get(url, headers={"Authorization": "Bearer k"}, timeout=5, carries_secret=True)
