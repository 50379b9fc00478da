"""Unpack a downloaded model archive (fastai's .tgz model zoo) safely and all at once.

Members are unpacked into a hidden sibling of the destination and renamed into place only
when every member is out, so a model folder is never seen half-unpacked. tarfile's "data"
filter (Python 3.12, backported to 3.10.12 and 3.11.4) refuses absolute paths, '..', links
leaving the folder and device files; on an older Python the same checks run here.
"""
from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path
from typing import Callable

from admin.ops.model_errors import ModelOpError

ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar")


def is_archive(name: str) -> bool:
    return name.endswith(ARCHIVE_SUFFIXES)


def archive_stem(name: str) -> str:
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _check_members(archive: tarfile.TarFile, dest: Path) -> None:
    root = dest.resolve()
    for member in archive.getmembers():
        path = (root / member.name).resolve()
        if member.name.startswith("/") or (path != root and root not in path.parents):
            raise ModelOpError(f"the archive tries to write outside its folder ({member.name!r})")
        if not (member.isfile() or member.isdir()):
            raise ModelOpError(f"the archive holds a link or special file ({member.name!r}): refused")


def _check_space(archive: tarfile.TarFile, dest: Path, free_fn: Callable[[Path], int]) -> None:
    needed = sum(member.size for member in archive.getmembers() if member.isfile())
    free = free_fn(dest.parent)
    if needed > free:
        raise ModelOpError(f"not enough disk space to unpack {Path(archive.name or '').name}: its files hold "
                           f"{needed} bytes but only {free} bytes are free on the filesystem of "
                           f"{dest.parent}; nothing was unpacked")


def unpack(archive_path: Path, dest: Path, free_fn: Callable[[Path], int] | None = None) -> int:
    """Unpack into `dest` (which must not exist); returns the number of files. ModelOpError if not.

    With `free_fn` (bytes free on a path's filesystem), the members' total size is checked
    against it before anything is written: a small archive of zeros that would unpack to more
    than the disk holds is refused instead of filling the disk the whole machine uses.
    """
    if dest.exists():
        raise ModelOpError(f"{dest} already exists: delete it first to unpack the archive again")
    staging = dest.with_name(f".{dest.name}.unpacking")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(archive_path) as archive:
            if free_fn is not None:
                _check_space(archive, dest, free_fn)
            if hasattr(tarfile, "data_filter"):
                archive.extractall(staging, filter="data")
            else:  # pragma: no cover - Pythons before the filter backport
                _check_members(archive, staging)
                archive.extractall(staging)
        count = sum(len(files) for _, _, files in os.walk(staging))
        os.replace(staging, dest)
        return count
    except (tarfile.TarError, OSError) as exc:
        raise ModelOpError(f"cannot unpack {archive_path.name}: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
