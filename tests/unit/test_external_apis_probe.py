"""External APIs against an OpenAI-like server on loopback: status, failures, cost, key hygiene."""
from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collectors.external_apis import ExternalApisCollector
from common.config import Settings
from exporter.exposition import Exposition
from common.sources.external_api_probe import ExternalApiMonitor, read_user_env
from common.store import connect, init_db, session_factory
from common.store.services import ExternalApi
from tests.fakes.loopback import serving
from tests.support.metrics import promtool_problems
from tests.fakes.anthropic_admin import make_handler as make_anthropic
from tests.fakes.openai_like import make_handler

KEY = "sk-test-0123456789abcdefSECRET"


def metric(text: str, name: str) -> dict[tuple, float]:
    return {tuple(sorted(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples if s.name == name}


def add_api(settings, **fields) -> None:
    engine = connect(settings.db_path)
    init_db(engine)
    with session_factory(engine).begin() as s:
        s.add(ExternalApi(**{"name": "api", "provider": "openai", "api_type": "openai", **fields}))
    engine.dispose()


def scrape(settings, monitor=None) -> tuple[str, ExternalApisCollector]:
    collector = ExternalApisCollector(settings)
    if monitor is not None:
        collector.monitor = monitor
        collector.source._refresh = monitor.refresh
    collector.source.refresh_now()
    return Exposition([collector]).render().decode(), collector


@pytest.fixture
def settings(vm_env):
    return Settings.from_env(vm_env)


def test_up_latency_and_key_sent_only_in_a_header(settings):
    handler = make_handler(expected_key=KEY)
    with serving(handler) as url:
        add_api(settings, base_url=f"{url}/v1", api_key_var="OPENAI_API_KEY", api_key=KEY,
                quota_description="500 requests/min", cost_per_call_description=f"$0.15 / 1M tokens, key {KEY}")
        text, _ = scrape(settings)
    assert metric(text, "wordslab_external_api_up") == {(("api", "api"),): 1.0}
    assert metric(text, "wordslab_external_api_probe_duration_seconds")[(("api", "api"),)] > 0
    assert metric(text, "wordslab_external_api_last_http_status")[(("api", "api"),)] == 200
    assert metric(text, "wordslab_external_api_info") == {(
        ("api", "api"), ("api_key_var", "OPENAI_API_KEY"), ("api_type", "openai"),
        ("base_url", f"{url}/v1"), ("cost_per_call", "$0.15 / 1M tokens, key ***"), ("provider", "openai"),
        ("quota_limit", "500 requests/min")): 1.0}
    probe = handler.requests[0]
    assert probe["path"] == "/v1/models" and probe["headers"]["Authorization"] == f"Bearer {KEY}"
    assert all(KEY not in r["path"] for r in handler.requests)
    assert KEY not in text
    assert promtool_problems(text) == ""


@pytest.mark.parametrize("mode, state, http_status, credit", [
    ("timeout", "unreachable", 0, 0),
    ("unauthorized", "unauthorized", 401, 0),
    ("server_error", "error", 500, 0),
    ("malformed", "error", 200, 0),
    ("insufficient_quota", "out_of_credit", 429, 1),
    ("payment_required", "out_of_credit", 402, 1),
    ("rate_limited", "rate_limited", 429, 0),
])
def test_failures_show_as_metrics(settings, mode, state, http_status, credit):
    with serving(make_handler(mode=mode, timeout_delay=2.0)) as url:
        add_api(settings, base_url=f"{url}/v1", api_key=KEY)
        text, _ = scrape(settings, ExternalApiMonitor(settings, timeout=(0.5, 0.5)))
    api = (("api", "api"),)
    assert metric(text, "wordslab_external_api_up")[api] == 0
    assert metric(text, "wordslab_external_api_last_http_status")[api] == http_status
    assert metric(text, "wordslab_external_api_out_of_credit")[api] == credit
    states = metric(text, "wordslab_external_api_state")
    assert states[(("api", "api"), ("state", state))] == 1 and sum(states.values()) == 1
    assert 'wordslab_collector_success{collector="external_apis"} 1.0' in text


def test_openrouter_month_cost_from_key_usage_monthly(settings):
    with serving(make_handler(usage_monthly=12.5, limit_remaining=0.0)) as url:
        add_api(settings, provider="openrouter", base_url=f"{url}/api/v1", api_key=KEY,
                manual_cost_month_usd=99.0)
        text, _ = scrape(settings)
    assert metric(text, "wordslab_external_api_cost_month_usd") == {(("api", "api"), ("source", "provider")): 12.5}
    assert metric(text, "wordslab_external_api_credit_remaining_usd") == {(("api", "api"),): 0.0}
    assert metric(text, "wordslab_external_api_out_of_credit") == {(("api", "api"),): 1.0}


def test_openai_month_cost_with_admin_key_sums_every_page(settings):
    handler = make_handler(cost_pages=[[1.25, 2.5], [0.25]])
    now = datetime(2026, 3, 1, 0, 30, tzinfo=timezone.utc).timestamp()  # just after a month boundary
    with serving(handler) as url:
        add_api(settings, base_url=f"{url}/v1", api_key=KEY, admin_key_var="OPENAI_ADMIN_KEY")
        monitor_settings = Settings.from_env(dict(settings.env, OPENAI_ADMIN_KEY="sk-admin-key-0123456789"))
        text, _ = scrape(monitor_settings, ExternalApiMonitor(monitor_settings, clock=lambda: now))
    assert metric(text, "wordslab_external_api_cost_month_usd") == {(("api", "api"), ("source", "provider")): 4.0}
    cost_calls = [r for r in handler.requests if "/organization/costs" in r["path"]]
    assert len(cost_calls) == 2
    assert f"start_time={int(datetime(2026, 3, 1, tzinfo=timezone.utc).timestamp())}" in cost_calls[0]["path"]
    assert cost_calls[0]["headers"]["Authorization"] == "Bearer sk-admin-key-0123456789"


def test_manual_figure_without_provider_cost_and_on_provider_failure(settings):
    with serving(make_handler(mode="server_error")) as url:
        add_api(settings, provider="openrouter", base_url=f"{url}/api/v1", api_key=KEY,
                manual_cost_month_usd=7.5)
        text, _ = scrape(settings)
    assert metric(text, "wordslab_external_api_cost_month_usd") == {(("api", "api"), ("source", "manual")): 7.5}


def test_key_from_user_env_file_and_probe_interval(settings):
    secrets = settings.workspace / ".secrets"
    secrets.mkdir()
    (secrets / "user-env.bashrc").write_text(
        "# user keys\nexport HF_TOKEN='hf_abcdefghijkl'\nexport OPENROUTER_API_KEY=\"%s\"\nalias x=y\n" % KEY)
    assert read_user_env(settings) == {"HF_TOKEN": "hf_abcdefghijkl", "OPENROUTER_API_KEY": KEY}
    clock = [1000.0]
    handler = make_handler(expected_key=KEY)
    with serving(handler) as url:
        add_api(settings, provider="other", base_url=url, api_key_var="OPENROUTER_API_KEY",
                probe_interval_seconds=60)
        monitor = ExternalApiMonitor(settings, clock=lambda: clock[0])
        assert monitor.refresh()[0].probe.up
        clock[0] += 30
        monitor.refresh()
        assert len(handler.requests) == 1  # not due yet: rate limits are not burned
        clock[0] += 31
        monitor.refresh()
        assert len(handler.requests) == 2


# A token-shaped key, and a plain hex one that only the exact-secret scrub can catch.
@pytest.mark.parametrize("key", [KEY, "3f9c2a7d41b84e0d9a6c5b1e8f7d2c40"], ids=["sk-shaped", "plain-hex"])
def test_key_never_in_metrics_or_logs_even_when_echoed(settings, caplog, key):
    caplog.set_level(logging.DEBUG)
    with serving(make_handler(expected_key="sk-the-right-one-000000", echo_key=True)) as url:
        add_api(settings, base_url=url, api_key=key, provider="other")
        text, _ = scrape(settings)
    assert metric(text, "wordslab_external_api_state")[(("api", "api"), ("state", "unauthorized"))] == 1
    (error,) = [dict(labels)["error"] for labels in metric(text, "wordslab_external_api_last_error_info")]
    assert error.startswith("key refused (HTTP 401) Incorrect API key provided: ")  # the echo is there, masked
    assert key not in text and key[-8:] not in text
    assert key not in caplog.text
    assert key not in repr(ExternalApi(name="x", api_key=key))


ANTHROPIC_KEY = "sk-ant-api03-probe-0123456789"
ANTHROPIC_ADMIN_KEY = "sk-ant-admin01-cost-0123456789"


def test_anthropic_month_cost_from_cost_report_in_cents_across_pages(settings):
    handler = make_anthropic(api_key=ANTHROPIC_KEY, admin_key=ANTHROPIC_ADMIN_KEY,
                             cost_pages=[["123.45", "250"], ["0.55"]])
    now = datetime(2026, 3, 1, 0, 30, tzinfo=timezone.utc).timestamp()  # just after a month boundary
    with serving(handler) as url:
        add_api(settings, provider="anthropic", base_url=f"{url}/v1", api_key=ANTHROPIC_KEY,
                admin_key_var="ANTHROPIC_ADMIN_KEY", manual_cost_month_usd=99.0)
        monitor_settings = Settings.from_env(dict(settings.env, ANTHROPIC_ADMIN_KEY=ANTHROPIC_ADMIN_KEY))
        text, _ = scrape(monitor_settings, ExternalApiMonitor(monitor_settings, clock=lambda: now))
    # 123.45 + 250 + 0.55 cents
    assert metric(text, "wordslab_external_api_cost_month_usd") == {(("api", "api"), ("source", "provider")): 3.74}
    assert metric(text, "wordslab_external_api_up") == {(("api", "api"),): 1.0}
    first, second = [r for r in handler.requests if "/v1/organizations/cost_report" in r["path"]]
    assert "starting_at=2026-03-01T00%3A00%3A00Z" in first["path"] and "bucket_width=1d" in first["path"]
    assert "ending_at=2026-03-03T00%3A00%3A00Z" in first["path"] and "page=" not in first["path"]
    assert "page=page_1" in second["path"]
    assert first["headers"]["x-api-key"] == ANTHROPIC_ADMIN_KEY and first["headers"]["anthropic-version"]
    assert all("Authorization" not in r["headers"] for r in handler.requests)
    assert all(k not in r["path"] for r in handler.requests for k in (ANTHROPIC_KEY, ANTHROPIC_ADMIN_KEY))
    assert ANTHROPIC_ADMIN_KEY not in text and ANTHROPIC_KEY not in text
    assert promtool_problems(text) == ""


@pytest.mark.parametrize("knobs, error", [
    ({"admin_key": "sk-ant-admin01-another-one"}, "cost: cost_report answered HTTP 401 (key refused)"),
    ({"cost_mode": "malformed"}, "cost: malformed JSON in the cost answer"),
    ({"cost_mode": "timeout"}, "no answer within 0.5 s"),
], ids=["401", "malformed", "timeout"])
def test_anthropic_cost_failure_falls_back_to_the_manual_figure(settings, caplog, knobs, error):
    caplog.set_level(logging.DEBUG)
    handler = make_anthropic(api_key=ANTHROPIC_KEY, **{"admin_key": ANTHROPIC_ADMIN_KEY, **knobs})
    with serving(handler) as url:
        add_api(settings, provider="anthropic", base_url=f"{url}/v1", api_key=ANTHROPIC_KEY,
                admin_key=ANTHROPIC_ADMIN_KEY, manual_cost_month_usd=7.5)
        text, _ = scrape(settings, ExternalApiMonitor(settings, timeout=(0.5, 0.5)))
    assert metric(text, "wordslab_external_api_cost_month_usd") == {(("api", "api"), ("source", "manual")): 7.5}
    assert metric(text, "wordslab_external_api_up") == {(("api", "api"),): 1.0}  # the probe is fine
    (shown,) = [dict(labels)["error"] for labels in metric(text, "wordslab_external_api_last_error_info")]
    assert error in shown
    assert any("/v1/organizations/cost_report" in r["path"] for r in handler.requests)
    for secret in (ANTHROPIC_ADMIN_KEY, ANTHROPIC_KEY):
        assert secret not in text and secret not in caplog.text
        assert all(secret not in r["path"] for r in handler.requests)
