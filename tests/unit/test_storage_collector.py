"""StorageCollector over temp dirs as the roles, a faked sysfs for partitions, and a faked Windows side."""
from __future__ import annotations

import json
import os
import pwd
import tempfile
import traceback
from pathlib import Path

import psutil
import pytest

from exporter.collectors.storage import StorageCollector
from common.config import Settings
from exporter.storage import map_storage
from tests.fakes.wsl import FakeWindows
from tests.support.env import wordslab_env
from tests.support.metrics import promtool_problems, scrape

GiB = 2**30


def collect(env, **kwargs):
    collector = StorageCollector(Settings.from_env(env), **kwargs)
    collector.layout_source.refresh_now()  # the background thread's job, done inline
    return scrape(collector)


def states(result) -> dict[str, str]:
    return {lbl["role"]: lbl["state"] for lbl, v in result.series("wordslab_storage_path_state") if v == 1}


def test_roles_map_to_disks_with_real_sizes_and_io(vm_env):
    roles = {"root": "/", "home": vm_env["WORDSLAB_HOME"], "workspace": vm_env["WORDSLAB_WORKSPACE"],
             "models": vm_env["WORDSLAB_MODELS"]}
    io_before = psutil.disk_io_counters(perdisk=True)
    result = collect(vm_env)
    io_after = psutil.disk_io_counters(perdisk=True)

    info = {lbl["role"]: lbl for lbl in result.labels("wordslab_storage_path_info")}
    assert {role: lbl["path"] for role, lbl in info.items()} == roles
    assert states(result) == dict.fromkeys(roles, "ok")
    # The three temp dirs share one filesystem, so one disk; root joins it when /tmp is on /.
    assert info["home"]["disk"] == info["workspace"]["disk"] == info["models"]["disk"] != ""
    same_fs_as_root = os.stat(roles["home"]).st_dev == os.stat("/").st_dev
    assert (info["root"]["disk"] == info["home"]["disk"]) == same_fs_as_root
    disks = result.labels("wordslab_disk_size_bytes")
    assert len(disks) == len({lbl["disk"] for lbl in info.values()}) == (1 if same_fs_as_root else 2)

    disk = info["home"]["disk"]
    usage = psutil.disk_usage(roles["home"])
    assert result.value("wordslab_disk_size_bytes", disk=disk) == usage.total
    assert abs(result.value("wordslab_disk_used_bytes", disk=disk) - usage.used) < GiB
    read = result.value("wordslab_disk_read_bytes_total", disk=disk)
    if disk in io_before:  # a block device the kernel counts I/O for
        assert io_before[disk].read_bytes <= read <= io_after[disk].read_bytes
        assert (io_before[disk].write_bytes <= result.value("wordslab_disk_written_bytes_total", disk=disk)
                <= io_after[disk].write_bytes)
    assert "wordslab_virtual_disk_size_bytes" not in result.text  # not WSL
    assert result.value("wordslab_collector_success", collector="storage") == 1
    assert promtool_problems(result.text) == ""


def test_root_role_follows_the_host_root_mount_in_a_container(vm_env, tmp_path):
    host_root = tmp_path / "host-root"
    host_root.mkdir()
    result = collect({**vm_env, "WORDSLAB_DASHBOARD_ROOT_PATH": str(host_root)})
    info = {lbl["role"]: lbl for lbl in result.labels("wordslab_storage_path_info")}
    assert info["root"]["path"] == str(host_root)
    assert info["root"]["disk"] == info["home"]["disk"] != ""  # same temp filesystem
    assert states(result)["root"] == "ok"


def test_unset_missing_and_unreadable_paths_are_reported_not_fatal(vm_env, tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)  # ELOOP: cannot be resolved, even by root
    env = {**vm_env, "WORDSLAB_WORKSPACE": str(tmp_path / "not-there"), "WORDSLAB_MODELS": str(loop)}
    del env["WORDSLAB_HOME"]
    result = collect(env)

    assert states(result) == {"root": "ok", "home": "unset", "workspace": "missing", "models": "unreadable"}
    info = {lbl["role"]: lbl for lbl in result.labels("wordslab_storage_path_info")}
    assert info["home"] == {"role": "home", "path": "", "disk": ""}
    assert info["workspace"] == {"role": "workspace", "path": str(tmp_path / "not-there"), "disk": ""}
    assert info["models"]["disk"] == "" and info["root"]["disk"] != ""
    assert len(result.labels("wordslab_disk_size_bytes")) == 1
    assert result.value("wordslab_collector_success", collector="storage") == 1


