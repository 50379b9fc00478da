"""Platform detection in the platform's own order, and the "Ubuntu 24.04" style OS version."""
from __future__ import annotations

import platform as stdlib_platform

import pytest

from common.config import Settings
from exporter.platform import detect_platform, os_version

LINUX_KERNEL = "Linux version 6.8.0-45-generic (buildd@lcy02-amd64-115) (gcc 13.2.0) #45-Ubuntu SMP\n"
WSL_KERNEL = "Linux version 5.15.167.4-microsoft-standard-WSL2 (root@f9c826d3017f) (gcc 11.2.0) #1 SMP\n"


def detect(env, proc_version):
    return detect_platform(Settings.from_env(env), proc_version)


@pytest.fixture
def kernel(tmp_path):
    def write(text: str):
        path = tmp_path / "version"
        path.write_text(text)
        return path
    return write


@pytest.mark.parametrize("env, expected", [
    ({}, "UnknownLinux"),
    ({"MACHINE_ID": "123", "MACHINE_NAME": "box"}, "Jarvislabs.ai"),
    ({"MACHINE_ID": "123"}, "UnknownLinux"),  # both variables are needed
    ({"RUNPOD_POD_ID": "abc"}, "Runpod.io"),
    ({"VAST_TCP_PORT_22": "40022"}, "Vast.ai"),
    ({"MACHINE_ID": "1", "MACHINE_NAME": "x", "RUNPOD_POD_ID": "abc"}, "Jarvislabs.ai"),
    ({"RUNPOD_POD_ID": "abc", "VAST_TCP_PORT_22": "40022"}, "Runpod.io"),
    ({"WORDSLAB_PLATFORM": "Vast.ai", "RUNPOD_POD_ID": "abc"}, "Vast.ai"),
])
def test_detection_order_on_a_linux_kernel(kernel, env, expected):
    assert detect(env, kernel(LINUX_KERNEL)) == expected


def test_microsoft_kernel_is_wsl_before_any_cloud_variable(kernel):
    assert detect({"RUNPOD_POD_ID": "abc"}, kernel(WSL_KERNEL)) == "WindowsSubsystemForLinux"
    assert detect({}, kernel(WSL_KERNEL.upper())) == "WindowsSubsystemForLinux"


def test_declared_platform_wins_over_the_kernel(kernel):
    assert detect({"WORDSLAB_PLATFORM": "UnknownLinux"}, kernel(WSL_KERNEL)) == "UnknownLinux"


def test_unreadable_proc_version_falls_through_to_variables(tmp_path):
    assert detect({"VAST_TCP_PORT_22": "1"}, tmp_path / "absent") == "Vast.ai"
    assert detect({}, tmp_path) == "UnknownLinux"  # a directory cannot be read as text


def test_os_version_from_os_release(tmp_path):
    ubuntu = tmp_path / "ubuntu"
    ubuntu.write_text('PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\n'
                      'VERSION="24.04.1 LTS (Noble Numbat)"\n# comment=x\nID=ubuntu\n')
    assert os_version(ubuntu) == "Ubuntu 24.04"
    rolling = tmp_path / "rolling"
    rolling.write_text("NAME='Arch Linux'\nPRETTY_NAME='Arch Linux'\nID=arch\n")
    assert os_version(rolling) == "Arch Linux"
    pretty_only = tmp_path / "pretty"
    pretty_only.write_text('PRETTY_NAME="Some Linux 3"\n')
    assert os_version(pretty_only) == "Some Linux 3"


def test_os_version_falls_back_to_usr_lib_then_unknown(tmp_path):
    fallback = tmp_path / "usr-lib-os-release"
    fallback.write_text('NAME="Debian GNU/Linux"\nVERSION_ID="12"\n')
    assert os_version((tmp_path / "missing", fallback)) == "Debian GNU/Linux 12"
    assert os_version((tmp_path / "missing",)) == "unknown"


def test_os_version_of_this_machine_matches_the_standard_library():
    release = stdlib_platform.freedesktop_os_release()
    assert os_version() == f"{release['NAME']} {release.get('VERSION_ID', '')}".strip()
