"""Model scanners over real files: HF cache with safetensors, Ollama manifests/blobs, plain files."""
import json
import os
import time

import pytest

from common.sources.file_models import scan_model_files
from common.sources.hf_models import scan_hf_cache
from common.sources.model_dirs import hf_hub_cache, ollama_models, torch_checkpoints
from common.sources.model_record import KvShape, kv_cache_bytes
from common.sources.ollama_client import OllamaClient
from common.sources.ollama_models import OllamaScanner, parse_time
from common.sources.safetensors_meta import summarize
from tests.fakes.model_files import (hf_cache_repo, hf_llm, llm_config, provider_file, safetensors_bytes,
                                     tensor_parameters, tiny_llm_tensors)
from tests.fakes.ollama_server import fake_ollama, sample_state

DAY = 86400.0


def by_model(records):
    return {r.model: r for r in records}


def test_safetensors_header_gives_parameters_and_dtype_without_touching_atime(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(safetensors_bytes({"a": ((4, 8), "float16"), "b": ((3,), "float32")}))
    old = time.time() - 30 * DAY
    os.utime(path, (old, old))
    summary = summarize(path)
    assert (summary.parameters, summary.dtype, summary.tensor_bytes) == (35, "F16", 4 * 8 * 2 + 3 * 4)
    assert path.stat().st_atime == pytest.approx(old)


def test_hf_cache_dir_follows_huggingface_hub_precedence(vm_env):
    assert hf_hub_cache(vm_env) == hf_hub_cache({**vm_env, "HF_HUB_CACHE": ""})
    assert str(hf_hub_cache(vm_env)).endswith("huggingface/hub")
    assert str(hf_hub_cache({**vm_env, "HF_HUB_CACHE": "/x/cache"})) == "/x/cache"
    assert str(hf_hub_cache({"HOME": "/h"})) == "/h/.cache/huggingface/hub"


def test_hf_llm_metadata_from_safetensors_and_config(vm_env):
    downloaded = time.time() - 3 * DAY
    hf_llm(vm_env, readme="---\nlicense: mit\npipeline_tag: text-generation\n---\n# Tiny", mtime=downloaded)
    (record,) = scan_hf_cache(hf_hub_cache(vm_env))
    tensors = tiny_llm_tensors()
    weights = tensor_parameters(tensors) * 2  # float16
    assert record.provider == "huggingface" and record.model == "tiny-org/tiny-llama"
    assert (record.model_type, record.quantization, record.context_length) == ("LLM", "F16", 2048)
    assert record.parameters == tensor_parameters(tensors)
    # llm_config(): 2 layers, 2 KV heads, head_dim 16/4 = 4, 2048 tokens, fp16 K and V.
    assert record.vram_estimate_bytes == weights + 2 * 2 * 2048 * 2 * 4 * 2
    blobs = hf_hub_cache(vm_env) / "models--tiny-org--tiny-llama" / "blobs"
    assert record.size_bytes == sum(p.stat().st_size for p in blobs.iterdir())
    assert record.download_timestamp == pytest.approx(downloaded)
    assert record.last_used_timestamp == pytest.approx(downloaded)  # our header reads left atime alone


@pytest.mark.parametrize("files, expected", [
    ({"config.json": {"architectures": ["BertModel"]}, "modules.json": []}, "Embed"),
    ({"config.json": {"architectures": ["LlavaForConditionalGeneration"], "vision_config": {}}}, "VLM"),
    ({"config.json": {"architectures": ["WhisperForConditionalGeneration"]}}, "STT"),
    ({"config.json": {"architectures": ["VitsModel"]}}, "TTS"),
    ({"model_index.json": {"_class_name": "StableDiffusionPipeline"}}, "ImgGen"),
    ({"config.json": {"architectures": ["BertModel"]}, "README.md": "---\npipeline_tag: text-to-speech\n---\n"},
     "TTS"),
    ({"config.json": {}}, "Other"),
])
def test_hf_model_type_from_metadata(vm_env, files, expected):
    raw = {k: v.encode() if isinstance(v, str) else json.dumps(v).encode() for k, v in files.items()}
    hf_cache_repo(hf_hub_cache(vm_env), "org/m", raw)
    (record,) = scan_hf_cache(hf_hub_cache(vm_env))
    assert record.model_type == expected


def test_hf_sharded_quantized_model_with_nested_text_config(vm_env):
    config = {"architectures": ["Qwen2VLForConditionalGeneration"], "vision_config": {},
              "text_config": llm_config(context=32768),
              "quantization_config": {"quant_method": "awq", "bits": 4}}
    shard = {"w": ((10, 10), "int32")}
    hf_cache_repo(hf_hub_cache(vm_env), "org/vl", {
        "config.json": json.dumps(config).encode(),
        "model-00001-of-00002.safetensors": safetensors_bytes(shard),
        "model-00002-of-00002.safetensors": safetensors_bytes({"v": ((5,), "float16")})})
    (record,) = scan_hf_cache(hf_hub_cache(vm_env))
    assert (record.model_type, record.quantization, record.context_length) == ("VLM", "awq-4bit", 32768)
    assert record.parameters == 105


def test_hf_uses_the_revision_main_points_to(vm_env):
    cache = hf_hub_cache(vm_env)
    hf_cache_repo(cache, "org/m", {"config.json": json.dumps(llm_config(context=1024)).encode()},
                  commit="a" * 40, ref="")
    hf_cache_repo(cache, "org/m", {"config.json": json.dumps(llm_config(context=4096)).encode()},
                  commit="b" * 40)
    (record,) = scan_hf_cache(cache)
    assert record.context_length == 4096


def test_hf_missing_cache_is_no_models_and_a_corrupt_repo_does_not_hide_others(vm_env):
    assert scan_hf_cache(hf_hub_cache(vm_env)) == []
    hf_llm(vm_env)
    broken = hf_hub_cache(vm_env) / "models--org--broken" / "snapshots" / ("c" * 40)
    broken.mkdir(parents=True)
    (broken / "model.safetensors").symlink_to("../../blobs/missing")
    records = by_model(scan_hf_cache(hf_hub_cache(vm_env)))
    assert set(records) == {"org/broken", "tiny-org/tiny-llama"}
    assert records["tiny-org/tiny-llama"].status == "ok"
    assert (records["org/broken"].status, records["org/broken"].size_bytes) == ("incomplete", 0)


def test_torch_fastai_keras_files(vm_env):
    provider_file(vm_env, "torch", "resnet18-f37072fd.pth")
    provider_file(vm_env, "fastai", "imagenet/wrn.pth")
    provider_file(vm_env, "keras", "encoder.safetensors", safetensors_bytes({"k": ((6, 6), "float32")}))
    provider_file(vm_env, "torch", "vit_b.pth.partial")
    records = {(r.provider, r.model): r for r in scan_model_files(vm_env)}
    assert set(records) == {("torch", "resnet18-f37072fd.pth"), ("fastai", "imagenet/wrn.pth"),
                            ("keras", "encoder.safetensors")}
    torch = records[("torch", "resnet18-f37072fd.pth")]
    assert torch.path == str(torch_checkpoints(vm_env) / "resnet18-f37072fd.pth")
    assert torch.parameters is None and torch.vram_estimate_bytes == torch.size_bytes > 0
    keras = records[("keras", "encoder.safetensors")]
    assert (keras.parameters, keras.quantization, keras.vram_estimate_bytes) == (36, "F32", 144)


@pytest.fixture
def ollama(vm_env):
    with fake_ollama(sample_state(ollama_models(vm_env))) as server:
        yield server


def test_ollama_variants_count_shared_weights_once(ollama, vm_env):
    models_dir = ollama_models(vm_env)
    records = by_model(OllamaScanner(OllamaClient(ollama.base_url), models_dir).scan())
    blobs_on_disk = sum(p.stat().st_size for p in (models_dir / "blobs").iterdir())
    assert sum(r.size_bytes for r in records.values()) == blobs_on_disk
    base, variant = records["qwen3:8b"], records["qwen3:8b-32k"]
    assert base.size_bytes > 300_000 > variant.size_bytes  # the weights belong to the first download
    assert (base.context_length, variant.context_length) == (8192, 32768)  # num_ctx of the variant
    kv = KvShape(layers=4, kv_heads=2, head_dim=512 // 8)
    assert variant.vram_estimate_bytes == 300_000 + kv_cache_bytes(kv, 32768)
    assert (base.parameters, base.quantization, base.model_type) == (8_030_261_248, "Q4_K_M", "LLM")
    assert base.download_timestamp == parse_time("2026-01-01T00:00:00Z")
    assert base.path.endswith("manifests/registry.ollama.ai/library/qwen3/8b")
    embed = records["nomic-embed-text:latest"]
    assert (embed.model_type, embed.parameters, embed.quantization) == ("Embed", 136_727_040, "F16")


def test_ollama_without_local_manifests_groups_variants_by_weights_digest(ollama):
    records = by_model(OllamaScanner(OllamaClient(ollama.base_url), None).scan())
    models = ollama.state.models
    assert records["qwen3:8b"].size_bytes == models["qwen3:8b"].size
    assert records["qwen3:8b-32k"].size_bytes == models["qwen3:8b-32k"].size - models["qwen3:8b"].size


def test_ollama_last_used_is_the_last_request_from_api_ps_and_outlives_the_unload(ollama):
    scanner = OllamaScanner(OllamaClient(ollama.base_url), None)
    assert by_model(scanner.scan())["qwen3:8b"].last_used_timestamp is None
    before = time.time()
    OllamaClient(ollama.base_url).generate("qwen3:8b", "hi")  # expires_at = request + 5 min
    after = time.time()
    time.sleep(0.05)
    record = by_model(scanner.scan())["qwen3:8b"]
    assert before - 0.01 <= record.last_used_timestamp <= after and record.last_used_source == "ollama_ps"
    used = record.last_used_timestamp
    ollama.state.loaded.clear()  # unloaded: the last request time stays
    assert by_model(scanner.scan())["qwen3:8b"].last_used_timestamp == used


def test_ollama_model_kept_loaded_forever_counts_as_used_when_first_seen_loaded(ollama):
    scanner = OllamaScanner(OllamaClient(ollama.base_url), None)
    OllamaClient(ollama.base_url).keep_alive("qwen3:8b", -1)  # expires_at far in the future
    first = by_model(scanner.scan())["qwen3:8b"].last_used_timestamp
    time.sleep(0.05)
    assert by_model(scanner.scan())["qwen3:8b"].last_used_timestamp == first  # loaded is not used


def test_ollama_models_from_a_registry_with_a_port(vm_env):
    from common.sources.ollama_models import manifest_path
    from tests.fakes.ollama_server import OllamaState, fake_model
    models_dir = ollama_models(vm_env)
    assert manifest_path(models_dir, "registry:5000/ns/model:tag") == \
        models_dir / "manifests" / "registry:5000" / "ns" / "model" / "tag"
    assert manifest_path(models_dir, "registry:5000/ns/model") == \
        models_dir / "manifests" / "registry:5000" / "ns" / "model" / "latest"
    state = OllamaState(models_dir=models_dir)
    state.install(fake_model("registry:5000/ns/qwen:8b", weights_key="q", modified_at="2026-01-01T00:00:00Z"))
    state.install(fake_model("registry:5000/ns/qwen:8b-32k", weights_key="q", num_ctx=32768,
                             modified_at="2026-01-02T00:00:00Z"))
    with fake_ollama(state) as server:
        records = by_model(OllamaScanner(OllamaClient(server.base_url), models_dir).scan())
    base, variant = records["registry:5000/ns/qwen:8b"], records["registry:5000/ns/qwen:8b-32k"]
    assert base.path == str(models_dir / "manifests" / "registry:5000" / "ns" / "qwen" / "8b")
    assert variant.path.endswith("manifests/registry:5000/ns/qwen/8b-32k")
    # The variant shares the weights: only its own small layers are its size.
    assert base.size_bytes == state.models["registry:5000/ns/qwen:8b"].size
    assert variant.size_bytes == state.models["registry:5000/ns/qwen:8b-32k"].size - 300_000 - 120
    blobs_on_disk = sum(p.stat().st_size for p in (models_dir / "blobs").iterdir())
    assert base.size_bytes + variant.size_bytes == blobs_on_disk


def test_ollama_cloud_model_has_no_vram_estimate_here(vm_env):
    from tests.fakes.ollama_server import OllamaState, fake_model
    state = OllamaState(models_dir=ollama_models(vm_env))
    state.install(fake_model("qwen3:8b"))
    state.install(fake_model("gpt-oss:120b-cloud", weights_size=384, remote_host="https://ollama.com:443"))
    with fake_ollama(state) as server:
        records = by_model(OllamaScanner(OllamaClient(server.base_url), ollama_models(vm_env)).scan())
    assert records["gpt-oss:120b-cloud"].vram_estimate_bytes is None
    assert records["qwen3:8b"].vram_estimate_bytes > 300_000


def test_ollama_model_with_a_blob_deleted_by_hand_is_incomplete(ollama, vm_env):
    from common.sources.ollama_models import blob_path
    models_dir = ollama_models(vm_env)
    embed = ollama.state.models["nomic-embed-text:latest"]
    blob_path(models_dir, embed.weights.digest).unlink()
    records = by_model(OllamaScanner(OllamaClient(ollama.base_url), models_dir).scan())
    broken = records["nomic-embed-text:latest"]
    assert broken.status == "incomplete" and broken.vram_estimate_bytes is None
    # What is still on disk, less the template blob an older model already counts.
    older = {layer.digest for layer in ollama.state.models["qwen3:8b"].layers}
    assert broken.size_bytes == sum(layer.size for layer in embed.layers
                                    if layer is not embed.weights and layer.digest not in older)
    assert records["qwen3:8b"].status == "ok"


@pytest.mark.parametrize(("text", "expected"), [
    # Go's RFC3339Nano drops trailing zeros: any count of fraction digits (Python 3.10's
    # fromisoformat takes only 3 or 6), nanoseconds cut to microseconds.
    ("2024-05-01T12:34:56.12345-07:00", 1714592096.12345),
    ("2024-05-01T12:34:56.1Z", 1714566896.1),
    ("2024-05-01T12:34:56.123456789+02:00", 1714559696.123456),
    ("2024-05-01T12:34:56Z", 1714566896.0),
    ("not a time", None),
    (None, None),
])
def test_parse_time_reads_every_fraction_length_go_writes(text, expected):
    assert parse_time(text) == expected