def states_as_unprivileged_user(env) -> dict[str, str]:
    """states(collect(env)) as the exporter sees them without root, which reads any directory (and
    CI runs as root): a forked child drops to `nobody` and sends its states back through a pipe."""
    if os.geteuid() != 0:
        return states(collect(env))
    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            with os.fdopen(write_end, "w") as out:
                json.dump(states(collect(env)), out)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as answer:
        sent = answer.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and sent, "the unprivileged collection failed"
    return json.loads(sent)


def test_directory_without_permission_is_unreadable():
    # Under /tmp itself, not pytest's root-only tmp_path, so `nobody` reaches the other roles.
    with tempfile.TemporaryDirectory(dir="/tmp") as root:
        Path(root).chmod(0o755)
        env = wordslab_env(Path(root))
        locked = Path(root) / "locked"
        (locked / "models").mkdir(parents=True)
        locked.chmod(0)
        try:
            seen = states_as_unprivileged_user({**env, "WORDSLAB_MODELS": str(locked / "models")})
        finally:
            locked.chmod(0o755)
    assert seen == {"root": "ok", "home": "ok", "workspace": "ok", "models": "unreadable"}


def test_path_removed_after_the_layout_refresh_does_not_break_the_scrape(vm_env, tmp_path):
    models = tmp_path / "elsewhere"
    models.mkdir()
    collector = StorageCollector(Settings.from_env({**vm_env, "WORDSLAB_MODELS": str(models)}))
    collector.layout_source.refresh_now()
    models.rmdir()
    result = scrape(collector)
    assert result.value("wordslab_collector_success", collector="storage") == 1
    collector.layout_source.refresh_now()
    assert states(scrape(collector))["models"] == "missing"


def test_partition_uses_its_disks_io_counters_when_it_has_none(tmp_path):
    st = os.stat(tmp_path)
    sysfs = tmp_path / "sys"
    partition = sysfs / "devices" / "pci0000:00" / "block" / "vdz" / "vdz1"
    partition.mkdir(parents=True)
    (sysfs / "dev" / "block").mkdir(parents=True)
    (sysfs / "dev" / "block" / f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}").symlink_to(partition)
    roles = {"home": tmp_path, "models": None}

    layout = map_storage(roles, [], {"vdz"}, sysfs / "dev" / "block")
    assert [(d.name, d.io_name) for d in layout.disks] == [("vdz1", "vdz")]
    assert map_storage(roles, [], {"vdz", "vdz1"}, sysfs / "dev" / "block").disks[0].io_name == "vdz1"
    assert map_storage(roles, [], set(), sysfs / "dev" / "block").disks[0].io_name is None


def test_filesystem_without_block_device_is_named_by_its_mount(tmp_path):
    home = tmp_path / "home-dir"
    home.mkdir()
    mounts = [("/", "overlay"), (str(tmp_path), "tmpfs"), (str(tmp_path / "sibling"), "other")]
    layout = map_storage({"home": home}, mounts, {"tmpfs"}, tmp_path / "no-sysfs")
    assert [(d.name, d.io_name) for d in layout.disks] == [("tmpfs", "tmpfs")]
    assert layout.paths[0].disk == "tmpfs"


def test_two_filesystems_of_one_pseudo_device_stay_two_disks(tmp_path):
    # /proc and /sys are distinct filesystems; give both the same mount-table device name.
    layout = map_storage({"a": Path("/proc"), "b": Path("/sys")}, [("/proc", "none"), ("/sys", "none")],
                         set(), tmp_path / "no-sysfs")
    assert [d.name for d in layout.disks] == ["none", "none:/sys"]


