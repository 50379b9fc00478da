"""Real small model files on disk: a Hugging Face hub cache layout with safetensors written by
the safetensors library, and PyTorch hub / fastai / Keras files where those libraries put them.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save

from common.sources.model_dirs import FILE_PROVIDER_DIRS, hf_hub_cache


def safetensors_bytes(tensors: dict[str, tuple[tuple[int, ...], str]]) -> bytes:
    """{name: (shape, numpy dtype)} -> a real safetensors file's bytes (zeros)."""
    return save({name: np.zeros(shape, dtype=dtype) for name, (shape, dtype) in tensors.items()})


def tiny_llm_tensors(layers: int = 2, hidden: int = 16, vocab: int = 32) -> dict:
    tensors = {"model.embed_tokens.weight": ((vocab, hidden), "float16")}
    for i in range(layers):
        tensors[f"model.layers.{i}.self_attn.q_proj.weight"] = ((hidden, hidden), "float16")
        tensors[f"model.layers.{i}.mlp.up_proj.weight"] = ((hidden * 2, hidden), "float16")
    return tensors


def tensor_parameters(tensors: dict) -> int:
    return sum(int(np.prod(shape)) for shape, _ in tensors.values())


def llm_config(*, layers: int = 2, hidden: int = 16, heads: int = 4, kv_heads: int = 2,
               context: int = 2048, **extra) -> dict:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
            "max_position_embeddings": context, "torch_dtype": "float16", **extra}


def hf_cache_repo(cache_dir: Path, repo_id: str, files: dict[str, bytes], *,
                  commit: str | None = None, ref: str = "main", mtime: float | None = None) -> Path:
    """Lay out models--org--name/{blobs,refs,snapshots/<commit>} the way huggingface_hub does."""
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    commit = commit or hashlib.sha1(repo_id.encode() + json.dumps(sorted(files)).encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        if mtime is not None:
            os.utime(blob, (mtime, mtime))
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref:
        (repo / "refs" / ref).write_text(commit)
    return repo


def hf_llm(env: dict, repo_id: str = "tiny-org/tiny-llama", *, readme: str | None = None,
           config: dict | None = None, **kwargs) -> Path:
    """A small but real causal LM in the env's HF cache (HF_HUB_CACHE / HF_HOME)."""
    files = {"config.json": json.dumps(config or llm_config()).encode(),
             "model.safetensors": safetensors_bytes(tiny_llm_tensors())}
    if readme is not None:
        files["README.md"] = readme.encode()
    return hf_cache_repo(hf_hub_cache(env), repo_id, files, **kwargs)


def torch_checkpoint_bytes() -> bytes:
    """Shaped like torch.save's zip (archive/data.pkl); the scanner never unpickles it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"fc.weight": [0.0] * 64}))
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


def provider_file(env: dict, provider: str, name: str, data: bytes | None = None) -> Path:
    """A model file in the torch / fastai / keras folder the env points at."""
    path = FILE_PROVIDER_DIRS[provider](env) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(torch_checkpoint_bytes() if data is None else data)
    return path


def gguf_bytes(tmp_dir: Path, *, file_type: str = "MOSTLY_Q4_K_M", tensors: dict | None = None,
               context: int = 4096, layers: int = 2, heads: int = 4, kv_heads: int = 2, embedding: int = 64,
               arch: str = "llama", vocab: int = 3000) -> bytes:
    """A real GGUF file written by llama.cpp's own `gguf` package: metadata as llama.cpp sets it
    (a tokenizer vocabulary included, the large arrays a reader must skip) and zero tensors."""
    import gguf
    path = Path(tmp_dir) / f"w-{os.getpid()}-{id(tensors)}.gguf"
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_context_length(context)
    writer.add_block_count(layers)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_embedding_length(embedding)
    writer.add_file_type(getattr(gguf.LlamaFileType, file_type))
    writer.add_token_list([f"tok{i}" for i in range(vocab)])
    writer.add_token_scores([0.0] * vocab)
    for name, (shape, dtype) in (tensors or {"token_embd.weight": ((vocab, embedding), "float16")}).items():
        writer.add_tensor(name, np.zeros(shape, dtype=dtype))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    data = path.read_bytes()
    path.unlink()
    return data
