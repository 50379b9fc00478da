"""The /metrics body, with the text of large snapshot-only collectors rendered in the background.

Formatting is most of a scrape's cost once hundreds of projects and models are listed
(~25 ms for 200 projects + 500 models on 2 cores). A collector whose output depends only on
its background sources' snapshots (`output_from_sources_only`) is rendered to text (and compressed)
when one of its sources refreshes, and a scrape splices those bytes in. Other collectors run
on every scrape as before; the sources' health block is rendered again only after a refresh.
A scrape's body is sent as those parts, not copied into one. The compressed parts are spliced
too, as raw deflate segments inside one gzip member (see `gzip_member`).
"""
from __future__ import annotations

import logging
import struct
import threading
import zlib
from dataclasses import dataclass
from typing import Iterable, Sequence

from prometheus_client import generate_latest
from prometheus_client.core import Metric

from common.readable import readable
from common import redact
from common.redact import scrub_label
from exporter.collectors.base import (WordslabCollector, run_collector, self_metrics, source_health,
                                      unique_sources)

log = logging.getLogger(__name__)


class _Families:
    """The `collect()` that generate_latest expects, over a ready list of families."""

    def __init__(self, families: Iterable[Metric]):
        self._families = list(families)

    def collect(self) -> list[Metric]:
        return self._families


@dataclass(frozen=True)
class Rendered:
    key: tuple[int, ...]  # the versions of the sources' snapshots it was rendered from
    text: bytes
    deflated: bytes  # `deflated(text)`
    ok: bool
    seconds: float


# A gzip header (RFC 1952): deflate, no name, no time, unknown OS; and an empty last deflate block.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_LAST_BLOCK = b"\x03\x00"