# --- WSL: the ext4.vhdx files on a faked Windows side -------------------------------------------

@pytest.fixture
def windows(tmp_path):
    return FakeWindows(tmp_path / "windows")


def wsl_env(vm_env, windows, with_wslpath=True):
    env = {**vm_env, "WORDSLAB_PLATFORM": "WindowsSubsystemForLinux",
           "WORDSLAB_WINDOWS_HOME": r"C:\wordslab\virtual-machines\wordslab-notebooks"}
    if with_wslpath:
        windows.install_wslpath()
        env["PATH"] = f"{windows.bin_dir}:{env['PATH']}"
    # As the platform writes them: the Windows dir of each VM disk in a dot-file of the Linux dir.
    Path(env["WORDSLAB_WORKSPACE"], ".WORDSLAB_WINDOWS_WORKSPACE").write_text(
        "C:\\wordslab\\virtual-machines\\wordslab-workspace\r\n")
    Path(env["WORDSLAB_MODELS"], ".WORDSLAB_WINDOWS_MODELS").write_text("D:\\wordslab-models\n")
    windows.add_vhdx(env["WORDSLAB_WINDOWS_HOME"], 3 * GiB)
    windows.add_vhdx(r"C:\wordslab\virtual-machines\wordslab-workspace", 20 * GiB)
    windows.add_vhdx(r"D:\wordslab-models", 150 * GiB)
    return env


@pytest.mark.parametrize("with_wslpath", [True, False], ids=["wslpath", "mount-root"])
def test_wsl_virtual_disks_and_windows_drives(vm_env, windows, with_wslpath):
    env = wsl_env(vm_env, windows, with_wslpath)
    # Without wslpath on PATH the /mnt/<letter> convention is used, here under the fake mount root.
    result = collect(env, wsl_mount_root=windows.mount_root)

    vhdx = {(lbl["disk"], lbl["file"]): v for lbl, v in result.series("wordslab_virtual_disk_size_bytes")}
    assert vhdx == {
        ("C:", r"C:\wordslab\virtual-machines\wordslab-notebooks\ext4.vhdx"): 3 * GiB,
        ("C:", r"C:\wordslab\virtual-machines\wordslab-workspace\ext4.vhdx"): 20 * GiB,
        ("D:", r"D:\wordslab-models\ext4.vhdx"): 150 * GiB,
    }
    for drive in ("c", "d"):
        usage = psutil.disk_usage(str(windows.mount_root / drive))
        assert result.value("wordslab_disk_size_bytes", disk=drive.upper() + ":") == usage.total
        assert abs(result.value("wordslab_disk_used_bytes", disk=drive.upper() + ":") - usage.used) < GiB
    assert result.value("wordslab_disk_read_bytes_total", disk="C:") is None  # Windows I/O is not visible
    assert {lbl["role"] for lbl, v in result.series("wordslab_virtual_disk_state")
            if lbl["state"] == "ok" and v == 1} == {"home", "workspace", "models"}
    assert states(result) == dict.fromkeys(("root", "home", "workspace", "models"), "ok")
    assert promtool_problems(result.text) == ""


def test_wsl_problems_show_per_role(vm_env, windows, tmp_path):
    env = wsl_env(vm_env, windows)
    env["WORDSLAB_WINDOWS_HOME"] = r"wordslab\relative"  # no drive letter
    Path(env["WORDSLAB_MODELS"], ".WORDSLAB_WINDOWS_MODELS").write_text("E:\\nothing-here\n")
    Path(env["WORDSLAB_WORKSPACE"], ".WORDSLAB_WINDOWS_WORKSPACE").unlink()
    result = collect(env, wsl_mount_root=windows.mount_root)

    current = {lbl["role"]: lbl["state"] for lbl, v in result.series("wordslab_virtual_disk_state") if v == 1}
    assert current == {"home": "invalid", "workspace": "unset", "models": "missing"}
    assert result.series("wordslab_virtual_disk_size_bytes") == []
    assert result.value("wordslab_collector_success", collector="storage") == 1
    assert result.value("wordslab_source_refresh_success", source="storage_layout") == 1
