"""Secrets never leave the processes, including inside echoed errors: against the real admin,
the real exporter and the real Prometheus, with a started endpoint that prints tokens, a
provider that echoes the key, and a key with a line break."""
from __future__ import annotations

import json
import shlex
import urllib.parse
import urllib.request

import pytest

from common.store.jobs import Job
from common.store.services import Endpoint
from common.store.vms import HostingPlatform, Vm, VmTemplate
from tests.fakes.cloud_providers import API_KEY, FakeRunpod, serve
from tests.support.admin_http import AdminHttp, flashes
from tests.support.admin_server import start_admin
from tests.support.env import free_port
from tests.support.polling import wait_for
from tests.support.prometheus import PrometheusServer, prepare_config, start_exporter

pytestmark = pytest.mark.integration

# Stored in the admin as an external API key: no token shape, masked only because it is known.
KNOWN_KEY = "zq7Custom0Secret4242abcd"
PRINTED = {
    "query token": "f00dcafe0123456789abcdef",
    "env line": "hf_AbCdEf0123456789xyzXYZ",
    "known key": KNOWN_KEY,
    "bearer": "eyJhbGciOiJIUzI1NiJ9.cGF5bG9hZA.c2ln",
    "url password": "pa55word99x",
}
LEAKY_OUTPUT = [
    "INFO starting",
    f"INFO open http://127.0.0.1:8888/lab?token={PRINTED['query token']} Authorization: Bearer {PRINTED['bearer']}",
    f"export HF_TOKEN={PRINTED['env line']} using key {KNOWN_KEY}",
    f"ERROR cannot reach https://bob:{PRINTED['url password']}@git.example/x.git",
]


def _absent(text: str, where: str) -> None:
    for kind, secret in PRINTED.items():
        assert secret not in text, f"{kind} secret shown in {where}"


@pytest.fixture
def admin(tmp_path):
    server = start_admin(tmp_path / "vm")
    yield server
    server.stop()


def test_tokens_printed_by_a_started_endpoint_stay_in(admin, tmp_path):
    web = AdminHttp(admin)
    response = web.post("/admin/external_apis/new/", {
        "name": "custom", "provider": "other", "api_type": "openai", "base_url": "http://127.0.0.1:9/v1",
        "new_api_key": KNOWN_KEY, "probe_interval_seconds": "3600"})
    assert response.status_code == 200 and not any("Failed" in f for f in flashes(response.text))
    script = "; ".join(f"echo {shlex.quote(line)}" for line in LEAKY_OUTPUT) + "; exit 3"
    port = free_port()
    response = web.post("/admin/endpoints/new/", {
        "name": "leaky", "server": "fastapi", "service_type": "LLM", "api_type": "openai",
        "internal_port": str(port), "command": f"sh -c {shlex.quote(script)}"})
    assert response.status_code == 200, flashes(response.text)
    with admin.sessions()() as s:
        endpoint_id = s.query(Endpoint).filter_by(name="leaky").one().id
    web.post(f"/admin/endpoints/action/{endpoint_id}/start")

    def failed():
        with admin.sessions()() as s:
            row = s.query(Endpoint).filter_by(name="leaky").one()
            jobs = s.query(Job).filter(Job.status == "failed").all()
            return (row.last_error, jobs[0].message) if row.status == "error" and jobs else None

    last_error, job_message = wait_for(failed, 60, "the endpoint start to fail", interval=0.5)
    # Stored already scrubbed: whatever shows the row later cannot leak.
    for text, where in ((last_error, "endpoints.last_error"), (job_message, "jobs.message")):
        _absent(text, where)
        assert "***" in text and "INFO open" in text
    for path in ("/admin/endpoints/", "/admin/jobs/", "/admin/jobs/status.json", "/admin/"):
        _absent(web.get(path).text, f"admin page {path}")

    process, address = start_exporter(admin.env, [], tmp_path)
    prometheus = None
    try:
        def published():
            body = urllib.request.urlopen(f"http://{address}/metrics", timeout=30).read().decode()
            lines = [l for l in body.splitlines()
                     if l.startswith("wordslab_endpoint_last_error_info") and 'endpoint="leaky"' in l]
            return (body, lines[0]) if lines and "INFO open" in lines[0] else None

        body, line = wait_for(published, 60, "the exporter to publish the endpoint's error", interval=0.5)
        _absent(body, "/metrics")
        assert "***" in line
        prometheus = PrometheusServer.start(prepare_config(tmp_path / "state", address), tmp_path)
        prometheus.wait_for_samples(address, 1, timeout=60)
        result = prometheus.query('wordslab_endpoint_last_error_info{endpoint="leaky"}')["data"]["result"]
        assert result and "***" in result[0]["metric"]["error"]
        _absent(json.dumps(prometheus.query("{__name__=~'wordslab_.+'}")), "Prometheus")
        _absent(process.log_path.read_text(errors="replace"), "the exporter log")
    finally:
        if prometheus is not None:
            prometheus.stop()
        process.stop()
    _absent(admin.log(), "the admin log")


