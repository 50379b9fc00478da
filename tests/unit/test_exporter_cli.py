"""wordslab-exporter's command line: --version is the program's, --wordslab-version the VM's."""
from __future__ import annotations

import subprocess
import sys

from exporter.version import program_version
from exporter.cli import parse_args, settings_from_args


def test_version_prints_the_program_version_and_exits():
    done = subprocess.run([sys.executable, "-m", "exporter", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wordslab-exporter {program_version()}"
    assert program_version() not in ("", "unknown")  # the venv has the project installed


def test_wordslab_version_flag_overrides_the_variable():
    args = parse_args(["--wordslab-version", "2026-05"])
    assert settings_from_args(args, {"WORDSLAB_VERSION": "2025-01"}).version == "2026-05"
    assert settings_from_args(parse_args([]), {"WORDSLAB_VERSION": "2025-01"}).version == "2025-01"


def test_landing_page_names_the_installed_version_as_version_does(monkeypatch):
    # One source for the program's version (the installed distribution), not a second literal.
    from exporter import version
    from exporter.server import landing_page
    monkeypatch.setattr(version.metadata, "version", lambda name: "9.8.7" if name == version.DISTRIBUTION else "")
    assert b"<h1>wordslab-dashboard exporter 9.8.7</h1>" in landing_page(["system"])
