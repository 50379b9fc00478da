"""The /metrics body: snapshot-only collectors rendered on refresh, spliced into every scrape."""
import gzip
import zlib

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


def test_the_gzip_body_is_one_member_that_decompresses_to_the_plain_text():
    """curl --compressed, wget and other zlib-based clients read only a body's first gzip member:
    with one member per cached part they showed the per-scrape metrics and silently nothing else."""
    listed, fresh, exposition = _setup(["a", "b", "c"])
    listed.source.refresh_now()
    for _ in range(2):  # the second from the cached parts
        plain = exposition.render().decode()
        first_member = zlib.decompressobj(wbits=31)  # gzip, one member, as curl decodes it
        unzipped = first_member.decompress(exposition.render(gzipped=True)).decode()
        assert first_member.eof and first_member.unused_data == b""
        assert _samples(unzipped).keys() == _samples(plain).keys()
        assert "wordslab_item_value" in unzipped and "wordslab_fresh_calls" in unzipped
        assert gzip.decompress(exposition.render(gzipped=True)).decode().count("# HELP") == plain.count("# HELP")


def test_app_status_is_rendered_when_a_probe_round_changes_it_not_per_scrape(vm_env, monkeypatch):
    """The apps collector (like endpoints and external APIs) reads only its probes' snapshots: a
    scrape splices the text of the last round, and a round that changes a status shows at once."""
    from exporter.collectors.apps import AppsCollector
    from tests.fakes.http_apps import answering
    from tests.fakes.loopback import serving
    from tests.support.env import free_port

    with serving(answering(200)) as url:
        env = {**vm_env, "JUPYTERLAB_PORT": url.rsplit(":", 1)[1], "DASHBOARD_PORT": str(free_port())}
        apps = AppsCollector(Settings.from_env(env))
        exposition = Exposition([apps])
        apps.probe_source.refresh_now()
        calls = []
        original = apps.collect_metrics
        monkeypatch.setattr(apps, "collect_metrics", lambda: calls.append(1) or original())
        up = _samples(exposition.render().decode())
        for _ in range(3):
            exposition.render(gzipped=True)
        assert calls == []
    apps.probe_source.refresh_now()  # the server is gone: the next round sees it down
    down = _samples(exposition.render().decode())
    apps.stop()
    assert calls == [1]
    key = ("wordslab_app_up", (("app", "jupyterlab"),))
    assert (up[key], down[key]) == (1.0, 0.0)


def test_source_health_is_rendered_again_after_a_refresh_or_a_watch_mode_change(monkeypatch):
    import exporter.exposition as exposition_module
    listed, fresh, exposition = _setup(["a"])
    mode = ["inotify"]
    listed.source.watch_mode = lambda: mode[0]
    renders = []
    original = exposition_module.source_health
    monkeypatch.setattr(exposition_module, "source_health", lambda s: renders.append(1) or original(s))

    def health(text):
        samples = _samples(text)
        return (samples[("wordslab_source_refresh_success", (("source", "items"),))],
                samples.get(("wordslab_source_last_success_timestamp_seconds", (("source", "items"),))),
                [k[1] for k, v in samples.items() if k[0] == "wordslab_source_watch_mode" and v == 1])

    assert health(exposition.render().decode()) == (0.0, None, [(("mode", "inotify"), ("source", "items"))])
    exposition.render(), exposition.render(gzipped=True)
    assert len(renders) == 1  # nothing changed: the cached block is spliced

    listed.source.refresh_now()  # an equal value, but a refresh: its time is news
    ok, at, _ = health(exposition.render().decode())
    assert (ok, at is not None, len(renders)) == (1.0, True, 2)
    mode[0] = "polling"
    assert health(exposition.render().decode())[2] == [(("mode", "polling"), ("source", "items"))]
    assert len(renders) == 3


class _TwoFamilies(_Listed):
    """The listed items, and a family that never changes."""

    def collect_metrics(self):
        yield from super().collect_metrics()
        yield GaugeMetricFamily("wordslab_fixed", "Never changes.", value=1)


def test_only_the_families_that_changed_are_formatted_again(monkeypatch):
    import exporter.exposition as exposition_module
    from common import redact
    formatted = []
    original = exposition_module._render
    monkeypatch.setattr(exposition_module, "_render",
                        lambda families: formatted.extend(f.name for f in families) or original(families))
    collector = _TwoFamilies(Settings.from_env({}), ["a"])
    exposition = Exposition([collector])
    collector.source.refresh_now()
    assert formatted == ["wordslab_item_value", "wordslab_fixed"]

    formatted.clear()
    collector.items.append("token-0123456789abcdef")
    collector.source.refresh_now()
    assert formatted == ["wordslab_item_value"]
    whole = original(list(collector.collect_metrics()))
    assert exposition.prerender(collector).text == whole  # the same bytes as formatting it all

    formatted.clear()
    for name in ("_secrets", "_ordered", "_generation"):  # the known secrets come back after the test
        monkeypatch.setattr(redact, name, getattr(redact, name))
    redact.remember("token-0123456789abcdef")  # a secret learnt: every family is scrubbed again
    text = exposition.prerender(collector).text.decode()
    assert formatted == ["wordslab_item_value", "wordslab_fixed"]
    assert "token-0123456789abcdef" not in text and 'item="a"' in text
