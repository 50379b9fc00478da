"""Two H100s for the integration world: the fake pynvml replaying the recorded H100 under load.

The exporter process imports the fake as `pynvml` (first on its PYTHONPATH), so the GPU
collector and the cuda app version run their real NVML code paths; two GPUs give the
dashboard's per-GPU repeat more than one block.
"""
from __future__ import annotations

from tests.fakes.fake_nvml import FAKE_NVML_DIR
from tests.support.world import FIXTURES, World


def build(world: World) -> None:
    world.pythonpath.insert(0, str(FAKE_NVML_DIR))
    world.env["FAKE_NVML_FIXTURE"] = str(FIXTURES / "nvml" / "h100-under-load.json")
    world.env["FAKE_NVML_GPUS"] = "2"