def _vm_rows(admin, base_url: str, *, api_key: str | None = None, api_key_var: str | None = None) -> int:
    with admin.sessions().begin() as s:
        platform = HostingPlatform(name="rp", provider="runpod.io", api_key=api_key, api_key_var=api_key_var,
                                   base_url=base_url)
        template = VmTemplate(name="a6000", platform=platform, gpu="NVIDIA RTX A6000", vram_gb=48, vcpus=8,
                              ram_gb=50, compute_usd_per_hour=1.0)
        vm = Vm(name="trainer", template=template, container_gb=20, volume_gb=10, status="new")
        s.add_all([platform, template, vm])
        s.flush()
        return vm.id


def _new_vm_on_the_platform(admin) -> int:
    """A VM (status new) on a template of the one hosting platform saved; its id."""
    with admin.sessions().begin() as s:
        platform = s.query(HostingPlatform).one()
        template = VmTemplate(name="a6000", platform=platform, gpu="NVIDIA RTX A6000", compute_usd_per_hour=1.0)
        s.add_all([template, Vm(name="trainer", template=template, container_gb=20, status="new")])
    with admin.sessions()() as s:
        return s.query(Vm).one().id


def test_a_provider_error_that_echoes_the_key_is_masked_everywhere(admin):
    fake = FakeRunpod()
    fake.fail = "echo_key"
    with serve(fake) as base_url:
        web = AdminHttp(admin)
        response = web.post("/admin/platforms/new/", {"name": "rp", "provider": "runpod.io",
                                                      "new_api_key": API_KEY, "base_url": base_url})
        assert response.status_code == 200
        vm_id = _new_vm_on_the_platform(admin)
        response = web.post(f"/admin/vms/action/{vm_id}/create/", {"confirm": "1"})
        assert response.status_code == 200
        shown = flashes(response.text)
        assert any("invalid request" in f and "***" in f for f in shown), shown
        assert API_KEY not in response.text
        assert fake.requests and all(API_KEY in auth for _, _, auth in fake.requests)  # it was sent
        listing = web.get("/admin/vms/").text
        details = web.get(f"/admin/vms/details/?id={vm_id}").text
    for text, where in ((listing, "VM list"), (details, "VM details"), (admin.log(), "admin log")):
        assert API_KEY not in text, where
    with admin.sessions()() as s:
        assert API_KEY not in s.query(Vm).one().last_error


# A base64-ish key (+, /, =) as some providers issue them.
SLASHED_KEY = "rpa_Ab+Cd/EfGh0123/IjKl4567=="


