"""The /metrics body: snapshot-only collectors rendered on refresh, spliced into every scrape."""
import gzip

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from common.background import BackgroundSource
from exporter.collectors.base import WordslabCollector
from common.config import Settings
from exporter.exposition import Exposition
from exporter.exposition import Exposition


class _Listed(WordslabCollector):
    """Publishes one gauge per item of its background source's snapshot."""

    name = "listed"
    output_from_sources_only = True

    def __init__(self, settings, items):
        super().__init__(settings)
        self.items = items
        self.builds = 0
        self.source = BackgroundSource("items", lambda: list(self.items), interval_seconds=60)
        self.sources = [self.source]

    def collect_metrics(self):
        self.builds += 1
        family = GaugeMetricFamily("wordslab_item_value", "An item.", labels=["item"])
        for i, item in enumerate(self.source.snapshot().value or []):
            family.add_metric([item], i)
        yield family


class _Fresh(WordslabCollector):
    name = "fresh"

    def __init__(self, settings):
        super().__init__(settings)
        self.calls = 0

    def collect_metrics(self):
        self.calls += 1
        yield GaugeMetricFamily("wordslab_fresh_calls", "Calls so far.", value=self.calls)


class _Broken(WordslabCollector):
    name = "broken"
    output_from_sources_only = True

    def collect_metrics(self):
        raise RuntimeError("corrupt cache")


def _samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples
            if f.name != "wordslab_collector_duration_seconds"}


def _setup(items):
    settings = Settings.from_env({})
    listed, fresh = _Listed(settings, items), _Fresh(settings)
    return listed, fresh, Exposition([listed, fresh, _Broken(settings)])


def test_same_metrics_as_the_registry_path():
    listed, fresh, exposition = _setup(["a", "b"])
    listed.source.refresh_now()
    spliced = _samples(exposition.render().decode())
    registry = _samples(Exposition(exposition.collectors).render().decode())
    # The fresh collector ran once more for the registry path; everything else is identical.
    assert registry.pop(("wordslab_fresh_calls", ())) == spliced.pop(("wordslab_fresh_calls", ())) + 1
    assert spliced == registry
    assert spliced[("wordslab_item_value", (("item", "b"),))] == 1
    assert spliced[("wordslab_collector_success", (("collector", "broken"),))] == 0
    assert spliced[("wordslab_collector_success", (("collector", "listed"),))] == 1


def test_snapshot_collector_is_rendered_on_refresh_not_on_scrape():
    listed, fresh, exposition = _setup(["a"])
    listed.source.refresh_now()  # the listener renders it here, in the "background"
    builds_after_refresh = listed.builds
    for _ in range(5):
        exposition.render()
    assert listed.builds == builds_after_refresh
    assert fresh.calls == 5

    listed.source.refresh_now()  # a new snapshot with an equal value: nothing to render again
    assert listed.builds == builds_after_refresh

    listed.items.append("c")
    listed.source.refresh_now()
    assert listed.builds == builds_after_refresh + 1
    assert ("wordslab_item_value", (("item", "c"),)) in _samples(exposition.render().decode())


def test_gzip_members_decompress_to_the_plain_text():
    listed, fresh, exposition = _setup(["a", "b", "c"])
    listed.source.refresh_now()
    plain = exposition.render().decode()
    unzipped = gzip.decompress(exposition.render(gzipped=True)).decode()
    assert _samples(unzipped).keys() == _samples(plain).keys()
    assert "wordslab_item_value" in unzipped
