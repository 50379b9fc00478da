"""AI services: local model endpoints (3.1) and external AI APIs (3.2)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from common.store.db import Base
from common.store.scrubbed import ScrubbedText
from common.store.jobs import utcnow

SERVICE_TYPES = ("LLM", "VLM", "Embed", "ImgGen", "STT", "TTS")
SERVERS = ("vllm", "ollama", "fastapi")
API_TYPES = ("openai", "ollama", "openAPI")
ENDPOINT_STATUSES = ("starting", "running", "error", "stopped")
# External AI API providers (not the model providers, common.sources.model_dirs.MODEL_PROVIDERS).
API_PROVIDERS = ("openai", "anthropic", "openrouter", "mistral", "groq", "together", "huggingface",
                 "google", "ollama", "other")
DEFAULT_PROBE_INTERVAL_SECONDS = 60


class Endpoint(Base):
    """A local model server the admin configures, starts and stops."""

    __tablename__ = "endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    model: Mapped[str] = mapped_column(String(300), default="")
    service_type: Mapped[str] = mapped_column(String(10), default="LLM")
    server: Mapped[str] = mapped_column(String(10), default="vllm")
    api_type: Mapped[str] = mapped_column(String(10), default="openai")
    internal_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    base_url: Mapped[str] = mapped_column(String(300), default="")
    # fastapi: where health is read (default {base_url}/health).
    health_url: Mapped[str] = mapped_column(String(300), default="")
    # vllm/fastapi: a command (placeholders {model} {port} {gpu_memory_share}) or a container image.
    command: Mapped[str] = mapped_column(Text, default="")
    image: Mapped[str] = mapped_column(String(300), default="")
    gpu_memory_share: Mapped[float | None] = mapped_column(Float, nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    container_id: Mapped[str] = mapped_column(String(80), default="")
    status: Mapped[str] = mapped_column(String(10), default="stopped")
    last_error: Mapped[str] = mapped_column(ScrubbedText, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    def __repr__(self) -> str:
        return f"<Endpoint {self.name} {self.server} {self.status}>"

    def __str__(self) -> str:
        return self.name


class ExternalApi(Base):
    """A hosted AI API. Its stored keys never leave this table unmasked."""

    __tablename__ = "external_apis"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    provider: Mapped[str] = mapped_column(String(20), default="other")
    api_type: Mapped[str] = mapped_column(String(10), default="openai")
    base_url: Mapped[str] = mapped_column(String(300), default="")
    # openAPI type: the spec URL probed (default {base_url}/openapi.json).
    spec_url: Mapped[str] = mapped_column(String(300), default="")
    api_key_var: Mapped[str] = mapped_column(String(100), default="")
    api_key: Mapped[str] = mapped_column(Text, default="")
    # Cost reports of OpenAI (and Anthropic) need an organization admin key.
    admin_key_var: Mapped[str] = mapped_column(String(100), default="")
    admin_key: Mapped[str] = mapped_column(Text, default="")
    quota_description: Mapped[str] = mapped_column(Text, default="")
    cost_per_call_description: Mapped[str] = mapped_column(Text, default="")
    manual_cost_month_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    probe_interval_seconds: Mapped[int] = mapped_column(Integer, default=DEFAULT_PROBE_INTERVAL_SECONDS)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)

    def __repr__(self) -> str:  # no key material, ever
        return f"<ExternalApi {self.name} {self.provider}>"

    def __str__(self) -> str:
        return self.name
