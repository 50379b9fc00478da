"""requires-python is the real floor: vermin computes the oldest Python the product code runs on."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("common", "exporter", "admin", "wordslab_dashboard")


def _floor() -> tuple[int, int]:
    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert spec.startswith(">="), f"requires-python should be a floor, got {spec!r}"
    major, minor = spec[2:].split(",")[0].strip().split(".")[:2]
    return int(major), int(minor)


def _vermin_minimum(*paths: Path) -> tuple[int, int]:
    """The py3 minimum from vermin's parsable last line ':::!2:3.11:' (or '::: ...:3.0:')."""
    # vermin has no __main__; its console script is `from vermin import main`.
    out = subprocess.run([sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", "--no-tips",
                          "--format", "parsable", *map(str, paths)], capture_output=True, text=True).stdout
    py3 = out.strip().splitlines()[-1].split(":")[4]
    major, minor = py3.split(".")[:2]
    return int(major), int(minor)


def test_requires_python_floor_matches_what_the_code_needs():
    floor = _floor()
    assert floor == (3, 10)  # Ubuntu 22.04's python3; dashboard.sh checks the same
    minimum = _vermin_minimum(*(REPO / p for p in PRODUCT_PACKAGES))
    assert minimum <= floor, f"the code needs Python {minimum}, pyproject declares >={floor}"


def test_vermin_sees_a_311_only_module(tmp_path):
    # The check above can fail: an unconditional tomllib import needs 3.11.
    (tmp_path / "m.py").write_text("import tomllib\n")
    assert _vermin_minimum(tmp_path) == (3, 11)


def _fake_python(path: Path, version: str) -> None:
    # Answers the version question the way python3 does; anything else would be a bug in the check.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)


def _dashboard_sh(tmp_path: Path, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "dashboard.sh"), command, "--help"], capture_output=True,
                          text=True, timeout=60, env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin",
                                                      "WORDSLAB_DASHBOARD_VENV": str(tmp_path / "venv")})


@pytest.mark.parametrize("command", ["up", "test"])
def test_dashboard_sh_stops_on_an_old_python3_naming_both_versions(tmp_path, command):
    _fake_python(tmp_path / "bin" / "python3", "3.9.18")
    proc = _dashboard_sh(tmp_path, command)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"needs Python >= 3.10, found Python 3.9.18 at {tmp_path / 'bin' / 'python3'}" in proc.stderr
    assert not (tmp_path / "venv").exists() and "installing" not in proc.stdout


@pytest.mark.parametrize("command", ["up", "test"])
def test_dashboard_sh_checks_an_existing_venv_too(tmp_path, command):
    # A venv made earlier with an old Python is caught on every run, not only when creating one.
    _fake_python(tmp_path / "bin" / "python3", "3.12.1")
    _fake_python(tmp_path / "venv" / "bin" / "python", "3.9.18")
    proc = _dashboard_sh(tmp_path, command)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "found Python 3.9.18 at " + str(tmp_path / "venv" / "bin" / "python") in proc.stderr
    assert f"remove {tmp_path / 'venv'} to recreate it" in proc.stderr
