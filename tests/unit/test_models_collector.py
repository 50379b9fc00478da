"""ModelsCollector: metrics for every provider, Ollama failures isolated, admin settings applied."""
import pytest

from exporter.collectors.models import ModelsCollector
from common.config import Settings
from common.store import connect, init_db, session_factory
from common.store.models import record_speed, set_type_override
from tests.fakes.model_files import hf_llm, provider_file
from tests.fakes.ollama_server import fake_ollama, sample_state
from tests.support.env import free_port
from tests.support.metrics import promtool_problems, refreshed, scrape


@pytest.fixture
def ollama(vm_env):
    with fake_ollama(sample_state()) as server:
        vm_env["OLLAMA_API_BASE"] = server.base_url
        yield server


@pytest.fixture
def models_env(vm_env, ollama):
    hf_llm(vm_env)
    provider_file(vm_env, "torch", "resnet18-f37072fd.pth")
    return vm_env


def test_every_provider_is_published_and_promtool_is_happy(models_env):
    result = scrape(refreshed(ModelsCollector(Settings.from_env(models_env))))
    assert promtool_problems(result.text) == ""
    info = {(lbl["provider"], lbl["model"]): lbl for lbl in result.labels("wordslab_model_info")}
    assert set(info) == {("ollama", "qwen3:8b"), ("ollama", "qwen3:8b-32k"),
                         ("ollama", "nomic-embed-text:latest"), ("huggingface", "tiny-org/tiny-llama"),
                         ("torch", "resnet18-f37072fd.pth")}
    assert info[("huggingface", "tiny-org/tiny-llama")]["model_type"] == "LLM"
    assert info[("huggingface", "tiny-org/tiny-llama")]["quantization"] == "F16"
    assert info[("ollama", "nomic-embed-text:latest")]["model_type"] == "Embed"
    assert result.value("wordslab_model_context_length", model="qwen3:8b-32k") == 32768
    assert result.value("wordslab_model_parameters", model="tiny-org/tiny-llama") > 0
    assert result.value("wordslab_model_parameters", model="resnet18-f37072fd.pth") is None
    for name in ("size_bytes", "vram_estimate_bytes", "download_timestamp_seconds"):
        assert result.value(f"wordslab_model_{name}", provider="torch") > 0
    assert result.value("wordslab_source_refresh_success", source="models_ollama") == 1


def test_ollama_down_fails_its_source_only(vm_env):
    vm_env["OLLAMA_API_BASE"] = f"http://127.0.0.1:{free_port()}"
    hf_llm(vm_env)
    result = scrape(refreshed(ModelsCollector(Settings.from_env(vm_env))))
    assert result.value("wordslab_source_refresh_success", source="models_ollama") == 0
    assert result.value("wordslab_source_refresh_success", source="models_huggingface") == 1
    assert result.value("wordslab_collector_success", collector="models") == 1
    assert [lbl["provider"] for lbl in result.labels("wordslab_model_info")] == ["huggingface"]


def test_admin_type_override_and_measured_speed(models_env):
    settings = Settings.from_env(models_env)
    engine = connect(settings.db_path)
    init_db(engine)
    with session_factory(engine).begin() as s:
        set_type_override(s, "torch", "resnet18-f37072fd.pth", "ImgGen")
        record_speed(s, "ollama", "qwen3:8b", "tokens_per_second", 42.5)
        record_speed(s, "ollama", "deleted-model:1b", "tokens_per_second", 99.0)
    engine.dispose()
    result = scrape(refreshed(ModelsCollector(settings)))
    (torch,) = [lbl for lbl in result.labels("wordslab_model_info") if lbl["provider"] == "torch"]
    assert torch["model_type"] == "ImgGen"
    assert result.series("wordslab_model_processing_speed") == [
        ({"provider": "ollama", "model": "qwen3:8b", "unit": "tokens_per_second",
          "source": "benchmark"}, 42.5)]


def test_a_deleted_model_disappears(models_env, ollama):
    collector = refreshed(ModelsCollector(Settings.from_env(models_env)))
    assert scrape(collector).value("wordslab_model_size_bytes", model="qwen3:8b") is not None
    ollama.state.remove("qwen3:8b")
    collector.ollama_source.refresh_now()
    after = scrape(collector)
    assert after.value("wordslab_model_size_bytes", model="qwen3:8b") is None
    # The variant now owns the weights blob it shared.
    assert after.value("wordslab_model_size_bytes", model="qwen3:8b-32k") > 300_000
