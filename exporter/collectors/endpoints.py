"""Local model endpoints: configured ones and the platform's own services, probed in the background."""
from __future__ import annotations

from typing import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from common import nvml as nvml_module
from common.background import BackgroundSource
from common.sources import config_db
from common.config import Settings
from common.nvml import Nvml
from common.sources.endpoint_probe import REFRESH_SECONDS, EndpointProber
from common.store.services import ENDPOINT_STATUSES
from exporter.collectors.base import PREFIX, WordslabCollector, add_state_set


class EndpointsCollector(WordslabCollector):
    name = "endpoints"
    output_from_sources_only = True

    def __init__(self, settings: Settings, nvml: Nvml | None = None):
        super().__init__(settings)
        self.prober = EndpointProber(settings, nvml or nvml_module.shared())
        self.source = BackgroundSource("endpoints", self.prober.refresh, REFRESH_SECONDS)
        # The DB reader its rows come from: its health is published with this collector's.
        self.sources = [self.source, config_db.shared(settings.db_path).source]

    def collect_metrics(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            PREFIX + "endpoint_info", "Local model endpoint (configured or discovered), value 1; internal_port is the port it "
            "listens on inside the VM (the one it was started on, else its base URL's).",
            labels=["endpoint", "model", "service_type", "server", "api_type", "base_url", "internal_port"])
        status = GaugeMetricFamily(
            PREFIX + "endpoint_status",
            "Endpoint status as a state set: 1 for the current one of starting/running/error/stopped.",
            labels=["endpoint", "status"])
        vram = GaugeMetricFamily(
            PREFIX + "endpoint_vram_bytes",
            "GPU memory the endpoint holds (Ollama /api/ps size_vram, else NVML per-process memory); "
            "absent when unknown (no GPU).", labels=["endpoint"])
        error = GaugeMetricFamily(
            PREFIX + "endpoint_last_error_info",
            "Last error of the endpoint (probe or process log tail), value 1; kept after recovery.",
            labels=["endpoint", "error"])
        for state in self.source.snapshot().value or []:
            t = state.target
            info.add_metric([t.name, t.model, t.service_type, t.server, t.api_type, t.base_url, t.port], 1.0)
            add_state_set(status, [t.name], ENDPOINT_STATUSES, state.status)
            if state.vram_bytes is not None:
                vram.add_metric([t.name], state.vram_bytes)
            if state.error:
                error.add_metric([t.name, state.error], 1.0)
        yield from (info, status, vram, error)
