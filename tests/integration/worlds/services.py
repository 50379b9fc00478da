"""AI services for the integration world: local endpoints and external APIs on loopback fakes.

Endpoints: a vLLM that answers (running, under a steady 50 tokens/s load, scraped by
Prometheus as the admin sets it up: a file_sd target with job="vllm"), a vLLM whose engine died (/health 503: error, with
its last error), an Ollama model loaded in memory (running, with VRAM from /api/ps).
External APIs: an OpenRouter-like API that is up with its month cost read from the
provider, and one answering 500 (down) whose cost comes from the figure entered in the admin.
"""
from __future__ import annotations

import time
from urllib.parse import urlsplit

from admin.file_sd import write_targets
from common.config import Settings

from common.store.services import Endpoint, ExternalApi
from tests.fakes import vllm_server
from tests.fakes.ollama_server import OllamaState, fake_model, ollama_handler
from tests.fakes.openai_like import make_handler
from tests.support.env import free_port
from tests.support.world import World

OPENROUTER_KEY = "sk-or-v1-world-0000000000000000"


def build(world: World) -> None:
    vllm_up = world.serve(vllm_server.make_handler(model="Qwen/Qwen3-0.6B", load_tokens_per_second=50.0))
    # As the admin writes it for a vLLM it starts: the machine's exporter as instance.
    world.env["WORDSLAB_EXPORTER_ADDRESS"] = f"127.0.0.1:{free_port()}"
    write_targets(Settings.from_env(world.env), "vllm-qwen", [urlsplit(vllm_up).netloc],
                  {"job": "vllm", "endpoint": "qwen-vllm", "instance": world.env["WORDSLAB_EXPORTER_ADDRESS"],
                   "vllm_server": urlsplit(vllm_up).netloc})
    vllm_dead = world.serve(vllm_server.make_handler(model="mistralai/Mistral-7B", engine_dead=True))
    ollama_state = OllamaState()
    ollama_state.install(fake_model("llama3.2:3b", weights_size=2_000_000))
    ollama_state.loaded["llama3.2:3b"] = time.time() + 10 ** 9  # loaded until unloaded
    ollama = world.serve(ollama_handler(ollama_state))
    api_up = world.serve(make_handler(expected_key=OPENROUTER_KEY, usage_monthly=12.5, limit_remaining=87.5))
    api_down = world.serve(make_handler(mode="server_error"))
    with world.sessions().begin() as s:
        s.add_all([
            Endpoint(name="qwen-vllm", model="Qwen/Qwen3-0.6B", service_type="LLM", server="vllm",
                     api_type="openai", base_url=f"{vllm_up}/v1", status="running"),
            Endpoint(name="mistral-vllm", model="mistralai/Mistral-7B", service_type="LLM", server="vllm",
                     api_type="openai", base_url=f"{vllm_dead}/v1", status="running"),
            Endpoint(name="llama-ollama", model="llama3.2:3b", service_type="LLM", server="ollama",
                     api_type="ollama", base_url=ollama, status="running"),
            ExternalApi(name="openrouter", provider="openrouter", api_type="openai",
                        base_url=f"{api_up}/api/v1", api_key=OPENROUTER_KEY,
                        quota_description="limit 100 $ / month"),
            ExternalApi(name="mistral-api", provider="mistral", api_type="openai", base_url=f"{api_down}/v1",
                        api_key_var="MISTRAL_API_KEY", manual_cost_month_usd=4.2),
        ])
