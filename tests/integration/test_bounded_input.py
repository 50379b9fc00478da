"""Bounded work for any input, against the real admin and exporter processes: every form field
has a length limit with a clear message, redaction is linear, every outbound HTTP call has a
total deadline, and the exporter serves many scrapers at once."""
from __future__ import annotations

import threading
import urllib.request

import pytest

from common import http_client
from common.redact import scrub, strip_userinfo
from common.sources.external_api_probe import ApiTarget, probe_api
from common.store.jobs import Job, public_target, utcnow
from common.store.services import ExternalApi
from common.store.vms import HostingPlatform
from tests.fakes.hostile_http import silent, trickling, trickling_headers
from tests.support.admin_http import AdminHttp, flashes, page_text
from tests.support.admin_server import start_admin
from tests.support.polling import wait_for
from tests.support.prometheus import start_exporter

pytestmark = pytest.mark.integration

HUGE = 100_000


@pytest.fixture
def admin(tmp_path):
    server = start_admin(tmp_path / "vm")
    yield server
    server.stop()


@pytest.fixture
def client(admin):
    return AdminHttp(admin)


def _jobs(admin) -> list[Job]:
    with admin.sessions()() as s:
        return s.query(Job).all()


# --- every form field is bounded ---------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("url", "https://github.com/" + "a" * HUGE, "Git URL is too long: at most 2,048 characters"),
    ("url", "a" * HUGE + ":x", "Git URL is too long"),
    ("name", "n" * HUGE, "Project name is too long: at most 100 characters"),
    ("branch", "b" * HUGE, "Branch is too long: at most 200 characters"),
])
def test_clone_form_refuses_huge_fields_with_a_message(admin, client, field, value, message):
    data = {"url": "https://github.com/o/r.git", "name": "", "branch": "", field: value}
    response = client.post("/admin/projects/new/", data)
    assert response.status_code == 200 and message in page_text(response.text)
    assert _jobs(admin) == []
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("field, value, message", [
    ("model", "q" * HUGE, "Model id is too long: at most 2,048 characters"),
    ("model", "library/" + "q" * HUGE + ":8b", "Model id is too long"),
    ("revision", "r" * HUGE, "Revision is too long: at most 200 characters"),
    ("provider", "p" * HUGE, "Provider is too long"),
])
def test_download_form_refuses_huge_fields_with_a_message(admin, client, field, value, message):
    data = {"provider": "ollama", "model": "qwen3:8b", "revision": "", field: value}
    response = client.post("/admin/models/new/", data)
    assert message in page_text(response.text)
    assert _jobs(admin) == []


@pytest.mark.parametrize("path", ["/admin/models/type/", "/admin/models/benchmark/"])
def test_model_actions_refuse_a_huge_model_id(admin, client, path):
    response = client.post(path, {"provider": "ollama", "model": "m" * HUGE, "model_type": "llm"})
    assert any("too long" in f for f in flashes(response.text)), flashes(response.text)
    assert _jobs(admin) == []


def test_model_delete_refuses_a_huge_model_id(client):
    response = client.get("/admin/models/delete/", params={"provider": "ollama", "model": "m" * 20_000})
    assert any("too long" in f for f in flashes(response.text))


@pytest.mark.parametrize("field, value, message", [
    ("name", "n" * HUGE, "Name is too long: at most 63 characters"),
    ("base_url", "https://api.example/" + "v" * HUGE, "Base URL is too long: at most 2,048 characters"),
    ("quota_description", "q" * HUGE, "Quota description is too long: at most 2,000 characters"),
    ("cost_per_call_description", "c" * HUGE, "Cost per call description is too long"),
    ("new_api_key", "k" * HUGE, "API key is too long: at most 1,024 characters"),
    ("new_admin_key", "k" * HUGE, "Admin key is too long"),
])
def test_external_api_form_refuses_huge_fields(admin, client, field, value, message):
    data = {"name": "openai", "provider": "openai", "api_type": "openai", "base_url": "https://api.example/v1",
            "probe_interval_seconds": "60", field: value}
    response = client.post("/admin/external_apis/new/", data)
    assert message in page_text(response.text)
    with admin.sessions()() as s:
        assert s.query(ExternalApi).count() == 0


