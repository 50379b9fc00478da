"""External VMs on cloud GPU providers: platforms, templates, VMs, running intervals, monthly costs.

Times are unix seconds (floats): SQLite drops time zones, and the cost arithmetic
works in seconds anyway. The admin writes every table here (its status refresher
records the intervals); the exporter only reads them.
"""
from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from common.store.db import Base
from common.store.scrubbed import ScrubbedText

# Our status vocabulary; each provider client maps its own states onto it, and the admin adds
# "creating" (a create was sent, its instance id not recorded yet), "missing" (the provider's
# list left the instance out: it may still bill) and "gone" (left out long enough, see below).
VM_STATUSES = ("new", "creating", "starting", "running", "stopping", "stopped", "missing", "gone",
               "terminated", "error", "unknown")
# While in these states the provider bills compute (a loading instance is already rented).
BILLED_STATUSES = ("starting", "running")
# The provider may still bill in these: the row cannot be deleted, stop/terminate stay offered.
MAY_BILL_STATUSES = ("creating", "starting", "running", "stopping", "stopped", "missing", "error", "unknown")

# The "gone" rule: an instance the provider's successful list answers leave out is "missing"
# (intervals stay open, buttons stay) until it is left out of MISSING_ANSWERS consecutive
# answers spanning at least MISSING_MIN_SECONDS; then it is "gone" (billing presumed ended
# then, row deletable). A half-done create ("creating") that never appears goes back to "new"
# under the same rule. One answer that lies never loses a VM.
MISSING_ANSWERS = 3
MISSING_MIN_SECONDS = 600.0

# Settings keys (common.store.settings) the admin edits and the collector publishes.
BUDGET_SETTING = "vm_cost_budget_month_usd"
STATUS_INTERVAL_SETTING = "vm_status_interval_seconds"
DEFAULT_STATUS_INTERVAL_SECONDS = 60.0
COST_INTERVAL_SECONDS = 3600.0


class HostingPlatform(Base):
    __tablename__ = "vm_platforms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    provider: Mapped[str] = mapped_column(String(40))
    # Name of the env var holding the key (RUNPOD_API_KEY, VAST_API_KEY, JL_API_KEY...).
    api_key_var: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # A key typed in the admin; never shown again, never exported.
    api_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Only for tests and proxies: where the provider's API lives instead of its public URL.
    base_url: Mapped[str | None] = mapped_column(String(400), nullable=True)

    templates: Mapped[list["VmTemplate"]] = relationship(back_populates="platform")

    def __str__(self) -> str:
        return f"{self.name} ({self.provider})"


class VmTemplate(Base):
    __tablename__ = "vm_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("vm_platforms.id"))
    region: Mapped[str] = mapped_column(String(100), default="")
    # The provider's GPU type id: "NVIDIA RTX A6000" (Runpod), "RTX_4090" (Vast), "A100" (Jarvislabs).
    gpu: Mapped[str] = mapped_column(String(100))
    gpu_count: Mapped[int] = mapped_column(Integer, default=1)
    vram_gb: Mapped[float] = mapped_column(Float, default=0.0)
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    ram_gb: Mapped[float] = mapped_column(Float, default=0.0)
    compute_usd_per_hour: Mapped[float] = mapped_column(Float, default=0.0)
    container_usd_per_gb_month: Mapped[float] = mapped_column(Float, default=0.0)
    volume_usd_per_gb_month: Mapped[float] = mapped_column(Float, default=0.0)
    image: Mapped[str] = mapped_column(String(300), default="")
    # The VM runs wordslab-dashboard: its exporter is scraped under its own instance.
    runs_dashboard: Mapped[bool] = mapped_column(Boolean, default=False)
    dashboard_port: Mapped[int] = mapped_column(Integer, default=8888)
    exporter_port: Mapped[int] = mapped_column(Integer, default=9877)
    # Autostop defaults for the template's VMs (each VM may set its own); None = off.
    autostop_idle_minutes: Mapped[float | None] = mapped_column(Float, nullable=True)
    autostop_gpu_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    autostop_after_hours: Mapped[float | None] = mapped_column(Float, nullable=True)

    platform: Mapped[HostingPlatform] = relationship(back_populates="templates")
    vms: Mapped[list["Vm"]] = relationship(back_populates="template")

    def __str__(self) -> str:
        return self.name


class Vm(Base):
    __tablename__ = "vms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("vm_templates.id"))
    container_gb: Mapped[float] = mapped_column(Float, default=20.0)
    volume_gb: Mapped[float] = mapped_column(Float, default=0.0)
    # Alert when it has been running longer than this; None = no limit.
    max_running_hours: Mapped[float | None] = mapped_column(Float, nullable=True)
    instance_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="new")
    provider_state: Mapped[str] = mapped_column(String(60), default="")
    # Last provider error for this VM ("" when the last call succeeded).
    last_error: Mapped[str] = mapped_column(ScrubbedText, default="")
    terminal_url: Mapped[str] = mapped_column(String(400), default="")
    dashboard_url: Mapped[str] = mapped_column(String(400), default="")
    # Public base URL of its exporter when it runs wordslab-dashboard (file_sd target).
    exporter_target: Mapped[str] = mapped_column(String(200), default="")
    # The storage existence period: created at the provider -> terminated.
    created_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    terminated_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_stopped_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    status_checked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # When the create was sent (the intent, committed before the provider call): the status
    # refresh adopts the provider's instance of this VM's name if recording its id failed.
    create_requested_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Consecutive successful provider answers that left the instance out, since when.
    missing_answers: Mapped[int] = mapped_column(Integer, default=0)
    missing_since: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Autostop (admin/cloud/autostop.py): stop after this many minutes with every GPU under
    # autostop_gpu_percent, and/or after this many hours running; None = the template's value.
    autostop_idle_minutes: Mapped[float | None] = mapped_column(Float, nullable=True)
    autostop_gpu_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    autostop_after_hours: Mapped[float | None] = mapped_column(Float, nullable=True)
    # "keep running" pressed: both windows start again from here.
    autostop_kept_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Unix time autostop will stop it unless it is used (None: no countdown), and why, in words.
    autostop_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    autostop_note: Mapped[str] = mapped_column(Text, default="")

    template: Mapped[VmTemplate] = relationship(back_populates="vms")
    intervals: Mapped[list["VmInterval"]] = relationship(
        back_populates="vm", cascade="all, delete-orphan", order_by="VmInterval.started_at")
    costs: Mapped[list["VmMonthlyCost"]] = relationship(back_populates="vm", cascade="all, delete-orphan")

    def __str__(self) -> str:
        return self.name


class VmInterval(Base):
    """One period the VM was billed for compute; ended_at None = still running."""

    __tablename__ = "vm_intervals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    vm: Mapped[Vm] = relationship(back_populates="intervals")


class VmMonthlyCost(Base):
    """Cost of one VM in one calendar month (UTC), refreshed hourly and after each action."""

    __tablename__ = "vm_monthly_costs"
    __table_args__ = (UniqueConstraint("vm_id", "month"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"), index=True)
    month: Mapped[str] = mapped_column(String(7))  # "2026-03"
    compute_usd: Mapped[float] = mapped_column(Float, default=0.0)
    storage_usd: Mapped[float] = mapped_column(Float, default=0.0)
    total_usd: Mapped[float] = mapped_column(Float, default=0.0)
    # "recorded" (our intervals x rates) or "provider" (reconciled with its billing).
    source: Mapped[str] = mapped_column(String(20), default="recorded")
    computed_at: Mapped[float] = mapped_column(Float, default=0.0)

    vm: Mapped[Vm] = relationship(back_populates="costs")
