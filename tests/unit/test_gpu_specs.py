"""The GPU FLOPS table: datasheet figures, whitepaper-derived rates, name matching, the docs copy."""
from pathlib import Path

import pytest

from exporter import gpu_specs
from exporter.gpu_specs import (ADA_GEFORCE, AMPERE_GEFORCE, AMPERE_PRO, BLACKWELL_GEFORCE, PRECISIONS,
                                SPECS, TURING_GEFORCE, TURING_TITAN, markdown_table, normalize_name,
                                theoretical_flops)

T = 1e12
DOC = Path(__file__).resolve().parents[2] / "docs" / "gpu-flops.md"


def test_h100_sxm_datasheet_figures_dense():
    assert theoretical_flops("NVIDIA H100 80GB HBM3") == {
        "fp32": 67 * T, "tf32": 494.5 * T, "fp16": 989.5 * T, "bf16": 989.5 * T,
        "fp8": 1979 * T, "int8": 1979 * T}


@pytest.mark.parametrize("nvml_name, precision, tflops", [
    ("Tesla T4", "int8", 130),
    ("Tesla V100-SXM2-32GB", "fp16", 125),
    ("NVIDIA A100-SXM4-80GB", "bf16", 312),
    ("NVIDIA A100 80GB PCIe", "tf32", 156),
    ("NVIDIA H100 PCIe", "fp8", 1513),
    ("NVIDIA H100 NVL", "fp16", 835.5),
    ("NVIDIA H200", "bf16", 989.5),
    ("NVIDIA L4", "fp8", 242.5),
    ("NVIDIA L40S", "fp16", 366.5),
    ("NVIDIA A10", "fp32", 31.2),
    ("NVIDIA A40", "int8", 299.3),
])
def test_data_center_figures(nvml_name, precision, tflops):
    assert theoretical_flops(nvml_name)[precision] == pytest.approx(tflops * T)


# Figures printed in the architecture whitepapers / datasheets, which the per-SM rates
# times SMs times boost clock must reproduce.
@pytest.mark.parametrize("nvml_name, published", [
    ("NVIDIA GeForce RTX 2080 Ti", {"fp32": 13.4, "fp16": 53.8, "int8": 215.2}),
    ("NVIDIA TITAN RTX", {"fp32": 16.3, "fp16": 130.5, "int8": 261}),
    ("NVIDIA GeForce RTX 3090", {"fp32": 35.6, "tf32": 35.6, "fp16": 71, "bf16": 71, "int8": 284}),
    ("NVIDIA GeForce RTX 3080", {"fp32": 29.8, "fp16": 59.5, "int8": 238}),
    ("NVIDIA GeForce RTX 4090", {"fp32": 82.6, "tf32": 82.6, "fp16": 165.2, "fp8": 330.3, "int8": 660.6}),
    ("NVIDIA GeForce RTX 4080", {"fp32": 48.7, "fp16": 97.5, "fp8": 194.9}),
    ("NVIDIA GeForce RTX 5090", {"fp32": 104.8, "fp4": 3352 / 2}),  # 3352 "AI TOPS" = sparse fp4
    ("NVIDIA GeForce RTX 5080", {"fp32": 56.3, "fp4": 1801 / 2}),
    ("NVIDIA RTX A6000", {"fp32": 38.7, "fp16": 309.7 / 2}),  # datasheet: 309.7 TF tensor, sparse
])
def test_derived_figures_match_published_ones(nvml_name, published):
    flops = theoretical_flops(nvml_name)
    for precision, tflops in published.items():
        assert flops[precision] == pytest.approx(tflops * T, rel=0.004), precision


def test_pro_ampere_rates_reproduce_the_a40_datasheet():
    a40 = theoretical_flops("NVIDIA A40")
    derived = gpu_specs._from_sms("A40", ("NVIDIA A40",), 84, 1740, AMPERE_PRO).flops
    for precision, value in derived.items():
        assert value == pytest.approx(a40[precision], rel=0.002), precision


@pytest.mark.parametrize("nvml_name, model", [
    ("NVIDIA GeForce RTX 2080 Ti", "GeForce RTX 2080 Ti"), ("GeForce RTX 2080 Ti", "GeForce RTX 2080 Ti"),
    ("nvidia geforce rtx 2080 ti", "GeForce RTX 2080 Ti"), ("NVIDIA  GeForce RTX 2080 Ti ", "GeForce RTX 2080 Ti"),
    ("Tesla T4", "Tesla T4"), ("NVIDIA T4", "Tesla T4"),
])
def test_name_matching_ignores_case_spacing_and_vendor_prefix(nvml_name, model):
    spec = gpu_specs.spec_for(nvml_name)
    assert spec is not None and spec.model == model
    assert theoretical_flops(nvml_name) == spec.flops


@pytest.mark.parametrize("nvml_name", [
    "NVIDIA GeForce RTX 4070 Laptop GPU", "NVIDIA Imaginary X1", "", "NVIDIA H100",
    "NVIDIA GeForce RTX 409",
])
def test_unknown_models_have_no_figures(nvml_name):
    assert theoretical_flops(nvml_name) == {}


def test_required_models_are_covered():
    required = ["NVIDIA GeForce RTX 2060", "NVIDIA GeForce RTX 2080 Ti", "NVIDIA GeForce RTX 3060",
                "NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4060", "NVIDIA GeForce RTX 4090",
                "NVIDIA GeForce RTX 5070", "NVIDIA GeForce RTX 5090", "NVIDIA A10", "NVIDIA A40",
                "NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-80GB", "NVIDIA A100-PCIE-40GB",
                "NVIDIA A100 80GB PCIe", "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100 NVL",
                "NVIDIA H200", "NVIDIA L4", "NVIDIA L40S", "Tesla T4", "Tesla V100-SXM2-16GB",
                "Tesla V100-PCIE-32GB"]
    assert [name for name in required if not theoretical_flops(name)] == []


def test_table_is_consistent():
    names = [normalize_name(n) for spec in SPECS for n in spec.nvml_names]
    assert len(names) == len(set(names)), "an NVML name maps to two models"
    for spec in SPECS:
        assert set(spec.flops) <= set(PRECISIONS), spec.model
        assert spec.source and "fp32" in spec.flops, spec.model
        # Tensor paths are never slower than the CUDA cores, lower precision never slower.
        assert spec.flops.get("fp16", spec.flops["fp32"]) >= spec.flops["fp32"], spec.model
        if "fp8" in spec.flops:
            assert spec.flops["fp8"] >= spec.flops["fp16"], spec.model
    for arch in (TURING_GEFORCE, TURING_TITAN, AMPERE_GEFORCE, AMPERE_PRO, ADA_GEFORCE, BLACKWELL_GEFORCE):
        assert arch.source and set(arch.rates) <= set(PRECISIONS)


def test_docs_table_is_generated_from_the_code():
    assert markdown_table() in DOC.read_text(), "regenerate with: python -m exporter.gpu_specs"
