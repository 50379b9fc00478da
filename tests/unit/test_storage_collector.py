"""StorageCollector over temp dirs as the roles, a faked sysfs for partitions, and a faked Windows side."""
from __future__ import annotations

import json
import math
import os
import pwd
import shutil
import subprocess
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


# --- Disk figures as df shows them ----------------------------------------------------------------

def df(path) -> dict[str, int]:
    """`df -B1 --output=size,used,avail,pcent` of the filesystem holding path, as ints."""
    out = subprocess.run(["df", "-B1", "--output=size,used,avail,pcent", str(path)], capture_output=True,
                         text=True, check=True).stdout.splitlines()[1].split()
    return dict(zip(("size", "used", "avail", "pcent"), (int(v.rstrip("%")) for v in out)))


def df_percent(used: float, available: float) -> int:
    """df's Use%: used / (used + avail), rounded up."""
    return math.ceil(100 * used / (used + available))


def disk_of(result, role: str) -> str:
    (disk,) = [lbl["disk"] for lbl in result.labels("wordslab_storage_path_info") if lbl["role"] == role]
    return disk


@pytest.fixture
def reserved_ext4(tmp_path):
    """A 64 MiB ext4 filesystem with 5 % of its blocks reserved for root, mounted (needs root and
    loop devices), holding 30 MiB of data; yields the mountpoint and its reserved bytes."""
    image, mountpoint = tmp_path / "disk.img", tmp_path / "mnt"
    mountpoint.mkdir()
    with image.open("wb") as fh:
        fh.truncate(64 * 2**20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "5", str(image)], check=True, capture_output=True)
    dumped = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True, check=True).stdout
    fields = dict(line.split(":", 1) for line in dumped.splitlines() if ":" in line)
    reserved = int(fields["Reserved block count"]) * int(fields["Block size"])
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)], capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a loop filesystem here ({mounted.stderr.strip()}); "
                    "test_disk_figures_match_df_on_this_machine compares with df instead")
    try:
        (mountpoint / "data").write_bytes(os.urandom(30 * 2**20))
        os.sync()
        yield mountpoint, reserved
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_disk_with_reserved_blocks_reads_as_df_does(vm_env, reserved_ext4):
    mountpoint, reserved = reserved_ext4
    result = collect({**vm_env, "WORDSLAB_MODELS": str(mountpoint)})
    disk = disk_of(result, "models")
    size, used, available = (result.value(f"wordslab_disk_{name}_bytes", disk=disk)
                             for name in ("size", "used", "available"))
    shown = df(mountpoint)
    assert (size, used, available) == (shown["size"], shown["used"], shown["avail"])
    # The reserved blocks (and ext4's small reserve for delayed allocation) are neither used nor
    # available: full is used / (used + available).
    assert size - used - available >= reserved > 0
    assert df_percent(used, available) == shown["pcent"]
    assert used / size < used / (used + available)


def test_disk_figures_match_df_on_this_machine(vm_env):
    result = collect(vm_env)
    for role, path in (("root", "/"), ("home", vm_env["WORDSLAB_HOME"])):
        disk = disk_of(result, role)
        shown = df(path)  # other processes write meanwhile: equal within 64 MiB
        assert result.value("wordslab_disk_size_bytes", disk=disk) == shown["size"]
        used = result.value("wordslab_disk_used_bytes", disk=disk)
        available = result.value("wordslab_disk_available_bytes", disk=disk)
        assert abs(used - shown["used"]) < 64 * 2**20 and abs(available - shown["avail"]) < 64 * 2**20
        assert abs(df_percent(used, available) - shown["pcent"]) <= 1


# --- WSL: the ext4.vhdx files on a faked Windows side -------------------------------------------

@pytest.fixture
def windows(tmp_path):
    return FakeWindows(tmp_path / "windows")


SIZES = {"home": 3 * GiB, "workspace": 20 * GiB, "models": 150 * GiB}
VM = r"C:\wordslab\virtual-machines\wordslab-notebooks\ext4.vhdx"
WORKSPACE = r"C:\wordslab\virtual-machines\wordslab-workspace\ext4.vhdx"
MODELS = r"C:\wordslab\virtual-machines\wordslab-models\ext4.vhdx"


def wsl_env(vm_env, windows, with_wslpath=True):
    env = {**vm_env, "WORDSLAB_PLATFORM": "WindowsSubsystemForLinux"}
    if with_wslpath:
        windows.install_wslpath()
        env["PATH"] = f"{windows.bin_dir}:{env['PATH']}"
    return env


def virtual_disks(result) -> dict[str, tuple[str, str, str]]:
    """role -> (state, drive, file)."""
    current = {lbl["role"]: lbl["state"] for lbl, v in result.series("wordslab_virtual_disk_state") if v == 1}
    return {lbl["role"]: (current[lbl["role"]], lbl["disk"], lbl["file"])
            for lbl in result.labels("wordslab_virtual_disk_info")}


