"""External AI APIs: up, latency, HTTP status, out of credit and cost this month."""
from __future__ import annotations

from typing import Iterable

from prometheus_client.core import Metric

from common.background import BackgroundSource
from common.sources import config_db
from common.config import Settings
from common.sources.external_api_probe import API_STATES, ExternalApiMonitor, scrub
from exporter.collectors.base import WordslabCollector, add_state_set, gauge

TICK_SECONDS = 5.0  # how often due probes are looked for; each API has its own interval
API = ("api",)


class ExternalApisCollector(WordslabCollector):
    name = "external_apis"
    output_from_sources_only = True

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.monitor = ExternalApiMonitor(settings)
        self.source = BackgroundSource("external_apis", self.monitor.refresh, TICK_SECONDS)
        # The DB reader its rows come from: its health is published with this collector's.
        self.sources = [self.source, config_db.shared(settings.db_path).source]

    def collect_metrics(self) -> Iterable[Metric]:
        info = gauge("external_api_info", "External AI API as configured, value 1 (never carries a key): "
                     "quota_limit and cost_per_call are the descriptions entered in the admin (anything shaped "
                     "like a token masked).",
                     ("api", "provider", "api_type", "base_url", "api_key_var", "quota_limit", "cost_per_call"))
        up = gauge("external_api_up", "1 if the last authenticated probe got a valid 2xx answer.", API)
        duration = gauge("external_api_probe_duration_seconds", "Latency of the last probe.", API)
        http_status = gauge("external_api_last_http_status",
                            "HTTP status of the last probe; 0 when no HTTP answer came (timeout, refused).", API)
        state = gauge("external_api_state",
                      "Probe outcome as a state set: ok, out_of_credit (429 insufficient_quota "
                      "or 402), rate_limited (other 429), unauthorized (401/403), error, unreachable.",
                      ("api", "state"))
        out_of_credit = gauge("external_api_out_of_credit",
                              "1 when the provider says the account has no credit left "
                              "(429 insufficient_quota, 402, or OpenRouter key limit reached), "
                              "as opposed to being rate limited.", API)
        probed_at = gauge("external_api_last_probe_timestamp_seconds", "Unix time of the last probe.", API)
        cost = gauge("external_api_cost_month_usd",
                     "Spend this calendar month (UTC) in USD; source=provider when read "
                     "from the provider's usage/cost API, source=manual when entered in the admin.",
                     ("api", "source"))
        remaining = gauge("external_api_credit_remaining_usd",
                          "Credit left on the key's limit, where the provider "
                          "reports it (OpenRouter limit_remaining).", API)
        error = gauge("external_api_last_error_info", "Last probe or cost error text, value 1 (keys scrubbed).",
                      ("api", "error"))
        for s in self.source.snapshot().value or []:
            t, p, c = s.target, s.probe, s.cost
            info.add_metric([t.name, t.provider, t.api_type, t.base_url, t.api_key_var,
                             scrub(t.quota_description, t.api_key, t.admin_key),
                             scrub(t.cost_per_call_description, t.api_key, t.admin_key)], 1.0)
            out_of_credit.add_metric([t.name], 1.0 if s.out_of_credit else 0.0)
            if p is not None:
                up.add_metric([t.name], 1.0 if p.up else 0.0)
                duration.add_metric([t.name], p.duration_seconds)
                http_status.add_metric([t.name], float(p.http_status))
                probed_at.add_metric([t.name], p.at)
                add_state_set(state, [t.name], API_STATES, p.state)
            if c is not None and c.usd is not None:
                cost.add_metric([t.name, c.source], c.usd)
            if c is not None and c.credit_remaining_usd is not None:
                remaining.add_metric([t.name], c.credit_remaining_usd)
            text = (p.error if p is not None and p.error else "") or (c.error if c else "")
            if text:
                error.add_metric([t.name, text], 1.0)
        yield from (info, up, duration, http_status, state, out_of_credit, probed_at, cost,
                    remaining, error)
