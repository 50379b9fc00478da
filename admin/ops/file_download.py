"""Download one weights file over https into a model folder, verified, never left half-written.

The body streams into a hidden temporary file beside the target (`.<name>.partial-<random>`,
which the model scans skip), hashed as it arrives; only a complete, verified file is renamed
to its final name (an atomic rename on one filesystem). Every refusal raises ModelOpError
with a message for the user, and leaves nothing behind:
- a URL that is not https with a host, or an answer other than 200; a redirect is followed
  only to another https URL (never down to plain http, where the bytes could be changed);
- a body larger than the free space of the target's filesystem (from Content-Length before
  the first byte is written, and again as bytes arrive when the length is not announced);
- a stream that ends before Content-Length bytes (an interrupted download);
- a checksum that does not match: sha256 (64 hex digits) or md5 (32, as Keras and fastai
  publish theirs), and torch hub's rule for names like `resnet18-f37072fd.pth`: the sha256
  must start with the hex digits after the last '-' (torch.hub.download_url_to_file).
"""
from __future__ import annotations

import errno
import fcntl
import glob
import hashlib
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urljoin, urlsplit

from common import http_client

from admin.ops.model_errors import ModelOpError

CHUNK_BYTES = 1 << 20
# Like git's http.lowSpeedLimit/Time and curl's --speed-limit/--speed-time: a download that
# stays under LOW_SPEED bytes/s for LOW_SPEED_SECONDS is given up (a big file may take hours,
# so no total deadline; a server trickling a byte now and then must not hold a worker forever).
LOW_SPEED = (1024, 60.0)
TIMEOUT = (10.0, 60.0)  # connect, then each wait for data
# torch.hub's HASH_REGEX: the hex digits between the last '-' and the first '.' after it.
TORCH_HASH_PREFIX = re.compile(r"-([a-f0-9]+)\.")
_HEX = re.compile(r"^[a-f0-9]+$")

DiskFree = Callable[[Path], int]
Report = Callable[..., None]


@dataclass(frozen=True)
class Checksum:
    algorithm: str  # "sha256" or "md5"
    hexdigest: str

    @classmethod
    def parse(cls, text: str | None) -> "Checksum | None":
        """'', a bare hex digest (64 -> sha256, 32 -> md5) or 'sha256:<hex>' / 'md5:<hex>'."""
        text = (text or "").strip().lower()
        if not text:
            return None
        algorithm, _, digest = text.rpartition(":")
        algorithm = algorithm or {64: "sha256", 32: "md5"}.get(len(digest), "")
        expected_len = {"sha256": 64, "md5": 32}.get(algorithm)
        if expected_len is None or len(digest) != expected_len or not _HEX.match(digest):
            raise ModelOpError("a checksum is a sha256 (64 hex digits) or md5 (32 hex digits) digest, "
                               "optionally written sha256:<hex> or md5:<hex>")
        return cls(algorithm, digest)


def check_https_url(url: str) -> str:
    """The URL, stripped; ModelOpError unless https with a host and without credentials."""
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ModelOpError("the URL must start with https:// and name a host")
    if parts.username or parts.password:
        raise ModelOpError("the URL must not carry a user name or password")
    return url


def file_name_from_url(url: str) -> str:
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if not name:
        raise ModelOpError("the URL does not end with a file name")
    return name


def torch_hash_prefix(name: str) -> str | None:
    match = TORCH_HASH_PREFIX.search(name)
    return match.group(1) if match else None