def vhdx_sizes(result) -> dict[tuple[str, str], float]:
    return {(lbl["disk"], lbl["file"]): v for lbl, v in result.series("wordslab_virtual_disk_size_bytes")}


@pytest.mark.parametrize("with_wslpath", [True, False], ids=["wslpath", "mount-root"])
def test_wsl_installer_default_layout(vm_env, windows, with_wslpath):
    # The installer's default: WORDSLAB_WINDOWS_HOME=C:\wordslab is the installation folder, the VM
    # is imported in C:\wordslab\virtual-machines\wordslab-notebooks, the disks beside it.
    env = {**wsl_env(vm_env, windows, with_wslpath), "WORDSLAB_WINDOWS_HOME": "C:\\wordslab"}
    windows.install_wordslab(env, SIZES)
    # Without wslpath on PATH the /mnt/<letter> convention is used, here under the fake mount root.
    result = collect(env, wsl_mount_root=windows.mount_root)

    assert virtual_disks(result) == {"root": ("ok", "C:", VM), "home": ("ok", "C:", VM),
                                     "workspace": ("ok", "C:", WORKSPACE), "models": ("ok", "C:", MODELS)}
    # / and home share the VM's disk: its size is reported once.
    assert vhdx_sizes(result) == {("C:", VM): 3 * GiB, ("C:", WORKSPACE): 20 * GiB, ("C:", MODELS): 150 * GiB}
    usage = psutil.disk_usage(str(windows.mount_root / "c"))
    assert result.value("wordslab_disk_size_bytes", disk="C:") == usage.total
    assert abs(result.value("wordslab_disk_used_bytes", disk="C:") - usage.used) < GiB
    assert abs(result.value("wordslab_disk_available_bytes", disk="C:") - usage.free) < GiB
    assert result.value("wordslab_disk_read_bytes_total", disk="C:") is None  # Windows I/O is not visible
    assert states(result) == dict.fromkeys(("root", "home", "workspace", "models"), "ok")
    assert promtool_problems(result.text) == ""


def test_wsl_dot_files_alone_find_every_disk(vm_env, windows):
    # Inside the VM the Windows variables are usually not set: the installer's dot files say it all,
    # the home one holding the VM folder (with the doubled backslash its echo leaves).
    env = wsl_env(vm_env, windows)
    windows.install_wordslab(env, SIZES, models=r"D:\wordslab\virtual-machines\wordslab-models")
    assert "\\\\" in Path(env["WORDSLAB_HOME"], ".WORDSLAB_WINDOWS_HOME").read_text()
    result = collect(env, wsl_mount_root=windows.mount_root)

    models = r"D:\wordslab\virtual-machines\wordslab-models\ext4.vhdx"
    assert virtual_disks(result) == {"root": ("ok", "C:", VM), "home": ("ok", "C:", VM),
                                     "workspace": ("ok", "C:", WORKSPACE), "models": ("ok", "D:", models)}
    assert vhdx_sizes(result)[("D:", models)] == 150 * GiB
    for drive in ("C:", "D:"):
        usage = psutil.disk_usage(str(windows.mount_root / drive[0].lower()))
        assert result.value("wordslab_disk_size_bytes", disk=drive) == usage.total


def test_wsl_disks_default_beside_the_vm_without_their_dot_files(vm_env, windows):
    env = {**wsl_env(vm_env, windows), "WORDSLAB_WINDOWS_HOME": "C:\\wordslab"}
    windows.install_wordslab(env, SIZES)
    Path(env["WORDSLAB_WORKSPACE"], ".WORDSLAB_WINDOWS_WORKSPACE").unlink()
    Path(env["WORDSLAB_MODELS"], ".WORDSLAB_WINDOWS_MODELS").unlink()
    result = collect(env, wsl_mount_root=windows.mount_root)
    assert virtual_disks(result)["workspace"] == ("ok", "C:", WORKSPACE)
    assert virtual_disks(result)["models"] == ("ok", "C:", MODELS)


def test_wsl_vm_installed_under_another_name(vm_env, windows):
    # install-wordslab-notebooks.bat --name mylab: WSL names the distro in WSL_DISTRO_NAME; the home
    # dot file still says wordslab-notebooks.
    env = {**wsl_env(vm_env, windows), "WSL_DISTRO_NAME": "mylab"}
    windows.install_wordslab(env, SIZES, windows_home="E:\\labs", distro="mylab")
    result = collect(env, wsl_mount_root=windows.mount_root)
    vm = r"E:\labs\virtual-machines\mylab\ext4.vhdx"
    assert virtual_disks(result)["home"] == virtual_disks(result)["root"] == ("ok", "E:", vm)
    assert vhdx_sizes(result)[("E:", vm)] == 3 * GiB
    # The variable says the installation folder: the VM folder comes from the distro's name too.
    result = collect({**env, "WORDSLAB_WINDOWS_HOME": "E:\\labs"}, wsl_mount_root=windows.mount_root)
    assert virtual_disks(result)["home"] == ("ok", "E:", vm)


