#!/usr/bin/env python3
"""500 models on disk, quickly, and what scanning them costs.

`make_models(env, count)` writes Hugging Face cache repos (config.json, README with a
pipeline tag, a small real safetensors file; every 10th one sharded) plus PyTorch hub,
fastai and Keras files under the env's model folders; bench_exporter.py --scale uses it.
Run alone, it prints the background scan cost per cycle (first cycle reads the safetensors
headers, later ones hit the header cache) and the cost of one scrape of the snapshot.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.sources.model_dirs import hf_hub_cache  # noqa: E402
from tests.fakes.model_files import (hf_cache_repo, llm_config, provider_file, safetensors_bytes,  # noqa: E402
                                     tiny_llm_tensors)

FILE_SHARE = 0.2  # a fifth of the models are plain files (torch / fastai / keras)


def add_hf_model(env: dict, repo_id: str) -> None:
    """One more Hugging Face cache repo, as a download leaves it."""
    files = {"config.json": json.dumps(llm_config(context=4096)).encode(),
             "README.md": b"---\npipeline_tag: text-generation\n---\n",
             "model.safetensors": safetensors_bytes(tiny_llm_tensors())}
    hf_cache_repo(hf_hub_cache(env), repo_id, files)


def make_models(env: dict, count: int) -> int:
    cache = hf_hub_cache(env)
    weights = safetensors_bytes(tiny_llm_tensors())
    readme = b"---\npipeline_tag: text-generation\n---\n"
    files_count = int(count * FILE_SHARE)
    for i in range(count - files_count):
        files = {"config.json": json.dumps(llm_config(context=2048 + i)).encode(), "README.md": readme}
        if i % 10 == 0:
            files["model-00001-of-00002.safetensors"] = weights
            files["model-00002-of-00002.safetensors"] = weights
        else:
            files["model.safetensors"] = weights
        hf_cache_repo(cache, f"bench-org/model-{i:04d}", files)
    providers = ("torch", "fastai", "keras")
    for i in range(files_count):
        provider = providers[i % 3]
        name = f"model-{i:04d}." + ("h5" if provider == "keras" else "pth")
        provider_file(env, provider, name, b"\0" * 4096)
    return count


def main() -> int:
    from exporter.collectors.models import ModelsCollector
    from common.config import Settings
    from tests.support.env import free_port, wordslab_env
    from exporter.exposition import Exposition

    with tempfile.TemporaryDirectory(prefix="wordslab-models-") as tmp:
        env = wordslab_env(Path(tmp), OLLAMA_API_BASE=f"http://127.0.0.1:{free_port()}")  # no Ollama
        started = time.perf_counter()
        made = make_models(env, 500)
        print(f"{made} models written in {time.perf_counter() - started:.1f} s")
        collector = ModelsCollector(Settings.from_env(env))
        for cycle in ("first", "second", "third"):
            costs = []
            for source in (collector.hf_source, collector.files_source):
                snap = source.refresh_now()
                costs.append(f"{source.name} {snap.duration_seconds * 1000:.0f} ms")
            print(f"background scan, {cycle} cycle: " + ", ".join(costs))
        assert len(collector.records()) == made, len(collector.records())
        exposition = Exposition([collector])
        timings = []
        for _ in range(20):
            t = time.perf_counter()
            exposition.render()
            timings.append(time.perf_counter() - t)
        timings.sort()
        print(f"scrape of the snapshot ({made} models, registry + exposition): "
              f"median {timings[10] * 1000:.1f} ms, max {timings[-1] * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