def download_file(url: str, target: Path, report: Report, free_fn: DiskFree, *,
                  checksum: Checksum | None = None, hash_prefix: str | None = None,
                  timeout=TIMEOUT, low_speed: tuple[int, float] = LOW_SPEED) -> int:
    """Stream `url` to `target`; returns the bytes written. Raises ModelOpError, leaving no file.

    Each download holds an flock on its partial file while it runs: the partial files of a
    download whose process died (kill -9, power loss) hold none and are removed by the next
    download of the same name; a running one's are left alone. The finished file is linked
    into place, never over a file of that name that appeared meanwhile (another download of
    it, or one the user put there): that one is kept and this download refused.
    """
    if target.exists():
        raise ModelOpError(f"{target} already exists: delete it first to download it again")
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_partials(target)
    partial = target.with_name(f"{_partial_prefix(target)}{secrets.token_hex(4)}")
    try:
        with open(partial, "xb") as out:
            fcntl.flock(out, fcntl.LOCK_EX)  # ours alone: new, and its name is random
            written, digests = _stream(url, out, partial.parent, report, free_fn, timeout, low_speed)
            _verify(digests, checksum, hash_prefix)
            _link_into_place(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return written


def _partial_prefix(target: Path) -> str:
    return f".{target.name}.partial-"


def _remove_dead_partials(target: Path) -> None:
    """Remove the partial files of earlier downloads of `target` that no live process holds."""
    for stale in target.parent.glob(f"{glob.escape(_partial_prefix(target))}*"):
        try:
            with open(stale, "rb") as held:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                stale.unlink(missing_ok=True)
        except OSError:  # BlockingIOError: a running download's; or already gone
            continue


def _link_into_place(partial: Path, target: Path) -> None:
    try:
        os.link(partial, target)  # unlike a rename, fails when target exists
    except FileExistsError:
        raise ModelOpError(f"{target} appeared while this download ran (another download of it, or "
                           "copied there): it is kept as it is and this download was removed") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise ModelOpError(f"cannot write {target}: {exc.strerror or exc}") from None
        if target.exists():  # a filesystem without hard links: checked, then renamed
            raise ModelOpError(f"{target} appeared while this download ran: it is kept as it is "
                               "and this download was removed") from None
        os.replace(partial, target)


def _stream(url: str, out, folder: Path, report: Report, free_fn: DiskFree, timeout,
            low_speed: tuple[int, float] = LOW_SPEED):
    digests = {"sha256": hashlib.sha256(), "md5": hashlib.md5(usedforsecurity=False)}
    response = _get_following_https(url, timeout)
    with response:
        if response.status_code != 200:
            raise ModelOpError(f"download failed: the server answered HTTP {response.status_code} "
                               f"{response.reason}")
        total = _content_length(response)
        free = free_fn(folder)
        if total is not None and total > free:
            raise ModelOpError(f"not enough disk space: the file is {total} bytes but only {free} bytes "
                               f"are free on the filesystem of {folder}; nothing was downloaded")
        written = 0
        speed_floor, speed_window = low_speed
        window_start, window_bytes = time.monotonic(), 0
        try:
            for chunk in response.iter_content(CHUNK_BYTES):
                written += len(chunk)
                now = time.monotonic()
                if now - window_start >= speed_window:
                    if written - window_bytes < speed_floor * (now - window_start):
                        raise ModelOpError(f"download too slow: under {speed_floor} bytes/s for "
                                           f"{speed_window:g} s ({written} bytes so far); the partial "
                                           "file was removed")
                    window_start, window_bytes = now, written
                if total is None and written > free:
                    raise ModelOpError(f"not enough disk space: more than {free} bytes and still "
                                       f"coming; the partial file was removed")
                out.write(chunk)
                for digest in digests.values():
                    digest.update(chunk)
                report(None, bytes_done=written, bytes_total=total, message="downloading")
            out.flush()
        except http_client.RequestException as exc:
            raise ModelOpError(f"download interrupted after {written} bytes: {exc}; "
                               "the partial file was removed") from None
        except OSError as exc:
            raise ModelOpError(f"cannot write {folder}: {exc.strerror or exc}") from None
    if total is not None and written != total:
        raise ModelOpError(f"download interrupted: got {written} of {total} bytes; "
                           "the partial file was removed")
    return written, digests


def _get_following_https(url: str, timeout):
    """The streamed answer for `url`, redirects followed while they stay https (ModelOpError)."""
    for _ in range(http_client.MAX_REDIRECTS + 1):
        try:
            response = http_client.get(url, timeout=timeout, stream=True, allow_redirects=False)
        except http_client.RequestException as exc:
            raise ModelOpError(f"download failed: {exc}") from None
        location = response.headers.get("Location")
        if response.status_code not in http_client.REDIRECT_CODES or not location:
            return response
        response.close()
        target = urljoin(url, location)
        try:
            url = check_https_url(target)
        except ModelOpError:
            parts = urlsplit(target)  # shown without its query string or user:password
            raise ModelOpError(f"download refused: the server redirected to a URL that is not https "
                               f"with a host and no password ({parts.scheme}://{parts.hostname or ''}"
                               f"{parts.path[:120]}); nothing was downloaded") from None
    raise ModelOpError(f"download failed: more than {http_client.MAX_REDIRECTS} redirects")


def _content_length(response) -> int | None:
    try:
        value = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def _verify(digests: dict, checksum: Checksum | None, hash_prefix: str | None) -> None:
    if checksum is not None:
        got = digests[checksum.algorithm].hexdigest()
        if got != checksum.hexdigest:
            raise ModelOpError(f"checksum mismatch: expected {checksum.algorithm} {checksum.hexdigest}, "
                               f"got {got}; the file was removed")
    if hash_prefix is not None:
        got = digests["sha256"].hexdigest()
        if not got.startswith(hash_prefix):
            raise ModelOpError(f"checksum mismatch: the file name promises a sha256 starting with "
                               f"{hash_prefix}, got {got[:len(hash_prefix)]}; the file was removed")
