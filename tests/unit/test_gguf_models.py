"""GGUF models (issue 9 D siblings): parameters, quantization, context and VRAM from the header,
for plain model files and for Hugging Face repos holding one file per quantization.

Fixtures are written by llama.cpp's `gguf` package; the reader under test is our own.
"""
from __future__ import annotations

import gguf
import numpy as np
import pytest

from common.sources.file_models import scan_model_files
from common.sources.gguf_meta import _BLOCKS, FILE_TYPES, TENSOR_TYPES, Truncated, read_gguf
from common.sources.hf_models import gguf_variants, scan_hf_cache
from common.sources.model_dirs import hf_hub_cache
from common.sources.model_record import KvShape, kv_cache_bytes
from tests.fakes.model_files import gguf_bytes, hf_cache_repo, provider_file

KV = KvShape(layers=2, kv_heads=2, head_dim=64 // 4)


def test_gguf_file_model_from_its_header(vm_env, tmp_path):
    data = gguf_bytes(tmp_path, tensors={"a": ((64, 32), "float16"), "b": ((10,), "float32")})
    path = provider_file(vm_env, "torch", "tiny-q4.gguf", data)
    (record,) = scan_model_files(vm_env)
    assert (record.parameters, record.quantization, record.context_length) == (64 * 32 + 10, "Q4_K_M", 4096)
    assert record.vram_estimate_bytes == len(data) + kv_cache_bytes(KV, 4096)
    assert record.status == "ok"
    summary = read_gguf(path)
    assert (summary.architecture, summary.kv_shape) == ("llama", KV)


def test_gguf_cut_short_is_an_incomplete_download_of_that_file_only(vm_env, tmp_path):
    data = gguf_bytes(tmp_path, tensors={"a": ((300, 64), "float16"), "b": ((300, 64), "float32")})
    provider_file(vm_env, "torch", "cut-in-data.gguf", data[: len(data) - 100])  # inside the last tensor
    provider_file(vm_env, "torch", "cut-in-header.gguf", data[:200])  # inside the vocabulary
    provider_file(vm_env, "torch", "whole.gguf", data)
    records = {r.model: r for r in scan_model_files(vm_env)}
    for cut in ("cut-in-data.gguf", "cut-in-header.gguf"):
        assert records[cut].status == "incomplete" and "truncated" in records[cut].problem
        assert records[cut].size_bytes < len(data)
    assert records["whole.gguf"].status == "ok" and records["whole.gguf"].quantization == "Q4_K_M"


def test_not_a_gguf_is_an_error(vm_env):
    provider_file(vm_env, "torch", "fake.gguf", b"GGML" + b"\0" * 100)
    (record,) = scan_model_files(vm_env)
    assert record.status == "error" and "not a GGUF file" in record.problem


def test_hf_repo_of_quantizations_counts_one_of_them(vm_env, tmp_path):
    tensors = {"token_embd.weight": ((300, 64), "float16")}
    q4 = gguf_bytes(tmp_path, file_type="MOSTLY_Q4_K_M", tensors=tensors)
    q8 = gguf_bytes(tmp_path, file_type="MOSTLY_Q8_0", tensors={"token_embd.weight": ((300, 64), "float32")})
    projector = gguf_bytes(tmp_path, file_type="MOSTLY_F16", tensors={"mm.0.weight": ((8, 8), "float16")})
    hf_cache_repo(hf_hub_cache(vm_env), "org/m-GGUF", {"m-Q4_K_M.gguf": q4, "m-Q8_0.gguf": q8,
                                                      "mmproj-m-f16.gguf": projector,
                                                      "README.md": b"---\npipeline_tag: text-generation\n---\n"})
    (record,) = scan_hf_cache(hf_hub_cache(vm_env))
    assert record.status == "ok"
    assert (record.parameters, record.quantization, record.context_length) == (300 * 64, "Q4_K_M, Q8_0", 4096)
    assert record.vram_estimate_bytes == len(q4) + len(projector) + kv_cache_bytes(KV, 4096)
    assert record.size_bytes == len(q4) + len(q8) + len(projector) + len(b"---\npipeline_tag: text-generation\n---\n")


def test_split_gguf_is_one_model(vm_env, tmp_path):
    first = gguf_bytes(tmp_path, tensors={"a": ((100, 64), "float16")})
    second = gguf_bytes(tmp_path, tensors={"b": ((50, 64), "float16")})
    hf_cache_repo(hf_hub_cache(vm_env), "org/big-GGUF", {"Q4_K_M/big-00001-of-00002.gguf": first,
                                                        "Q4_K_M/big-00002-of-00002.gguf": second})
    (record,) = scan_hf_cache(hf_hub_cache(vm_env))
    assert record.parameters == 150 * 64
    assert record.vram_estimate_bytes == len(first) + len(second) + kv_cache_bytes(KV, 4096)
    assert gguf_variants(["Q4_K_M/big-00001-of-00002.gguf", "Q4_K_M/big-00002-of-00002.gguf", "x.gguf",
                          "mmproj.gguf"]) == {"Q4_K_M/big.gguf": ["Q4_K_M/big-00001-of-00002.gguf",
                                                                  "Q4_K_M/big-00002-of-00002.gguf"],
                                              "x.gguf": ["x.gguf"]}


def test_type_tables_agree_with_llama_cpps_gguf_package():
    for kind, (block_bytes, block_items) in _BLOCKS.items():
        items, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(kind)]
        assert (block_bytes, block_items) == (size, items), gguf.GGMLQuantizationType(kind)
    for kind, name in TENSOR_TYPES.items():
        assert gguf.GGMLQuantizationType(kind).name == name
    for kind, name in FILE_TYPES.items():
        assert gguf.LlamaFileType(kind).name.removesuffix("_MOE").endswith(name)


def test_quantized_tensors_are_counted_in_elements(vm_env, tmp_path):
    path = tmp_path / "q8.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    weights = gguf.quants.quantize(np.zeros((64, 256), dtype=np.float32), gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("w", weights, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    summary = read_gguf(path)
    assert (summary.parameters, summary.quantization) == (64 * 256, "Q8_0")
    path.write_bytes(path.read_bytes()[:-10])  # the last block cut
    with pytest.raises(Truncated):
        read_gguf(path)
