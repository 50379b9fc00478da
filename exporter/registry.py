"""The list of collectors and the prometheus_client registry built from them."""
from __future__ import annotations

import importlib
from typing import Sequence

from prometheus_client import CollectorRegistry

from .collectors.base import UmbrellaCollector, WordslabCollector
from .config import Settings

# "module:Class" of every collector, in output order. Add new collectors here.
COLLECTORS: Sequence[str] = (
    "gpu:GpuCollector",
    "system:SystemCollector",
    "cpu:CpuCollector",
    "memory:MemoryCollector",
    "storage:StorageCollector",
    "network:NetworkCollector",
    "apps:AppsCollector",
    "projects:ProjectsCollector",
    "endpoints:EndpointsCollector",
    "external_apis:ExternalApisCollector",
    "models:ModelsCollector",
    "vms:VmsCollector",
    "jobs:JobsCollector",
)


def build_collectors(settings: Settings, names: Sequence[str] = COLLECTORS) -> list[WordslabCollector]:
    collectors = []
    for ref in names:
        module_name, class_name = ref.split(":")
        module = importlib.import_module(f"exporter.collectors.{module_name}")
        collectors.append(getattr(module, class_name)(settings))
    return collectors


def build_registry(collectors: Sequence[WordslabCollector]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(UmbrellaCollector(collectors))
    return registry
