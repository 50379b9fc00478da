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


def test_a_failure_repeated_at_every_refresh_or_scrape_is_logged_once_per_change(caplog):
    """Ollama not installed: the models source fails the same way every 30 s; the log says it
    once, says when it recovers, and again when it fails anew."""
    from common.sources.ollama_client import OllamaError
    outcomes = iter([OllamaError("Ollama is not reachable")] * 3 + [{"m": 1}] + [OllamaError("again")] * 2)

    def refresh():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    source = BackgroundSource("models_ollama", refresh, interval_seconds=30)
    with caplog.at_level("INFO", logger="common.background"):
        for _ in range(6):
            source.refresh_now()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "INFO", "WARNING"]
    assert "Ollama is not reachable" in lines[0][1] and "refreshes again" in lines[1][1]

    class _Flaky(WordslabCollector):
        name = "flaky-for-log-test"

        def collect_metrics(self):
            raise OSError("disk vanished")

    caplog.clear()
    exposition = Exposition([_Flaky(Settings.from_env({}))])
    with caplog.at_level("INFO", logger="exporter.collectors.base"):
        for _ in range(3):
            exposition.render()
    assert [r.levelname for r in caplog.records] == ["ERROR"]
