"""What every model scanner returns, the model-type vocabulary and the VRAM estimate."""
from __future__ import annotations

from dataclasses import dataclass

MODEL_TYPES = ("LLM", "VLM", "Embed", "ImgGen", "STT", "TTS")
# wordslab_model_status: complete and readable; a download interrupted or with files missing
# (size is what is on disk, no VRAM estimate); present but its metadata could not be read.
MODEL_STATUSES = ("ok", "incomplete", "error")
# For files whose metadata says nothing (a bare torch checkpoint); the admin can set a real type.
UNKNOWN_TYPE = "Other"

# Hugging Face pipeline tags (README front matter) to our types.
PIPELINE_TYPES = {
    "text-generation": "LLM", "text2text-generation": "LLM",
    "image-text-to-text": "VLM", "visual-question-answering": "VLM", "image-to-text": "VLM",
    "feature-extraction": "Embed", "sentence-similarity": "Embed",
    "text-to-image": "ImgGen", "image-to-image": "ImgGen",
    "automatic-speech-recognition": "STT",
    "text-to-speech": "TTS", "text-to-audio": "TTS",
}


@dataclass
class ModelRecord:
    provider: str
    model: str
    model_type: str = UNKNOWN_TYPE
    path: str = ""
    quantization: str = ""
    size_bytes: int = 0
    parameters: int | None = None
    context_length: int | None = None
    vram_estimate_bytes: int | None = None
    download_timestamp: float | None = None
    last_used_timestamp: float | None = None
    # Where last_used_timestamp comes from (a label on the metric): LAST_USED_SOURCES.
    last_used_source: str = "file_atime"
    status: str = "ok"  # one of MODEL_STATUSES
    problem: str = ""  # why the status is not ok, for pages and logs

    def mark(self, status: str, problem: str) -> None:
        """Downgrade the status (error beats incomplete beats ok) and say why."""
        if MODEL_STATUSES.index(status) >= MODEL_STATUSES.index(self.status):
            self.status = status
        self.problem = f"{self.problem}; {problem}" if self.problem else problem


# ollama_ps: Ollama's /api/ps (expires_at minus the keep-alive, or when a scan saw it loaded);
# file_atime: the weights' access time (relatime: about daily precision).
LAST_USED_SOURCES = ("ollama_ps", "file_atime")
# Ollama's default keep-alive (OLLAMA_KEEP_ALIVE unset): a loaded model's expires_at is its
# last request plus this.
OLLAMA_DEFAULT_KEEP_ALIVE_SECONDS = 300.0


@dataclass(frozen=True)
class KvShape:
    """What the KV cache size depends on (from config.json or Ollama's model_info)."""

    layers: int
    kv_heads: int
    head_dim: int


KV_BYTES_PER_ELEMENT = 2  # fp16 cache, the default of Ollama, llama.cpp, vLLM and transformers


def kv_cache_bytes(shape: KvShape | None, context_length: int | None) -> int:
    """K and V, per layer, per token: 2 * layers * context * kv_heads * head_dim * 2 bytes."""
    if shape is None or not context_length:
        return 0
    return 2 * shape.layers * context_length * shape.kv_heads * shape.head_dim * KV_BYTES_PER_ELEMENT


def vram_estimate(weights_bytes: int, shape: KvShape | None, context_length: int | None) -> int:
    """Weights as stored (already quantized) plus a full KV cache at the model's context length.

    Activations and runtime buffers are left out: they depend on batch size and engine
    and are small next to these two for LLMs.
    """
    return int(weights_bytes) + kv_cache_bytes(shape, context_length)


def type_from_architectures(architectures: list[str], config: dict) -> str | None:
    """Model type from transformers' `architectures` in config.json."""
    names = " ".join(architectures)
    if "Whisper" in names or "ForCTC" in names or "SpeechSeq2Seq" in names:
        return "STT"
    if "TextToSpeech" in names or "ForTextToWaveform" in names or "Vits" in names or "Bark" in names:
        return "TTS"
    if "vision_config" in config or "Vision" in names or "ImageTextToText" in names:
        return "VLM"
    if "ForCausalLM" in names or "ForConditionalGeneration" in names or "LMHead" in names:
        return "LLM"
    if names.endswith("Model") or "ForMaskedLM" in names:
        return "Embed"  # bare encoders (BERT, XLM-R...) are used as embedders
    return None


def type_from_capabilities(capabilities: list[str]) -> str:
    """Model type from Ollama's `capabilities` in /api/show."""
    caps = set(capabilities or [])
    if "embedding" in caps:
        return "Embed"
    if "vision" in caps:
        return "VLM"
    if "completion" in caps:
        return "LLM"
    return UNKNOWN_TYPE


def parse_parameter_size(text: str | None) -> int | None:
    """Ollama's details.parameter_size ("7.6B", "567M") to a count; used only without model_info."""
    if not text:
        return None
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
    text = text.strip().upper()
    try:
        if text[-1] in scale:
            return int(float(text[:-1]) * scale[text[-1]])
        return int(float(text))
    except (ValueError, IndexError):
        return None