@pytest.mark.parametrize("echo", ["echo_key_late", "echo_key_escaped"])
def test_a_provider_error_that_echoes_the_key_cut_or_escaped_shows_none_of_it(admin, echo):
    """A cut to a short excerpt must come after the masking (else the key's first part stays),
    and the key is masked in the forms an answer quotes it in: JSON's \\/ and URL quoting."""
    fake = FakeRunpod(api_key=SLASHED_KEY)
    fake.fail = echo
    with serve(fake) as base_url:
        web = AdminHttp(admin)
        web.post("/admin/platforms/new/", {"name": "rp", "provider": "runpod.io",
                                           "new_api_key": SLASHED_KEY, "base_url": base_url})
        vm_id = _new_vm_on_the_platform(admin)
        response = web.post(f"/admin/vms/action/{vm_id}/create/", {"confirm": "1"})
        shown = flashes(response.text)
        assert any("invalid request" in f for f in shown), shown
        assert fake.requests and all(SLASHED_KEY in auth for _, _, auth in fake.requests)  # it was sent
        pages = response.text + web.get("/admin/vms/").text + web.get(f"/admin/vms/details/?id={vm_id}").text
    with admin.sessions()() as s:
        stored = s.query(Vm).one().last_error or ""
    body = SLASHED_KEY.removeprefix("rpa_")
    pieces = {SLASHED_KEY[:9], body[-8:], body.replace("/", "\\/")[:12], urllib.parse.quote(body)[:12]}
    for text, where in ((pages, "pages"), (admin.log(), "admin log"), (stored, "last_error")):
        for piece in pieces:
            assert piece not in text, (where, piece)


def test_a_key_with_a_line_break_is_refused_at_the_form_and_never_logged(admin):
    web = AdminHttp(admin)
    key = "rpa_FIRSTHALF0123456789\nSECONDHALF0123456789"
    response = web.post("/admin/platforms/new/", {"name": "rp", "provider": "runpod.io", "new_api_key": key})
    assert response.status_code == 200
    assert "no spaces or line breaks" in response.text
    with admin.sessions()() as s:
        assert s.query(HostingPlatform).count() == 0
    for half in key.split("\n"):
        assert half not in response.text and half not in admin.log()


def test_a_key_with_a_line_break_from_the_environment_fails_the_create_cleanly(tmp_path):
    key = "rpa_FIRSTHALF0123456789\nSECONDHALF0123456789"
    fake = FakeRunpod(api_key=key)
    with serve(fake) as base_url:
        server = start_admin(tmp_path / "vm", env={"RUNPOD_NL_KEY": key})
        try:
            vm_id = _vm_rows(server, base_url, api_key_var="RUNPOD_NL_KEY")
            web = AdminHttp(server)
            response = web.post(f"/admin/vms/action/{vm_id}/create/", {"confirm": "1"})
            assert response.status_code == 200, response.text[:500]
            shown = " ".join(flashes(response.text))
            assert "line break" in shown, shown
            assert not fake.instances and not fake.requests  # nothing was sent, nothing rented
            for half in key.split("\n"):
                assert half not in response.text and half not in server.log()
                assert half not in web.get("/admin/vms/").text
        finally:
            server.stop()


def test_scrubbed_text_covers_the_shapes_a_key_takes():
    from common import redact
    redact.remember("line-one-of-a-key\nline-two-of-a-key", "p@ss w0rd!%")
    text = redact.scrub("a line-one-of-a-key b line-two-of-a-key c p%40ss%20w0rd%21%25 d")
    assert text == "a *** b *** c *** d"
    assert redact.scrub("GET /x?api_key=abcdef&access_token=123456&ok=1") == \
        "GET /x?api_key=***&access_token=***&ok=1"
    assert redact.scrub('{"password": "hunter2hunter2"}') == '{"password": "***"}'
    assert redact.scrub("ghp_0123456789abcdefGHIJ github_pat_11ABCDEFG0_xyzxyzxyz sk-proj-AbCdEf0123456789") == \
        "*** *** ***"
    # Names that look like prefixes but are not keys stay (projects, models, words).
    for name in ("sk-learn-notebooks", "hf-experiments-2024", "pk-tokenizer", "basic usage", "Token expired"):
        assert redact.scrub(name) == name
    redact.remember("correct horse battery staple")
    assert redact.scrub("a correct answer") == "a correct answer"
    assert urllib.parse.quote("p@ss w0rd!%", safe="") == "p%40ss%20w0rd%21%25"
