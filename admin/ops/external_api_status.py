"""Live probe state of the configured external APIs, for the admin's list.

A background thread of the admin probes each API as the exporter does (the same
`probe_api`, each at its own probe interval: GET <base>/models with the key in a header,
no paid call) and keeps the outcomes in memory; the list page only reads them.
"""
from __future__ import annotations

import time

from common.background import BackgroundSource, Snapshot
from common.config import Settings
from common.sources.external_api_probe import DueProbes, ProbeOutcome, probe_configured

TICK_SECONDS = 5.0  # how often due probes are looked for, as in the exporter


class ExternalApiStatus:
    def __init__(self, settings: Settings, interval_seconds: float = TICK_SECONDS):
        self.settings = settings
        self.probes = DueProbes()
        self.source = BackgroundSource("external_api_status", self.refresh, interval_seconds)

    def refresh(self) -> dict[str, ProbeOutcome]:
        """{api name: its last probe outcome} of every configured API."""
        return {target.name: outcome
                for target, _, outcome in probe_configured(self.settings, self.probes, time.time())}

    def start(self) -> None:
        if self.source.interval_seconds > 0:
            self.source.start()

    def refresh_now(self) -> Snapshot:
        return self.source.refresh_now()

    def outcome(self, name: str) -> ProbeOutcome | None:
        return (self.source.snapshot().value or {}).get(name)