@pytest.mark.parametrize("field, value, message", [
    ("name", "n" * HUGE, "Name is too long"),
    ("new_api_key", "k" * HUGE, "API key is too long"),
    ("base_url", "https://api.example/" + "v" * HUGE, "API base URL is too long"),
])
def test_platform_form_refuses_huge_fields(admin, client, field, value, message):
    data = {"name": "rp", "provider": "runpod", field: value}
    response = client.post("/admin/platforms/new/", data)
    assert message in page_text(response.text)
    with admin.sessions()() as s:
        assert s.query(HostingPlatform).count() == 0


def test_endpoint_form_refuses_a_huge_command_and_model(admin, client):
    for field, message in (("command", "Command is too long: at most 4,000 characters"),
                           ("model", "Model is too long")):
        data = {"name": "ep", "server": "fastapi", "service_type": "LLM", "api_type": "openai",
                "internal_port": "8123", field: "x" * HUGE}
        response = client.post("/admin/endpoints/new/", data)
        assert message in page_text(response.text)


def test_vm_settings_refuse_a_huge_number(client):
    response = client.post("/admin/vm_settings/", {"budget": "1" * HUGE, "interval": "60"})
    assert any("budget is too long" in f for f in flashes(response.text))


def test_a_request_body_over_one_megabyte_is_refused_before_parsing(client):
    response = client.post("/admin/projects/new/", {"url": "x" * (2 * 1024 * 1024)})
    assert response.status_code == 413


# --- redaction is linear -----------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "a" * 1_000_000, "a:" * 500_000, "a://" * 250_000, "a://@" * 200_000, "x@" * 500_000,
    "https://" + "u" * 1_000_000, "token=" * 150_000, "Bearer " * 150_000, "sk-" * 300_000,
])
def test_redaction_of_a_megabyte_of_hostile_text_finishes(text):
    """Each of these took the old regex O(n^2) (hours at this size); all scrubbers now scan once."""
    assert len(public_target(text)) <= len(text)
    assert len(scrub(text)) <= len(text)


def test_userinfo_is_still_removed_linearly():
    assert strip_userinfo("x https://u:p@h/r.git y ssh://git:pw@h:22/r http://tok@h") == \
        "x https://h/r.git y ssh://git@h:22/r http://h"
    assert strip_userinfo("a" * 50 + "https://t@h") == "a" * 50 + "https://h"


def test_a_huge_job_target_does_not_slow_the_exporter(tmp_path):
    """A job row with a 100,000-character target (written before the limits) renders in the
    scrape with its credentials removed, and every scrape of the real exporter answers."""
    from tests.support.env import wordslab_env
    from common.store import connect, init_db, session_factory
    env = wordslab_env(tmp_path)
    engine = connect(env["WORDSLAB_DASHBOARD_DB"])
    init_db(engine)
    with session_factory(engine).begin() as s:
        s.add(Job(kind="clone", target="https://user:tok@" + "h" * HUGE + "/r.git", status="running",
                  created_at=utcnow(), message="x://" * 25_000))
    engine.dispose()
    process, address = start_exporter(env, [], tmp_path)
    def scrape() -> str:
        return urllib.request.urlopen(f"http://{address}/metrics", timeout=30).read().decode()

    try:
        wait_for(lambda: 'kind="clone"' in scrape(), 30, "the job in /metrics", interval=0.5)
        for _ in range(3):
            body = scrape()
            assert 'kind="clone"' in body and "tok@" not in body
    finally:
        process.stop()


# --- every outbound call has a total deadline -------------------------------------------------

def test_a_trickling_server_fails_the_call_at_its_deadline():
    with trickling(interval_s=0.5) as url:
        with pytest.raises(http_client.DeadlineExceeded, match="no complete answer within 3 s"):
            http_client.get(url + "/v1/models", timeout=(1.0, 2.0))
        with pytest.raises(http_client.DeadlineExceeded):
            http_client.get(url, timeout=(1.0, 2.0), deadline=1.5)


