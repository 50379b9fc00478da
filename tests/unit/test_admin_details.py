"""Admin details a user meets on every page: labels, help texts, money, plurals, Grafana's state,
the Ollama download form, discovered endpoints and the external APIs' status."""
from __future__ import annotations

import re

import pytest

from admin.formatting import human_bytes, plural, usd
from common.store import session_factory
from common.store.services import ExternalApi
from common.store.vms import HostingPlatform, VmTemplate
from tests.fakes.http_apps import answering
from tests.fakes.loopback import serving
from tests.fakes.openai_like import make_handler
from tests.support.admin import csrf_from, logged_in_client, make_admin_app
from tests.support.env import free_port


def view_of(app, endpoint: str):
    (admin,) = app.extensions["admin"]
    (view,) = [v for v in admin._views if v.endpoint == endpoint]
    return view


@pytest.fixture
def client(vm_env):
    return logged_in_client(make_admin_app(vm_env))


def test_labels_keep_their_acronyms(client):
    for page, label in (("/admin/external_apis/", "API type"), ("/admin/vm_templates/", "GPU count"),
                        ("/admin/vms/", "Terminal URL"), ("/admin/platforms/", "API key env var")):
        text = client.get(page).text
        assert label in text, page
    for page in ("/admin/external_apis/", "/admin/vm_templates/", "/admin/vms/", "/admin/external_apis/new/"):
        assert not re.search(r"\b(Api|Gpu|Url|Vm|Cpu)\b", client.get(page).text), page


def test_help_texts_show_their_placeholders_literally(client):
    endpoint_form = client.get("/admin/endpoints/new/").text
    assert "http://127.0.0.1:&lt;port&gt;" in endpoint_form and "&lt;base&gt;/health" in endpoint_form
    assert "&lt;base&gt;/openapi.json" in client.get("/admin/external_apis/new/").text


@pytest.mark.parametrize("amount, per, text", [
    (0.49, "/h", "$0.49/h"), (0.0004, "", "<$0.01"), (0.0, "", "$0.00"), (1234.5, "", "$1,234.50"),
    (0.005, "", "$0.01"), (None, "", ""), (-2.5, "", "-$2.50"), (-0.0004, "/h", ">-$0.01/h"),
    (float("nan"), "/h", ""), (float("inf"), "", ""), (-float("inf"), "", ""), (1e12, "", "$1,000,000,000,000.00")])
def test_dollars_read_with_cents(amount, per, text):
    assert usd(amount, per) == text


@pytest.mark.parametrize("count, text", [
    (None, ""), (float("nan"), ""), (float("inf"), ""), (0, "0 B"), (1536, "1.5 KiB"), (3 * 2**30, "3.0 GiB")])
def test_sizes_read_in_binary_units_and_unknown_is_blank(count, text):
    assert human_bytes(count) == text


def test_counts_agree_with_their_nouns():
    assert plural(1, "unpushed commit") == "1 unpushed commit"
    assert plural(2, "unpushed commit") == "2 unpushed commits"
    assert plural(1, "stash", "stashes") == "1 stash" and plural(3, "stash", "stashes") == "3 stashes"


def test_vm_template_prices_are_dollars(vm_env):
    app = make_admin_app(vm_env)
    with session_factory(app.extensions["wordslab"].engine).begin() as s:
        platform = HostingPlatform(name="rp", provider="runpod.io")
        s.add_all([platform, VmTemplate(name="a6000", platform=platform, gpu="RTX A6000", compute_usd_per_hour=0.49,
                                        container_usd_per_gb_month=0.1, volume_usd_per_gb_month=0.07)])
    text = logged_in_client(app).get("/admin/vm_templates/").text
    assert "$0.49/h" in text and "$0.10/GB-month" in text and "$0.07/GB-month" in text


def _grafana_banner(env, links_to: str) -> str:
    app = make_admin_app(env, grafana_url=links_to)
    app.extensions["wordslab_grafana_status"].source.refresh_now()
    return logged_in_client(app).get("/admin/jobs/").text