def deflated(text: bytes) -> bytes:
    """`text` as raw deflate blocks that end on a byte boundary and are not the last (a sync
    flush): segments compressed apart and joined make one deflate stream, as pigz joins its own."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)


def gzip_member(texts: Sequence[bytes], segments: Sequence[bytes]) -> list[bytes]:
    """One gzip member holding `texts`, from their `deflated` segments (the CRC is read over
    the texts: ~0.1 ms for 700 KB). Several members joined are valid gzip too, but curl, wget
    and other zlib-based clients read only the first and silently drop the rest."""
    crc = 0
    for text in texts:
        crc = zlib.crc32(text, crc)
    size = sum(map(len, texts))
    return [_GZIP_HEADER, *segments, _LAST_BLOCK, struct.pack("<II", crc, size & 0xFFFFFFFF)]


@dataclass(frozen=True)
class _Health:
    key: tuple
    snapshots: tuple
    parts: tuple[bytes, bytes]


def _scrubbed(families: Iterable[Metric]) -> list[Metric]:
    """Every label value through common.redact (cached per value): the one way out of this
    process for text from providers, endpoints and git, so a key echoed there never leaves."""
    families = list(families)
    for family in families:
        for i, sample in enumerate(family.samples):
            labels = sample.labels
            if not labels:
                continue
            clean = {k: scrub_label(v) for k, v in labels.items()}
            if clean != labels:
                family.samples[i] = sample._replace(labels=clean)
    return families


def _render(families: Iterable[Metric]) -> bytes:
    families = _scrubbed(families)
    try:
        return generate_latest(_Families(families))
    except UnicodeEncodeError:
        # A label from a file name that is not UTF-8 (a Latin-1 folder name): shown escaped,
        # never a failed scrape. Only this rare path pays for the copy.
        return generate_latest(_Families(_readable_families(families)))


def _readable_families(families: list[Metric]) -> list[Metric]:
    for family in families:
        family.documentation = readable(family.documentation)
        family.samples = [sample._replace(labels={readable(k): readable(v) for k, v in sample.labels.items()})
                          for sample in family.samples]
    return families


class Exposition:
    def __init__(self, collectors: Sequence[WordslabCollector]):
        self.collectors = list(collectors)
        self._cache: dict[str, Rendered] = {}
        self._locks = {c.name: threading.Lock() for c in self.collectors}
        self._sources = unique_sources(self.collectors)
        # The sources' health text, with the snapshots and watch modes it was rendered from.
        self._health: _Health | None = None
        self._health_lock = threading.Lock()
        # Per snapshot-only collector: (secrets generation, family name -> (family as built, its text)).
        self._family_texts: dict[str, tuple[int, dict[str, tuple[tuple, bytes]]]] = {}
        for collector in self.collectors:
            if collector.output_from_sources_only:
                for source in collector.sources:
                    source.add_listener(lambda c=collector: self.prerender(c))

    @staticmethod
    def _key(collector: WordslabCollector) -> tuple[int, ...]:
        # A secret learnt since the text was rendered: render again, so it is masked.
        return (redact.generation(), *(source.snapshot().version for source in collector.sources))

    def prerender(self, collector: WordslabCollector) -> Rendered:
        """Text of a snapshot-only collector, rendered again only when a snapshot's value changed.

        Keyed on the sources' version counters (BackgroundSource bumps one when its value
        changes, after comparing in its own thread), so a scrape compares a few integers.
        """
        key = self._key(collector)
        with self._locks[collector.name]:
            cached = self._cache.get(collector.name)
            if cached is not None and cached.key == key:
                return cached
            families, ok, seconds = run_collector(collector)
            text = self._render_changed(collector.name, key[0], families)
            rendered = Rendered(key, text, deflated(text), ok, seconds)
            self._cache[collector.name] = rendered
            return rendered

    def _render_changed(self, name: str, generation: int, families: list[Metric]) -> bytes:
        """The families' text, formatting again only those whose samples changed since the
        collector's last render (a fetch round changes 2 of the projects' 11 families), and all
        of them when the secrets to mask did (`generation`)."""
        known_generation, previous = self._family_texts.get(name, (None, {}))
        if known_generation != generation:
            previous = {}
        current: dict[str, tuple[tuple, bytes]] = {}
        texts: list[bytes] = []
        for family in families:
            # As built, before scrubbing (which replaces label dicts): what the next build is compared to.
            built = (family.type, family.documentation, family.unit, tuple(family.samples))
            cached = previous.get(family.name)
            text = cached[1] if cached is not None and cached[0] == built else _render([family])
            current[family.name] = (built, text)
            texts.append(text)
        self._family_texts[name] = (generation, current)
        return b"".join(texts)

    def health(self) -> tuple[bytes, bytes]:
        """`source_health` as (text, its `deflated` segment), rendered again only when a source refreshed (a new
        Snapshot object) or a watch mode changed. Snapshots are compared by identity: comparing
        their values would cost more than rendering."""
        snapshots = tuple(s.snapshot() for s in self._sources)
        key = (redact.generation(), tuple(map(id, snapshots)),
               tuple(s.watch_mode() if s.watch_mode is not None else None for s in self._sources))
        with self._health_lock:
            if self._health is not None and self._health.key == key:
                return self._health.parts
            text = _render(source_health(self._sources))
            # The snapshots are kept with the key so that their ids cannot be reused meanwhile.
            self._health = _Health(key, snapshots, (text, deflated(text)))
            return self._health.parts

    def render_parts(self, gzipped: bool = False) -> list[bytes]:
        """The exposition as parts to send one after another (the cached ones are not copied
        into a new body): Prometheus text format 0.0.4, as one gzip member if asked."""
        spliced: list[Rendered] = []
        fresh: list[Metric] = []
        outcomes: list[tuple[str, bool, float]] = []
        for collector in self.collectors:
            if collector.output_from_sources_only:
                rendered = self.prerender(collector)
                spliced.append(rendered)
                outcomes.append((collector.name, rendered.ok, rendered.seconds))
            else:
                families, ok, seconds = run_collector(collector)
                fresh.extend(families)
                outcomes.append((collector.name, ok, seconds))
        fresh.extend(self_metrics(outcomes))
        text = _render(fresh)
        health = self.health()
        texts = [text, health[0], *(r.text for r in spliced)]
        if gzipped:
            return gzip_member(texts, [deflated(text), health[1], *(r.deflated for r in spliced)])
        return texts

    def render(self, gzipped: bool = False) -> bytes:
        """The whole exposition in one body (see render_parts)."""
        return b"".join(self.render_parts(gzipped))
