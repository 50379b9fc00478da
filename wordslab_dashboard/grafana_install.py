"""Grafana OSS without root: the official standalone tarball, pinned, verified, unpacked once.

Cloud GPU containers have no Docker and often no systemd or root, so `up` fetches Grafana's
standalone Linux tarball for the machine's architecture into the cache directory, checks its
sha256 against the value pinned here before anything is unpacked, and unpacks it (members that
would land outside the target are refused) into `<cache>/grafana-<version>-linux-<arch>/`.
Later starts find it there and touch no network.

Pinned release: Grafana OSS 12.4.2. Checksums as listed for these exact files by the Arch
Linux AUR package grafana-bin (PKGBUILD 12.4.2-1, whose makepkg verifies them on every build).
Grafana publishes its own value beside each file as `<file>.sha256`; no copy of those was at hand
when they were pinned, so compare once where the network reaches dl.grafana.com. A wrong value
makes `up` refuse the download and say so; it never runs an unverified tarball.
"""
from __future__ import annotations

import fcntl
import hashlib
import http.client
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Mapping

DEFAULT_DOWNLOAD_URL = "https://dl.grafana.com/grafana/release/{version}/"
CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 30.0


class GrafanaInstallError(Exception):
    """The tarball could not be fetched, verified or unpacked; the message says what to do."""


@dataclass(frozen=True)
class GrafanaRelease:
    """One Grafana version: per architecture (amd64, arm64), its tarball's name and sha256."""

    version: str
    files: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def file_for(self, arch: str) -> tuple[str, str]:
        try:
            return self.files[arch]
        except KeyError:
            raise GrafanaInstallError(
                f"no Grafana {self.version} build for this machine's architecture ({arch}); "
                f"builds exist for {', '.join(sorted(self.files))}") from None


PINNED = GrafanaRelease("12.4.2", {
    "amd64": ("grafana_12.4.2_23531306697_linux_amd64.tar.gz",
              "f240b200a803bf64592fae645331750c2681df5f07496743d714db12393a591f"),
    "arm64": ("grafana_12.4.2_23531306697_linux_arm64.tar.gz",
              "28f37f0952e923e90aed02c7d71cef7443705a9a37ba5439b76d7f72aeb1a63f"),
})

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def machine_arch() -> str:
    """'amd64' or 'arm64' (Grafana's names) for this machine; other names as uname gives them."""
    machine = platform.machine().lower()
    return _ARCH.get(machine, machine)


@dataclass(frozen=True)
class GrafanaInstall:
    home: Path  # Grafana's homepath: conf/defaults.ini, public/
    binary: Path  # `grafana` (run as `grafana server`) or an older `grafana-server`

    @classmethod
    def unpacked(cls, home: Path) -> "GrafanaInstall":
        return cls(home, home / "bin" / "grafana")

    def argv(self) -> list[str]:
        server = ["server"] if self.binary.name == "grafana" else []
        return [str(self.binary), *server, "--homepath", str(self.home)]


def installed(cache_dir: Path, release: GrafanaRelease = PINNED, arch: str | None = None) -> GrafanaInstall | None:
    home = _install_dir(cache_dir, release, arch or machine_arch())
    return GrafanaInstall.unpacked(home) if (home / "bin" / "grafana").is_file() else None


def ensure_grafana(cache_dir: Path, *, download_url: str | None = None, tarball: Path | None = None,
                   release: GrafanaRelease = PINNED, arch: str | None = None,
                   progress: Callable[[str], None] | None = None) -> GrafanaInstall:
    """The installed Grafana, installing it first when missing.

    `tarball`: a file already on disk (offline machines), else the file is downloaded once from
    `download_url` (default Grafana's site) into `cache_dir`. Either way its sha256 must be the
    pinned one before anything is unpacked. Raises GrafanaInstallError with what to do.
    """
    arch = arch or machine_arch()
    name, sha256 = release.file_for(arch)
    found = installed(cache_dir, release, arch)
    if found:
        return found
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # One install at a time per cache: a second `up` waits, then finds it installed.
        with open(cache_dir / ".grafana-install.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return installed(cache_dir, release, arch) or _install(
                cache_dir, name, sha256, release, arch, download_url, tarball, progress or _print)
    except OSError as exc:  # the cache itself: missing, read-only, a file, full
        raise GrafanaInstallError(
            f"cannot install Grafana into the cache directory {cache_dir}: {exc}; choose a writable "
            f"folder with --cache-dir (or WORDSLAB_DASHBOARD_CACHE_DIR)") from None


def _install(cache_dir: Path, name: str, sha256: str, release: GrafanaRelease, arch: str,
             download_url: str | None, tarball: Path | None,
             progress: Callable[[str], None]) -> GrafanaInstall:
    if tarball is not None:
        if not tarball.is_file():
            raise GrafanaInstallError(f"Grafana tarball {tarball} not found")
        _verify(tarball, sha256, release, arch, origin=str(tarball))
        archive = tarball
    else:
        archive = cache_dir / name
        if archive.is_file():
            try:
                _verify(archive, sha256, release, arch, origin=str(archive))
            except GrafanaInstallError:
                archive.unlink()  # our own cached copy, damaged since: fetch it again
        if not archive.is_file():
            base = (download_url or DEFAULT_DOWNLOAD_URL).format(version=release.version)
            _download(base.rstrip("/") + "/" + name, archive, sha256, release, progress)
    _unpack(archive, _install_dir(cache_dir, release, arch))
    return GrafanaInstall.unpacked(_install_dir(cache_dir, release, arch))


