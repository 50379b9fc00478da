"""Theoretical peak throughput per NVIDIA GPU model and precision, matched on the NVML name.

All figures are dense (no 2:4 structured sparsity; NVIDIA datasheets print the sparse
figure, twice the dense one, marked "*") and in operations per second.
Precisions:
  fp32  FP32 on CUDA cores (non-tensor)
  tf32, fp16, bf16, fp8  tensor cores with FP32 accumulate, what PyTorch training and
        inference use (GeForce cards run FP32 accumulate at half their FP16-accumulate rate)
  int8  tensor cores, operations per second (TOPS)
  fp4   tensor cores, Blackwell only
A precision the GPU has no tensor path for is absent. An unknown model (including laptop
GPUs, whose clocks depend on the OEM power limit) gets no figures at all.

Data-center cards use their datasheet figures directly. GeForce and RTX A-series cards
are computed as SMs x boost clock x the architecture's dense ops per SM per clock; the
per-SM rates come from NVIDIA's architecture whitepapers, whose tables they reproduce
(RTX 2080 Ti, 3090, 4090, 5090, A40: see tests/unit/test_gpu_specs.py). SM counts and
reference boost clocks are NVIDIA's product-page specifications.
docs/gpu-flops.md is generated from this table: `python -m exporter.gpu_specs`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

T = 1e12  # tera

PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8", "fp4")


@dataclass(frozen=True)
class GpuSpec:
    model: str                  # human name in the docs table
    nvml_names: tuple[str, ...]  # as nvmlDeviceGetName answers, before normalisation
    flops: Mapping[str, float]  # precision -> dense ops per second
    source: str


def normalize_name(nvml_name: str) -> str:
    """Case- and vendor-prefix-insensitive key: older drivers omit "NVIDIA ", Teslas say "Tesla "."""
    name = " ".join(nvml_name.lower().split())
    for prefix in ("nvidia ", "tesla "):
        name = name.removeprefix(prefix)
    return name


@dataclass(frozen=True)
class Architecture:
    source: str
    rates: Mapping[str, int]  # precision -> dense ops per SM per clock


# Rates = the whitepaper table's figure / (SMs x boost clock).
TURING_GEFORCE = Architecture("NVIDIA Turing GPU Architecture whitepaper, appendix tables",
                              {"fp32": 128, "fp16": 512, "int8": 2048})
TURING_TITAN = Architecture("NVIDIA Turing GPU Architecture whitepaper (TITAN RTX: full-rate "
                            "FP32 accumulate)", {"fp32": 128, "fp16": 1024, "int8": 2048})
AMPERE_GEFORCE = Architecture("NVIDIA Ampere GA102 GPU Architecture whitepaper, GeForce tables",
                              {"fp32": 256, "tf32": 256, "fp16": 512, "bf16": 512, "int8": 2048})
AMPERE_PRO = Architecture("NVIDIA Ampere GA102 whitepaper, professional rates (as the A40 datasheet)",
                          {"fp32": 256, "tf32": 512, "fp16": 1024, "bf16": 1024, "int8": 2048})
ADA_GEFORCE = Architecture("NVIDIA Ada GPU Architecture whitepaper, appendix A",
                           {"fp32": 256, "tf32": 256, "fp16": 512, "bf16": 512, "fp8": 1024,
                            "int8": 2048})
BLACKWELL_GEFORCE = Architecture("NVIDIA RTX Blackwell GPU Architecture whitepaper, appendix A",
                                 {"fp32": 256, "tf32": 256, "fp16": 512, "bf16": 512, "fp8": 1024,
                                  "int8": 2048, "fp4": 4096})


def _from_sms(model: str, names: tuple[str, ...], sms: int, boost_mhz: int,
              arch: Architecture) -> GpuSpec:
    clock = boost_mhz * 1e6
    return GpuSpec(model, names, {p: sms * clock * r for p, r in arch.rates.items()},
                   f"{arch.source}; {sms} SMs at {boost_mhz} MHz boost")


def _datasheet(model: str, names: tuple[str, ...], source: str, **tflops: float) -> GpuSpec:
    return GpuSpec(model, names, {p: v * T for p, v in tflops.items()}, source)


def _geforce(number: str, sms: int, boost_mhz: int, arch: Architecture) -> GpuSpec:
    return _from_sms(f"GeForce RTX {number}", (f"NVIDIA GeForce RTX {number}",), sms, boost_mhz, arch)


# H100 SXM5 and H200 share a datasheet column; so do H100 NVL and H200 NVL.
_H100_SXM = dict(fp32=67, tf32=494.5, fp16=989.5, bf16=989.5, fp8=1979, int8=1979)
_H100_NVL = dict(fp32=60, tf32=417.5, fp16=835.5, bf16=835.5, fp8=1670.5, int8=1670.5)
_A100 = dict(fp32=19.5, tf32=156, fp16=312, bf16=312, int8=624)
_A100_SOURCE = "NVIDIA A100 Tensor Core GPU datasheet (same peaks for PCIe and SXM, 40 and 80 GB)"

SPECS: tuple[GpuSpec, ...] = (
    # Data center, datasheet figures (sparse "*" figures halved).
    _datasheet("Tesla V100 SXM2", ("Tesla V100-SXM2-16GB", "Tesla V100-SXM2-32GB"),
               "NVIDIA Tesla V100 datasheet: 15.7 TFLOPS FP32, 125 TFLOPS tensor", fp32=15.7, fp16=125),
    _datasheet("Tesla V100 PCIe", ("Tesla V100-PCIE-16GB", "Tesla V100-PCIE-32GB"),
               "NVIDIA Tesla V100 datasheet: 14 TFLOPS FP32, 112 TFLOPS tensor", fp32=14, fp16=112),
    _datasheet("Tesla V100S PCIe", ("Tesla V100S-PCIE-32GB",),
               "NVIDIA V100S datasheet: 16.4 TFLOPS FP32, 130 TFLOPS tensor", fp32=16.4, fp16=130),
    _datasheet("Tesla T4", ("Tesla T4",),
               "NVIDIA T4 datasheet: 8.1 FP32, 65 FP16 mixed, 130 INT8 TOPS", fp32=8.1, fp16=65, int8=130),
    _datasheet("A10", ("NVIDIA A10",), "NVIDIA A10 datasheet",
               fp32=31.2, tf32=62.5, fp16=125, bf16=125, int8=250),
    _datasheet("A30", ("NVIDIA A30",), "NVIDIA A30 datasheet",
               fp32=10.3, tf32=82, fp16=165, bf16=165, int8=330),
    _datasheet("A40", ("NVIDIA A40",), "NVIDIA A40 datasheet",
               fp32=37.4, tf32=74.8, fp16=149.7, bf16=149.7, int8=299.3),
    _datasheet("A100 SXM4 40GB", ("NVIDIA A100-SXM4-40GB",), _A100_SOURCE, **_A100),
    _datasheet("A100 SXM4 80GB", ("NVIDIA A100-SXM4-80GB",), _A100_SOURCE, **_A100),
    _datasheet("A100 PCIe 40GB", ("NVIDIA A100-PCIE-40GB", "NVIDIA A100 PCIe 40GB"), _A100_SOURCE, **_A100),
    _datasheet("A100 PCIe 80GB", ("NVIDIA A100 80GB PCIe", "NVIDIA A100-PCIE-80GB"), _A100_SOURCE, **_A100),
    _datasheet("H100 SXM5 80GB", ("NVIDIA H100 80GB HBM3",), "NVIDIA H100 Tensor Core GPU datasheet, "
               "H100 SXM column", **_H100_SXM),
    _datasheet("H100 PCIe", ("NVIDIA H100 PCIe",), "NVIDIA H100 datasheet, H100 PCIe column",
               fp32=51, tf32=378, fp16=756.5, bf16=756.5, fp8=1513, int8=1513),
    _datasheet("H100 NVL", ("NVIDIA H100 NVL",), "NVIDIA H100 datasheet, H100 NVL column (per GPU)",
               **_H100_NVL),
    _datasheet("H200 SXM", ("NVIDIA H200",), "NVIDIA H200 datasheet, H200 SXM column", **_H100_SXM),
    _datasheet("H200 NVL", ("NVIDIA H200 NVL",), "NVIDIA H200 datasheet, H200 NVL column", **_H100_NVL),
    _datasheet("L4", ("NVIDIA L4",), "NVIDIA L4 datasheet",
               fp32=30.3, tf32=60, fp16=121, bf16=121, fp8=242.5, int8=242.5),
    _datasheet("L40", ("NVIDIA L40",), "NVIDIA L40 datasheet",
               fp32=90.5, tf32=90.5, fp16=181.05, bf16=181.05, fp8=362, int8=362),
    _datasheet("L40S", ("NVIDIA L40S",), "NVIDIA L40S datasheet",
               fp32=91.6, tf32=183, fp16=366.5, bf16=366.5, fp8=733, int8=733),
    # Workstation Ampere (GA102/GA104 with full-rate FP32 accumulate).
    _from_sms("RTX A4000", ("NVIDIA RTX A4000",), 48, 1560, AMPERE_PRO),
    _from_sms("RTX A5000", ("NVIDIA RTX A5000",), 64, 1695, AMPERE_PRO),
    _from_sms("RTX A6000", ("NVIDIA RTX A6000",), 84, 1800, AMPERE_PRO),
    # GeForce RTX 20 (Turing), reference (non Founders Edition) boost clocks.
    _geforce("2060", 30, 1680, TURING_GEFORCE),
    _geforce("2060 SUPER", 34, 1650, TURING_GEFORCE),
    _geforce("2070", 36, 1620, TURING_GEFORCE),
    _geforce("2070 SUPER", 40, 1770, TURING_GEFORCE),
    _geforce("2080", 46, 1710, TURING_GEFORCE),
    _geforce("2080 SUPER", 48, 1815, TURING_GEFORCE),
    _geforce("2080 Ti", 68, 1545, TURING_GEFORCE),
    _from_sms("TITAN RTX", ("NVIDIA TITAN RTX",), 72, 1770, TURING_TITAN),
    # GeForce RTX 30 (Ampere GA10x).
    _geforce("3050", 20, 1777, AMPERE_GEFORCE),
    _geforce("3060", 28, 1777, AMPERE_GEFORCE),
    _geforce("3060 Ti", 38, 1665, AMPERE_GEFORCE),
    _geforce("3070", 46, 1725, AMPERE_GEFORCE),
    _geforce("3070 Ti", 48, 1770, AMPERE_GEFORCE),
    _geforce("3080", 68, 1710, AMPERE_GEFORCE),  # 10 GB; NVML names the 12 GB card alike
    _geforce("3080 Ti", 80, 1665, AMPERE_GEFORCE),
    _geforce("3090", 82, 1695, AMPERE_GEFORCE),
    _geforce("3090 Ti", 84, 1860, AMPERE_GEFORCE),
    # GeForce RTX 40 (Ada).
    _geforce("4060", 24, 2460, ADA_GEFORCE),
    _geforce("4060 Ti", 34, 2535, ADA_GEFORCE),
    _geforce("4070", 46, 2475, ADA_GEFORCE),
    _geforce("4070 SUPER", 56, 2475, ADA_GEFORCE),
    _geforce("4070 Ti", 60, 2610, ADA_GEFORCE),
    _geforce("4070 Ti SUPER", 66, 2610, ADA_GEFORCE),
    _geforce("4080", 76, 2505, ADA_GEFORCE),
    _geforce("4080 SUPER", 80, 2550, ADA_GEFORCE),
    _geforce("4090", 128, 2520, ADA_GEFORCE),
    # GeForce RTX 50 (Blackwell GB20x).
    _geforce("5060", 30, 2497, BLACKWELL_GEFORCE),
    _geforce("5060 Ti", 36, 2572, BLACKWELL_GEFORCE),
    _geforce("5070", 48, 2512, BLACKWELL_GEFORCE),
    _geforce("5070 Ti", 70, 2452, BLACKWELL_GEFORCE),
    _geforce("5080", 84, 2617, BLACKWELL_GEFORCE),
    _geforce("5090", 170, 2407, BLACKWELL_GEFORCE),
)

_BY_NAME: dict[str, GpuSpec] = {normalize_name(n): s for s in SPECS for n in s.nvml_names}


def spec_for(nvml_name: str) -> GpuSpec | None:
    return _BY_NAME.get(normalize_name(nvml_name))


def theoretical_flops(nvml_name: str) -> Mapping[str, float]:
    """Precision -> dense peak ops/s for the model NVML named; empty when the model is unknown."""
    spec = spec_for(nvml_name)
    return spec.flops if spec else {}


def markdown_table() -> str:
    """The table of docs/gpu-flops.md, in TFLOPS (TOPS for int8)."""
    header = "| Model | NVML name(s) | " + " | ".join(PRECISIONS) + " | Source |"
    lines = [header, "|" + "---|" * (len(PRECISIONS) + 3)]
    for spec in SPECS:
        cells = [f"{spec.flops[p] / T:.1f}" if p in spec.flops else "-" for p in PRECISIONS]
        names = ", ".join(f"`{n}`" for n in spec.nvml_names)
        lines.append(f"| {spec.model} | {names} | " + " | ".join(cells) + f" | {spec.source} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