def test_wsl_variables_pointing_at_the_disk_folders_keep_working(vm_env, windows):
    # Set by hand to the folder holding each ext4.vhdx, with forward slashes and a lower-case drive.
    env = {**wsl_env(vm_env, windows), "WORDSLAB_WINDOWS_HOME": "c:/wordslab/virtual-machines/wordslab-notebooks/",
           "WORDSLAB_WINDOWS_MODELS": "d:/models-disk"}
    windows.add_vhdx(r"C:\wordslab\virtual-machines\wordslab-notebooks", 3 * GiB)
    windows.add_vhdx(r"D:\models-disk", 5 * GiB)
    result = collect(env, wsl_mount_root=windows.mount_root)
    assert virtual_disks(result)["home"] == ("ok", "C:", r"c:\wordslab\virtual-machines\wordslab-notebooks\ext4.vhdx")
    assert virtual_disks(result)["models"] == ("ok", "D:", r"d:\models-disk\ext4.vhdx")


def test_wsl_problems_show_per_role(vm_env, windows):
    env = wsl_env(vm_env, windows)
    windows.install_wordslab(env, SIZES)
    env["WORDSLAB_WINDOWS_HOME"] = r"wordslab\relative"  # no drive letter, and the dot file is gone
    Path(env["WORDSLAB_HOME"], ".WORDSLAB_WINDOWS_HOME").unlink()
    Path(env["WORDSLAB_WORKSPACE"], ".WORDSLAB_WINDOWS_WORKSPACE").unlink()
    # A drive the VM does not see (wordslab's wsl.conf turns automount off) and one without the file.
    Path(env["WORDSLAB_MODELS"], ".WORDSLAB_WINDOWS_MODELS").write_text("E:\\nothing-here\n")
    result = collect(env, wsl_mount_root=windows.mount_root)
    disks = virtual_disks(result)
    assert {role: state for role, (state, _, _) in disks.items()} == {
        "root": "invalid", "home": "invalid", "workspace": "unset", "models": "unreachable"}
    assert disks["models"] == ("unreachable", "E:", r"E:\nothing-here\ext4.vhdx")
    assert disks["workspace"] == ("unset", "", "")
    assert vhdx_sizes(result) == {}
    assert result.value("wordslab_collector_success", collector="storage") == 1
    assert result.value("wordslab_source_refresh_success", source="storage_layout") == 1

    (windows.mount_root / "e").mkdir()
    assert virtual_disks(collect(env, wsl_mount_root=windows.mount_root))["models"] == (
        "missing", "E:", r"E:\nothing-here\ext4.vhdx")


@pytest.mark.parametrize("content", [
    "\ufeffC:\\wordslab\\virtual-machines\\wordslab-notebooks\r\n".encode(),  # Notepad's UTF-8 with BOM
    "C:\\wordslab\\virtual-machines\\wordslab-notebooks\r\n".encode("utf-16"),  # PowerShell's Out-File
    b"'C:\\wordslab\\virtual-machines\\wordslab-notebooks' \r\n",  # cmd's echo keeps the quotes
    b"\"C:\\\\wordslab\\\\virtual-machines\\\\wordslab-notebooks\\\\\"   \n",
], ids=["utf8-bom", "utf16", "single-quotes", "double-quotes-doubled-backslashes"])
def test_wsl_home_dot_file_rewritten_on_windows_still_finds_the_vm(vm_env, windows, content):
    env = wsl_env(vm_env, windows)
    windows.install_wordslab(env, SIZES)
    Path(env["WORDSLAB_HOME"], ".WORDSLAB_WINDOWS_HOME").write_bytes(content)
    Path(env["WORDSLAB_WORKSPACE"], ".WORDSLAB_WINDOWS_WORKSPACE").unlink()  # found beside the VM
    disks = virtual_disks(collect(env, wsl_mount_root=windows.mount_root))
    assert disks["home"] == disks["root"] == ("ok", "C:", VM)
    assert disks["workspace"] == ("ok", "C:", WORKSPACE)


@pytest.mark.parametrize("value", ["\ufeffC:\\wordslab", "'C:\\wordslab'", '"C:\\wordslab\\"', "  C:/wordslab/ "])
def test_wsl_home_variable_with_quotes_or_bom_finds_the_vm(vm_env, windows, value):
    env = {**wsl_env(vm_env, windows), "WORDSLAB_WINDOWS_HOME": value}
    windows.install_wordslab(env, SIZES)
    Path(env["WORDSLAB_HOME"], ".WORDSLAB_WINDOWS_HOME").unlink()
    disks = virtual_disks(collect(env, wsl_mount_root=windows.mount_root))
    assert disks["home"] == ("ok", "C:", VM) and disks["models"] == ("ok", "C:", MODELS)