def test_grafana_not_answering_is_said_with_how_to_start_it(vm_env):
    door = "https://pod7-8888.proxy.runpod.net"  # the links: Grafana behind the door
    page = _grafana_banner({**vm_env, "WORDSLAB_GRAFANA_URL": f"http://127.0.0.1:{free_port()}"}, door)
    assert 'id="grafana-down"' in page and "./dashboard.sh up" in page
    assert f"Grafana does not answer at <code>{door}" in page

    with serving(answering(200)) as grafana:
        assert 'id="grafana-down"' not in _grafana_banner({**vm_env, "WORDSLAB_GRAFANA_URL": grafana}, door)


def test_grafana_health_is_asked_where_grafana_listens_not_through_the_door(vm_env):
    # The door answers for a Grafana that is down (its login page, after a redirect): only
    # Grafana's own loopback address tells.
    with serving(answering(302)) as door, serving(answering(200)) as grafana:
        dead = f"http://127.0.0.1:{free_port()}"
        assert 'id="grafana-down"' in _grafana_banner({**vm_env, "WORDSLAB_GRAFANA_URL": dead}, door)
        assert 'id="grafana-down"' not in _grafana_banner({**vm_env, "WORDSLAB_GRAFANA_URL": grafana}, dead)


def test_a_stack_started_without_grafana_says_so(vm_env):
    page = _grafana_banner({**vm_env, "WORDSLAB_GRAFANA_URL": "off"}, "http://localhost:8888")
    assert 'id="grafana-down"' in page and "it was not started" in page


def test_ollama_download_is_refused_while_ollama_does_not_answer(vm_env):
    env = {**vm_env, "OLLAMA_API_BASE": f"http://127.0.0.1:{free_port()}"}
    app = make_admin_app(env)
    client = logged_in_client(app)
    response = client.post("/admin/models/new/", data={
        "provider": "ollama", "model": "qwen3:8b", "revision": "", "checksum": "",
        "csrf_token": csrf_from(client.get("/admin/models/new/").text)})
    assert response.status_code == 400
    assert "Ollama does not answer at http://127.0.0.1:" in response.text and "nothing was queued" in response.text
    assert client.get("/admin/jobs/").text.count("qwen3:8b") == 0


def test_discovered_hermes_agent_is_on_the_endpoints_page(vm_env):
    app = make_admin_app({**vm_env, "API_SERVER_PORT": str(free_port())})
    view_of(app, "endpoints").refresher.refresh_now()
    page = logged_in_client(app).get("/admin/endpoints/").text
    table = page[page.index('id="discovered-endpoints"'):]
    assert "hermes-agent" in table and "stopped" in table


def test_external_apis_list_has_a_live_status_column(vm_env):
    with serving(make_handler(expected_key="sk-test-key-0123456789")) as up:
        app = make_admin_app(vm_env)
        with session_factory(app.extensions["wordslab"].engine).begin() as s:
            s.add_all([ExternalApi(name="good", provider="openai", api_type="openai", base_url=f"{up}/v1",
                                   api_key="sk-test-key-0123456789"),
                       ExternalApi(name="gone", provider="openai", api_type="openai",
                                   base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="sk-other-0123456789")])
        client = logged_in_client(app)
        assert "not probed yet" in client.get("/admin/external_apis/").text
        view_of(app, "external_apis").status.refresh_now()
        page = client.get("/admin/external_apis/").text
    cells = {}
    for row in re.findall(r"<tr.*?</tr>", page, re.S):
        name = re.search(r"\b(good|gone)\b", row)
        badge = re.search(r'api-status"[^>]*>([^<]+)</span>', row)
        if name and badge:
            cells[name.group(1)] = badge.group(1)
    assert "Status" in page
    assert cells == {"good": "ok", "gone": "unreachable"}
