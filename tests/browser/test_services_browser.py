"""External API in headless Chromium: configure it with a key, see the key masked everywhere
(list, details, edit form, the real exporter's /metrics, the admin's log)."""
from __future__ import annotations

from playwright.sync_api import expect

from tests.fakes.loopback import serving
from tests.fakes.openai_like import make_handler
from tests.support.admin_server import login
from tests.support.metrics import exporter_metrics_containing

KEY = "sk-or-v1-browser0123456789abcdefQRST"


def test_external_api_key_masked_everywhere(admin_server_factory, page, screenshot, tmp_path):
    with serving(make_handler(expected_key=KEY, usage_monthly=3.25)) as fake_url:
        server = admin_server_factory()
        (server.root / "workspace" / ".secrets").mkdir(parents=True, exist_ok=True)
        (server.root / "workspace" / ".secrets" / "user-env.bashrc").write_text(
            "export OPENROUTER_API_KEY=sk-or-v1-fromfile-000000\n")
        login(page, server)
        page.goto(server.url + "/admin/external_apis/new/")
        expect(page.locator("#api_key_var option[value=OPENROUTER_API_KEY]")).to_have_count(1)
        page.fill("#name", "openrouter")
        page.select_option("#provider", "openrouter")
        page.select_option("#api_type", "openai")
        page.fill("#base_url", f"{fake_url}/api/v1")
        page.fill("#new_api_key", KEY)
        page.fill("#quota_description", "200 requests / 10 s")
        screenshot("form-filled")
        page.click("form.admin-form input[type=submit], form.admin-form button[type=submit]")
        page.wait_for_url(server.url + "/admin/external_apis/**")

        expect(page.locator("table")).to_contain_text("openrouter")
        expect(page.locator("table")).to_contain_text("••••QRST")
        assert KEY not in page.content()
        screenshot("list-masked")

        with server.sessions()() as s:
            from common.store.services import ExternalApi
            api_id = s.query(ExternalApi).one().id
        page.goto(f"{server.url}/admin/external_apis/details/?id={api_id}")
        expect(page.locator("table")).to_contain_text("••••QRST")
        assert KEY not in page.content()
        screenshot("details-masked")

        page.goto(f"{server.url}/admin/external_apis/edit/?id={api_id}")
        assert page.input_value("#new_api_key") == ""
        assert KEY not in page.content()
        screenshot("edit-masked")

        body = exporter_metrics_containing(server.env, tmp_path,
                                           'wordslab_external_api_up{api="openrouter"} 1.0')
    assert 'wordslab_external_api_up{api="openrouter"} 1.0' in body
    assert 'wordslab_external_api_cost_month_usd{api="openrouter",source="provider"} 3.25' in body
    assert KEY not in body
    assert KEY not in server.log()
    assert KEY not in (tmp_path / "exporter.log").read_text()
