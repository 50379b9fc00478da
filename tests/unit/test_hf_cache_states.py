"""The Hugging Face cache as people really have it (issue 9 D): blobs deleted by hand,
interrupted downloads, two copies of the weights in one snapshot, quantized layouts.

Real cache layouts on disk (tests/fakes/model_files.hf_cache_repo), safetensors written by the
safetensors library or, for dtypes numpy cannot write (F8_E4M3, packed int4), byte for byte.
"""
from __future__ import annotations

import hashlib
import json
import struct

from common.sources.hf_models import safetensors_set, scan_hf_cache
from common.sources.model_dirs import hf_hub_cache
from tests.fakes.model_files import hf_cache_repo, llm_config, safetensors_bytes

BYTES = {"F16": 2, "BF16": 2, "F32": 4, "F8_E4M3": 1, "I8": 1, "U8": 1, "I32": 4}


def raw_safetensors(tensors: dict[str, tuple[tuple[int, ...], str]]) -> bytes:
    """A safetensors file for any dtype: header {name: dtype, shape, data_offsets} then zeros."""
    header, offset = {}, 0
    for name, (shape, dtype) in tensors.items():
        size = BYTES[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


def scan_one(env):
    (record,) = scan_hf_cache(hf_hub_cache(env))
    return record


def test_link_to_a_missing_blob_keeps_the_repo_with_the_size_of_blobs_present(vm_env):
    config = json.dumps(llm_config()).encode()
    weights = safetensors_bytes({"w": ((16, 16), "float16")})
    repo = hf_cache_repo(hf_hub_cache(vm_env), "org/m", {"config.json": config, "model.safetensors": weights})
    (repo / "blobs" / hashlib.sha256(weights).hexdigest()).unlink()  # deleted by hand
    record = scan_one(vm_env)
    assert (record.model, record.status) == ("org/m", "incomplete")
    assert record.size_bytes == len(config)
    assert record.vram_estimate_bytes is None and record.parameters is None
    assert record.context_length == 2048 and "model.safetensors" in record.problem


def test_interrupted_download_is_incomplete_with_its_bytes_on_disk_and_no_vram(vm_env):
    config = json.dumps(llm_config()).encode()
    repo = hf_cache_repo(hf_hub_cache(vm_env), "org/m", {"config.json": config})
    (repo / "blobs" / ("ab" * 32 + ".incomplete")).write_bytes(b"\0" * 5000)  # the weights, half there
    record = scan_one(vm_env)
    assert record.status == "incomplete" and "interrupted" in record.problem
    assert record.size_bytes == len(config) + 5000
    assert record.vram_estimate_bytes is None and record.parameters is None


def test_download_cut_before_any_file_completed_is_listed_as_incomplete(vm_env):
    blobs = hf_hub_cache(vm_env) / "models--org--m" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / ("cd" * 32 + ".incomplete")).write_bytes(b"\0" * 100)
    record = scan_one(vm_env)
    assert (record.model, record.status, record.size_bytes) == ("org/m", "incomplete", 100)


def test_consolidated_beside_indexed_shards_counts_one_weight_set(vm_env):
    shard1 = {"model.layers.0.w": ((64, 32), "float16")}
    shard2 = {"model.layers.1.w": ((64, 32), "float16")}
    index = {"metadata": {"total_size": 2 * 64 * 32 * 2},
             "weight_map": {"model.layers.0.w": "model-00001-of-00002.safetensors",
                            "model.layers.1.w": "model-00002-of-00002.safetensors"}}
    hf_cache_repo(hf_hub_cache(vm_env), "mistralai/m", {
        "config.json": json.dumps(llm_config(layers=2, hidden=16, heads=4, kv_heads=2, context=1024)).encode(),
        "model.safetensors.index.json": json.dumps(index).encode(),
        "model-00001-of-00002.safetensors": safetensors_bytes(shard1),
        "model-00002-of-00002.safetensors": safetensors_bytes(shard2),
        "consolidated.safetensors": safetensors_bytes({"layers.0.w": ((64, 32), "float16"),
                                                       "layers.1.w": ((64, 32), "float16")})})
    record = scan_one(vm_env)
    assert record.status == "ok"
    assert record.parameters == 2 * 64 * 32
    kv = 2 * 2 * 1024 * 2 * 4 * 2
    assert record.vram_estimate_bytes == 2 * 64 * 32 * 2 + kv


def test_one_weight_set_rules():
    assert safetensors_set(["consolidated.safetensors"]) == ["consolidated.safetensors"]
    assert safetensors_set(["unet/diffusion_pytorch_model.safetensors",
                            "unet/diffusion_pytorch_model.fp16.safetensors",
                            "text_encoder/model.safetensors"]) == [
        "text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors"]
    assert safetensors_set(["unet/diffusion_pytorch_model.fp16.safetensors"]) == [
        "unet/diffusion_pytorch_model.fp16.safetensors"]