def test_trickled_headers_fail_the_call_at_its_deadline():
    with trickling_headers(interval_s=0.3) as url:
        with pytest.raises(http_client.DeadlineExceeded):
            http_client.get(url, timeout=(1.0, 1.0))


def test_an_app_trickling_its_headers_is_down_after_the_deadline():
    from exporter.collectors.apps import probe
    with trickling_headers(interval_s=0.3) as url:
        assert probe(url + "/", timeout=1.0) is False


def test_a_silent_server_fails_within_the_read_timeout():
    with silent() as url:
        with pytest.raises(http_client.Timeout):
            http_client.get(url, timeout=(1.0, 1.0))


def test_an_external_api_probe_of_a_trickling_server_reports_failure():
    with trickling(interval_s=0.5) as url:
        target = ApiTarget(name="slow", provider="other", api_type="openai", base_url=url + "/v1")
        outcome = probe_api(target, "sk-test-key-0123456789", timeout=(1.0, 1.0))
    assert not outcome.up and outcome.state == "unreachable"
    assert "sk-test" not in outcome.error


def test_a_background_source_on_a_trickling_server_reports_failure(tmp_path):
    """The exporter's Ollama source against an Ollama that answers one byte every 0.5 s: the
    refresh fails at its deadline (7 s) and says so as a metric, instead of hanging for ever
    while the last success stays published."""
    from tests.support.env import wordslab_env
    with trickling(interval_s=0.5) as url:
        process, address = start_exporter(wordslab_env(tmp_path, OLLAMA_HOST=url), [], tmp_path)
        try:
            def failed():  # a refresh that ended, in failure (before the first one the value is 0 too)
                return "source models_ollama refresh failed" in process.log_path.read_text()
            wait_for(failed, 40, "the Ollama source's refresh to fail", interval=0.5)
            body = urllib.request.urlopen(f"http://{address}/metrics", timeout=30).read().decode()
            assert 'wordslab_source_refresh_success{source="models_ollama"} 0.0' in body
        finally:
            process.stop()
    assert "did not answer /api/tags in time" in process.log_path.read_text()


def test_a_trickling_hugging_face_hub_fails_the_size_check_at_its_deadline(monkeypatch):
    """The hub client (httpx) bounds each read only; the admin request waits a total deadline."""
    from admin.ops import model_ops
    monkeypatch.setattr(model_ops, "HUB_DEADLINE_SECONDS", 2.0)
    with trickling(interval_s=0.5) as url:
        with pytest.raises(model_ops.ModelOpError, match="did not answer within 2 s"):
            model_ops.hub_repo_size({"HF_ENDPOINT": url}, "org/model", None)


def test_a_header_with_a_line_break_is_refused_without_quoting_it():
    with pytest.raises(http_client.InvalidHeader) as err:
        http_client.get("http://127.0.0.1:9/", headers={"Authorization": "Bearer sk-abc\ndef"}, timeout=1)
    assert "sk-abc" not in str(err.value)


# --- the exporter serves many scrapers at once -------------------------------------------------

def test_twenty_concurrent_scrapes_all_succeed(tmp_path):
    from tests.support.env import wordslab_env
    process, address = start_exporter(wordslab_env(tmp_path), [], tmp_path)
    results: list[int | str] = []
    start = threading.Barrier(20)

    def scrape():
        start.wait()
        try:
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as response:
                response.read()
                results.append(response.status)
        except OSError as exc:
            results.append(repr(exc))

    try:
        for _round in range(3):
            threads = [threading.Thread(target=scrape) for _ in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        process.stop()
    assert results == [200] * 60
    import socketserver  # the listen backlog the server asks for, beyond socketserver's 5
    from exporter.server import _ThreadingWSGIServer
    assert _ThreadingWSGIServer.request_queue_size >= 64 > socketserver.TCPServer.request_queue_size