def offline_hint(release: GrafanaRelease = PINNED, arch: str | None = None) -> str:
    """What to do on a machine that cannot download the tarball."""
    name, _ = release.file_for(arch or machine_arch())
    url = DEFAULT_DOWNLOAD_URL.format(version=release.version) + name
    return (f"download {url} on a machine with network, copy it here and run "
            f"`./dashboard.sh up --grafana-tarball PATH` (or set WORDSLAB_DASHBOARD_GRAFANA_TARBALL); "
            f"`--no-grafana` starts the rest without it")


def _install_dir(cache_dir: Path, release: GrafanaRelease, arch: str) -> Path:
    return cache_dir / f"grafana-{release.version}-linux-{arch}"


def _print(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _download(url: str, dest: Path, sha256: str, release: GrafanaRelease,
              progress: Callable[[str], None]) -> None:
    """Download into a .part file (the caller holds the cache lock), renamed only once its sha256
    is right. Network failures raise GrafanaInstallError with the offline hint; the cache's own
    errors (read-only, full) are left as OSError for the caller to name the cache."""
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with open(part, "wb") as out:
            try:
                resp = urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS)
            except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
                raise _unreachable(url, exc, release) from None
            with resp:
                total = int(resp.headers.get("Content-Length") or 0)
                done, shown = 0, -1
                progress(f"downloading Grafana {release.version} from {url}"
                         + (f" ({total / 1e6:.0f} MB)" if total else ""))
                while True:
                    try:
                        chunk = resp.read(CHUNK_BYTES)
                    except (OSError, ValueError, http.client.HTTPException) as exc:
                        raise _unreachable(url, exc, release) from None
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if total and (step := done * 10 // total) != shown:
                        shown = step
                        progress(f"  Grafana download {done * 100 // total} % ({done / 1e6:.0f} MB)")
        if digest.hexdigest() != sha256:
            raise GrafanaInstallError(_mismatch(url, digest.hexdigest(), sha256, release))
        part.replace(dest)
    finally:  # interrupted (Ctrl-C), refused or failed: no partial file stays behind
        if part.exists():
            part.unlink()


def _unreachable(url: str, exc: BaseException, release: GrafanaRelease) -> GrafanaInstallError:
    reason = getattr(exc, "reason", None) or exc
    return GrafanaInstallError(f"cannot download Grafana {release.version} from {url}: {reason}; "
                               + offline_hint(release))


def _verify(path: Path, sha256: str, release: GrafanaRelease, arch: str, *, origin: str) -> None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                digest.update(chunk)
    except OSError as exc:
        raise GrafanaInstallError(f"cannot read the Grafana tarball {origin}: {exc}") from None
    if digest.hexdigest() != sha256:
        other = [a for a, (_, sha) in release.files.items() if sha == digest.hexdigest()]
        if other:  # a good file, for another machine
            raise GrafanaInstallError(
                f"refusing Grafana from {origin}: it is Grafana {release.version}'s {other[0]} tarball and "
                f"this machine is {arch}; use {release.files[arch][0]}. Nothing was unpacked")
        raise GrafanaInstallError(_mismatch(origin, digest.hexdigest(), sha256, release))


def _mismatch(origin: str, got: str, want: str, release: GrafanaRelease) -> str:
    return (f"refusing Grafana from {origin}: sha256 {got} is not the pinned {want} of "
            f"Grafana {release.version}; nothing was unpacked")


def _safe_members(archive: tarfile.TarFile, dest: Path) -> list[tarfile.TarInfo]:
    """Every member, or GrafanaInstallError when one would land outside `dest` or is no plain
    file, directory or link inside it (path traversal, absolute paths, devices)."""
    root = dest.resolve()
    members = []
    for member in archive.getmembers():
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts:
            raise GrafanaInstallError(f"refusing Grafana tarball: member {member.name!r} leaves the target")
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise GrafanaInstallError(f"refusing Grafana tarball: member {member.name!r} is not a file")
        if member.issym() or member.islnk():
            target = (root / path.parent / member.linkname) if member.issym() else (root / member.linkname)
            if not os.path.realpath(target).startswith(str(root) + os.sep):
                raise GrafanaInstallError(
                    f"refusing Grafana tarball: link {member.name!r} points outside the target")
        members.append(member)
    return members


def _unpack(archive_path: Path, dest: Path) -> None:
    """Unpack into a temporary sibling, then move the tarball's top directory to `dest`."""
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".unpack-", ignore_cleanup_errors=True) as tmp:
        try:
            with tarfile.open(archive_path, "r:gz") as archive:
                members = _safe_members(archive, Path(tmp))
                kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                archive.extractall(tmp, members=members, **kwargs)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise GrafanaInstallError(f"cannot unpack Grafana from {archive_path}: {exc}") from None
        tops = [p for p in Path(tmp).iterdir()]
        top = tops[0] if len(tops) == 1 and tops[0].is_dir() else Path(tmp)
        binary = top / "bin" / "grafana"
        if not binary.is_file():
            raise GrafanaInstallError(f"{archive_path} holds no bin/grafana: not a Grafana tarball")
        binary.chmod(binary.stat().st_mode | 0o111)  # the data filter keeps exec bits; be sure
        if dest.exists():
            shutil.rmtree(dest)
        top.rename(dest)