def test_gptq_packed_int4_counts_logical_parameters(vm_env):
    # GPTQ 4-bit: qweight int32 [in/8, out], qzeros/scales/g_idx are decoding aids, not parameters.
    tensors = {"model.layers.0.mlp.qweight": ((128 // 8, 256), "I32"),
               "model.layers.0.mlp.qzeros": ((1, 256 // 8), "I32"),
               "model.layers.0.mlp.scales": ((1, 256), "F16"),
               "model.layers.0.mlp.g_idx": ((128,), "I32"),
               "model.embed_tokens.weight": ((100, 128), "F16")}
    config = llm_config(quantization_config={"quant_method": "gptq", "bits": 4, "group_size": 128})
    hf_cache_repo(hf_hub_cache(vm_env), "org/gptq", {"config.json": json.dumps(config).encode(),
                                                    "model.safetensors": raw_safetensors(tensors)})
    record = scan_one(vm_env)
    assert record.quantization == "gptq-4bit"
    assert record.parameters == 128 * 256 + 100 * 128


def test_fp8_weights_count_without_their_scales(vm_env):
    tensors = {"model.layers.0.w.weight": ((256, 128), "F8_E4M3"),
               "model.layers.0.w.weight_scale_inv": ((2, 1), "F32"),
               "model.layers.0.w.input_scale": ((1,), "F32"),
               "lm_head.weight": ((100, 128), "BF16")}
    config = llm_config(quantization_config={"quant_method": "fp8", "fmt": "e4m3"})
    hf_cache_repo(hf_hub_cache(vm_env), "org/fp8", {"config.json": json.dumps(config).encode(),
                                                   "model.safetensors": raw_safetensors(tensors)})
    record = scan_one(vm_env)
    assert (record.quantization, record.parameters) == ("fp8", 256 * 128 + 100 * 128)


def test_bitsandbytes_nf4_packed_bytes_count_two_weights_each(vm_env):
    tensors = {"model.layers.0.w.weight": ((256 * 128 // 2, 1), "U8"),
               "model.layers.0.w.weight.absmax": ((512,), "F32"),
               "model.layers.0.w.weight.quant_map": ((16,), "F32"),
               "model.layers.0.w.weight.quant_state.bitsandbytes__nf4": ((90,), "U8"),
               "model.norm.weight": ((128,), "F16")}
    config = llm_config(quantization_config={"quant_method": "bitsandbytes", "load_in_4bit": True})
    hf_cache_repo(hf_hub_cache(vm_env), "org/nf4", {"config.json": json.dumps(config).encode(),
                                                   "model.safetensors": raw_safetensors(tensors)})
    record = scan_one(vm_env)
    assert (record.quantization, record.parameters) == ("bitsandbytes-4bit", 256 * 128 + 128)


def test_int8_and_bf16_dtypes_are_counted_as_stored(vm_env):
    tensors = {"a.weight": ((64, 64), "I8"), "a.SCB": ((64,), "F32"), "b.weight": ((32, 32), "BF16")}
    hf_cache_repo(hf_hub_cache(vm_env), "org/i8", {"model.safetensors": raw_safetensors(tensors)})
    record = scan_one(vm_env)
    assert (record.quantization, record.parameters) == ("I8", 64 * 64 + 32 * 32)
    assert record.vram_estimate_bytes == 64 * 64 + 64 * 4 + 32 * 32 * 2


def test_cache_without_symlinks_counts_the_files_in_the_snapshot(vm_env):
    # huggingface_hub where it cannot symlink: the snapshot holds the files, blobs/ stays empty.
    weights = safetensors_bytes({"w": ((16, 16), "float16")})
    config = json.dumps(llm_config()).encode()
    snapshot = hf_hub_cache(vm_env) / "models--org--copied" / "snapshots" / ("d" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_bytes(config)
    (snapshot / "model.safetensors").write_bytes(weights)
    (hf_hub_cache(vm_env) / "models--org--copied" / "refs").mkdir()
    (hf_hub_cache(vm_env) / "models--org--copied" / "refs" / "main").write_text("d" * 40)
    record = scan_one(vm_env)
    assert (record.status, record.size_bytes, record.parameters) == ("ok", len(weights) + len(config), 256)


def test_repo_with_pytorch_bin_weights_only_reads_their_parameters(vm_env):
    from pathlib import Path
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "torch"
    expected = json.loads((fixtures / "expected.json").read_text())["cnn-bf16.bin"]
    weights = (fixtures / "cnn-bf16.bin").read_bytes()
    hf_cache_repo(hf_hub_cache(vm_env), "org/old-bin", {
        "config.json": json.dumps({"architectures": ["BertModel"]}).encode(),
        "pytorch_model.bin": weights, "training_args.bin": b"not weights"})
    record = scan_one(vm_env)
    assert record.status == "ok"
    assert record.parameters == expected["parameters"]
    assert record.quantization == expected["dtype"]
