"""Model lists kept fresh by real inotify events: a Hugging Face repo downloaded or deleted is read
alone, a provider folder made after start is noticed through its parent."""
from __future__ import annotations

import shutil

import pytest

from common.sources import hf_models
from common.sources.model_dirs import hf_hub_cache
from common.sources.model_sources import ModelSources
from tests.fakes.model_files import hf_llm, provider_file
from tests.support.env import free_port
from tests.support.waiting import eventually
from tests.support.watch_limits import ExhaustedWhileHeld


@pytest.fixture
def env(vm_env):
    return dict(vm_env, OLLAMA_API_BASE=f"http://127.0.0.1:{free_port()}")  # no Ollama: its source fails alone


@pytest.fixture
def hf_reads(monkeypatch):
    """The repo folders read, in order."""
    reads = []
    one = hf_models.scan_hf_repo

    def scan_repo(path):
        reads.append(path.name)
        return one(path)

    monkeypatch.setattr(hf_models, "scan_hf_repo", scan_repo)
    return reads


def models(sources, provider):
    return sorted(r.model for r in sources.records() if r.provider == provider)


def test_a_downloaded_and_a_deleted_repo_are_read_alone(env, hf_reads):
    hf_llm(env, "org/first")
    sources = ModelSources(env, sweep_seconds=3600, polling_seconds=30)
    sources.start()
    try:
        assert eventually(lambda: models(sources, "huggingface") == ["org/first"])
        hf_reads.clear()
        hf_llm(env, "org/second")
        assert eventually(lambda: models(sources, "huggingface") == ["org/first", "org/second"])
        assert set(hf_reads) == {"models--org--second"}  # the other repo is not read again
        record = next(r for r in sources.records() if r.model == "org/second")
        assert record.parameters and record.context_length  # read like a full scan reads it
        hf_reads.clear()
        shutil.rmtree(hf_hub_cache(env) / "models--org--first")
        assert eventually(lambda: models(sources, "huggingface") == ["org/second"])
        assert set(hf_reads) == {"models--org--first"}
        assert sources.hf_source.watch_mode() == "inotify"
        assert not sources.ollama_source.snapshot().ok  # Ollama down fails only its own source
    finally:
        sources.stop()


def test_a_provider_folder_made_after_start_is_noticed(env):
    sources = ModelSources(env, sweep_seconds=3600, polling_seconds=30)
    sources.start()
    try:
        assert eventually(lambda: sources.files_source.snapshot().ok)
        assert models(sources, "torch") == []
        provider_file(env, "torch", "resnet18.pth", b"\0" * 4096)  # makes ~/.cache/torch/hub/checkpoints
        assert eventually(lambda: models(sources, "torch") == ["resnet18.pth"])
        provider_file(env, "keras", "cnn.h5", b"\0" * 4096)
        assert eventually(lambda: models(sources, "keras") == ["cnn.h5"])
    finally:
        sources.stop()


def test_model_caches_are_watched_again_once_watches_are_freed(env):
    """Watches refused while another program held them all: polling (the cache re-read every
    30 s) lasted for the rest of the process's life. Tried again each sweep interval."""
    ExhaustedWhileHeld.held = True
    sources = ModelSources(env, sweep_seconds=3600, polling_seconds=30, observer_factory=ExhaustedWhileHeld)
    source = sources.hf_source
    assert source.watcher.retry_seconds == 3600
    source.watcher.retry_seconds = 0.0  # the sweep interval has passed
    try:
        source.refresh_now()
        assert source.watch_mode() == "polling"
        hf_llm(env, "org/later")
        ExhaustedWhileHeld.held = False
        source.refresh_now()
        assert source.watch_mode() == "inotify"
        assert models(sources, "huggingface") == ["org/later"]
        sources.start()
        hf_llm(env, "org/watched")
        assert eventually(lambda: models(sources, "huggingface") == ["org/later", "org/watched"])
    finally:
        sources.stop()


def test_a_cache_made_while_its_parent_watch_is_set_up_is_still_watched(env):
    """`huggingface-cli download` on a machine with no cache yet makes huggingface/hub/models--...
    at once: a level made after its parent appeared but before the parent's watch began sent no
    event, and the download waited for the 15-minute sweep."""
    sources = ModelSources(env, sweep_seconds=3600, polling_seconds=30)
    source = sources.hf_source
    hub = hf_hub_cache(env)
    shutil.rmtree(hub.parent, ignore_errors=True)
    assert hub.parent.parent.is_dir()
    real_watch = source.watcher.watch

    def racing_watch(path, recursive=True):
        if path == hub.parent and not hub.exists():
            hf_llm(env, "org/racer")  # made just before the new level's watch begins
        return real_watch(path, recursive)

    source.watcher.watch = racing_watch
    sources.start()
    try:
        assert eventually(lambda: source.snapshot().ok)
        hub.parent.mkdir()  # an event: the refresh it wakes watches this new level
        assert eventually(lambda: models(sources, "huggingface") == ["org/racer"])
    finally:
        sources.stop()
