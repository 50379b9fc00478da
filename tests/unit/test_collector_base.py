"""Collector isolation: per-collector success/duration, failures isolated."""
from prometheus_client.core import GaugeMetricFamily

from common.background import BackgroundSource
from exporter.collectors.base import WordslabCollector
from common.config import Settings
from exporter.exposition import Exposition


class _Good(WordslabCollector):
    name = "good"

    def collect_metrics(self):
        yield GaugeMetricFamily("wordslab_good_value", "A value.", value=42)


class _Broken(WordslabCollector):
    name = "broken"

    def collect_metrics(self):
        raise OSError("disk vanished")


def test_broken_collector_does_not_break_the_scrape():
    settings = Settings.from_env({})
    text = Exposition([_Broken(settings), _Good(settings)]).render().decode()
    assert "wordslab_good_value 42.0" in text
    assert 'wordslab_collector_success{collector="broken"} 0.0' in text
    assert 'wordslab_collector_success{collector="good"} 1.0' in text
    assert 'wordslab_collector_duration_seconds{collector="broken"}' in text


def test_source_failure_keeps_last_value_and_shows_as_metric():
    calls = []

    def refresh():
        calls.append(1)
        if len(calls) > 1:
            raise TimeoutError("provider timed out")
        return {"value": 1}

    source = BackgroundSource("provider", refresh, interval_seconds=60)
    assert source.refresh_now().value == {"value": 1}
    snap = source.refresh_now()
    assert not snap.ok and "timed out" in snap.error
    assert snap.value == {"value": 1}

    settings = Settings.from_env({})
    good = _Good(settings)
    good.sources = [source]
    text = Exposition([good]).render().decode()
    assert 'wordslab_source_refresh_success{source="provider"} 0.0' in text
