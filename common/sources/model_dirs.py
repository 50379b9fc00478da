"""Where each provider keeps its models, resolved from the VM's environment like the libraries do."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or Path.home())


def _cache_home(env: Mapping[str, str]) -> Path:
    return Path(env.get("XDG_CACHE_HOME") or _home(env) / ".cache")


def hf_hub_cache(env: Mapping[str, str]) -> Path:
    """huggingface_hub's order: HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub, XDG cache."""
    explicit = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit)
    hf_home = env.get("HF_HOME")
    return Path(hf_home) / "hub" if hf_home else _cache_home(env) / "huggingface" / "hub"


def ollama_models(env: Mapping[str, str]) -> Path:
    return Path(env.get("OLLAMA_MODELS") or _home(env) / ".ollama" / "models")


def torch_checkpoints(env: Mapping[str, str]) -> Path:
    torch_home = env.get("TORCH_HOME")
    base = Path(torch_home) if torch_home else _cache_home(env) / "torch"
    return base / "hub" / "checkpoints"


def fastai_models(env: Mapping[str, str]) -> Path:
    return Path(env.get("FASTAI_HOME") or _home(env) / ".fastai") / "models"


def keras_models(env: Mapping[str, str]) -> Path:
    return Path(env.get("KERAS_HOME") or _home(env) / ".keras") / "models"


@dataclass(frozen=True)
class ModelProvider:
    name: str  # the `provider` label of the model metrics and the stored rows
    label: str  # as the admin shows it
    # Libraries whose models are plain files in one directory: where that directory is.
    files_dir: Callable[[Mapping[str, str]], Path] | None = None


# The one list of model providers, in display order; the names below derive from it.
MODEL_PROVIDER_LIST = (
    ModelProvider("ollama", "Ollama"),
    ModelProvider("huggingface", "Hugging Face"),
    ModelProvider("torch", "PyTorch", torch_checkpoints),
    ModelProvider("fastai", "fastai", fastai_models),
    ModelProvider("keras", "Keras", keras_models),
)
MODEL_PROVIDERS = tuple(p.name for p in MODEL_PROVIDER_LIST)
MODEL_PROVIDER_LABELS = {p.name: p.label for p in MODEL_PROVIDER_LIST}
FILE_PROVIDER_DIRS = {p.name: p.files_dir for p in MODEL_PROVIDER_LIST if p.files_dir}
