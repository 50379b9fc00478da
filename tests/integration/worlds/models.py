"""Models for the integration world: the fake Ollama (a model, its 32k variant, an embedder, one
loaded with a measured speed), a real Hugging Face cache with a small safetensors LLM, and a
PyTorch hub checkpoint, so every models panel has data."""
from __future__ import annotations

import time

from common.store.models import record_speed, set_type_override
from tests.fakes.model_files import hf_llm, provider_file
from tests.fakes.ollama_server import OllamaState, ollama_handler, sample_state
from tests.support.world import World

# Kept at module level: the fake server reads it for the world's lifetime.
state: OllamaState | None = None


def build(world: World) -> None:
    global state
    state = sample_state(models_dir=world.env["OLLAMA_MODELS"])
    # Loaded "forever" (keep_alive -1): in /api/ps, so it has a last-used time.
    state.loaded["qwen3:8b"] = time.time() + 10 * 365 * 86400
    world.env["OLLAMA_API_BASE"] = world.serve(ollama_handler(state))
    hf_llm(world.env, readme="---\npipeline_tag: text-generation\n---\n")
    provider_file(world.env, "torch", "resnet18-f37072fd.pth")
    with world.sessions().begin() as s:
        record_speed(s, "ollama", "qwen3:8b", "tokens_per_second", 80.0)
        set_type_override(s, "torch", "resnet18-f37072fd.pth", "ImgGen")
