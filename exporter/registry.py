"""The exporter's collectors, in output order: add a new collector's class here."""
from __future__ import annotations

from typing import Sequence

from common.config import Settings
from exporter.collectors.apps import AppsCollector
from exporter.collectors.base import WordslabCollector
from exporter.collectors.cpu import CpuCollector
from exporter.collectors.endpoints import EndpointsCollector
from exporter.collectors.external_apis import ExternalApisCollector
from exporter.collectors.gpu import GpuCollector
from exporter.collectors.jobs import JobsCollector
from exporter.collectors.memory import MemoryCollector
from exporter.collectors.models import ModelsCollector
from exporter.collectors.network import NetworkCollector
from exporter.collectors.projects import ProjectsCollector
from exporter.collectors.storage import StorageCollector
from exporter.collectors.system import SystemCollector
from exporter.collectors.vms import VmsCollector

COLLECTORS: Sequence[type[WordslabCollector]] = (
    GpuCollector,
    SystemCollector,
    CpuCollector,
    MemoryCollector,
    StorageCollector,
    NetworkCollector,
    AppsCollector,
    ProjectsCollector,
    EndpointsCollector,
    ExternalApisCollector,
    ModelsCollector,
    VmsCollector,
    JobsCollector,
)


def build_collectors(settings: Settings,
                     classes: Sequence[type[WordslabCollector]] = COLLECTORS) -> list[WordslabCollector]:
    return [cls(settings) for cls in classes]
