"""Grafana's tarball install through the real download, checksum and unpack code, against a
loopback server standing in for Grafana's download site."""
import functools
import hashlib
import io
import os
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from tests.fakes import grafana_tarball
from tests.fakes.loopback import serving
from tests.support.env import free_port
from wordslab_dashboard.grafana_install import (PINNED, GrafanaInstallError, GrafanaRelease, ensure_grafana,
                                                installed, offline_hint)

NAME = "grafana_12.4.2_1_linux_amd64.tar.gz"


class _Files(SimpleHTTPRequestHandler):
    hits: list[str] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).hits.append(self.path)
        super().do_GET()


@pytest.fixture
def site(tmp_path):
    """A loopback download site serving files from a folder; yields (url, folder, hits)."""
    folder = tmp_path / "site"
    folder.mkdir()
    handler = type("Files", (_Files,), {"hits": []})
    with serving(functools.partial(handler, directory=str(folder))) as url:
        yield url + "/", folder, handler.hits


def _nothing_unpacked(cache: Path) -> None:
    leftovers = sorted(p.name for p in cache.iterdir()) if cache.exists() else []
    assert not [n for n in leftovers if n.startswith("grafana-") or n.endswith(".part")
                or n.startswith(".unpack")], leftovers


def test_good_checksum_downloads_once_with_progress_and_unpacks(site, tmp_path):
    url, folder, hits = site
    sha = grafana_tarball.build(folder / NAME)
    release = grafana_tarball.release_for(NAME, sha)
    lines = []
    cache = tmp_path / "cache"
    got = ensure_grafana(cache, download_url=url, release=release, arch="amd64", progress=lines.append)
    assert got.home == cache / "grafana-12.4.2-linux-amd64"
    assert got.binary.is_file() and os.access(got.binary, os.X_OK)
    assert (got.home / "conf" / "defaults.ini").is_file()
    assert got.argv() == [str(got.binary), "server", "--homepath", str(got.home)]
    assert (cache / NAME).is_file()  # the verified download is kept in the cache
    assert lines[0].startswith(f"downloading Grafana 12.4.2 from {url}{NAME}")
    assert lines[-1].startswith("  Grafana download 100 %")
    assert hits == [f"/{NAME}"]
    again = ensure_grafana(cache, download_url=url, release=release, arch="amd64", progress=lines.append)
    assert again == got and hits == [f"/{NAME}"]  # installed: no second download
    assert installed(cache, release, "amd64") == got


def test_bad_checksum_is_refused_and_nothing_is_unpacked(site, tmp_path):
    url, folder, _ = site
    grafana_tarball.build(folder / NAME)
    release = grafana_tarball.release_for(NAME, "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(GrafanaInstallError, match="sha256 .* is not the pinned 0{64}.*nothing was unpacked"):
        ensure_grafana(cache, download_url=url, release=release, arch="amd64", progress=lambda _: None)
    _nothing_unpacked(cache)
    assert not (cache / NAME).exists()


def test_tarball_on_disk_installs_offline_and_a_wrong_one_is_refused(tmp_path):
    tarball = tmp_path / "grafana.tar.gz"
    sha = grafana_tarball.build(tarball)
    closed = f"http://127.0.0.1:{free_port()}/"  # any download attempt would fail
    wrong = grafana_tarball.release_for(NAME, "f" * 64)
    with pytest.raises(GrafanaInstallError, match="refusing Grafana from .*grafana.tar.gz"):
        ensure_grafana(tmp_path / "cache", download_url=closed, tarball=tarball, release=wrong, arch="amd64")
    _nothing_unpacked(tmp_path / "cache")
    got = ensure_grafana(tmp_path / "cache", download_url=closed, tarball=tarball,
                         release=grafana_tarball.release_for(NAME, sha), arch="arm64")
    assert got.binary.is_file() and got.home.name == "grafana-12.4.2-linux-arm64"
    with pytest.raises(GrafanaInstallError, match="not found"):
        ensure_grafana(tmp_path / "other", tarball=tmp_path / "missing.tar.gz", release=wrong, arch="amd64")


def test_unreachable_site_says_what_to_do(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(GrafanaInstallError) as err:
        ensure_grafana(tmp_path / "cache", download_url=closed, arch="amd64", progress=lambda _: None)
    message = str(err.value)
    assert f"cannot download Grafana {PINNED.version} from {closed}" in message
    assert "--grafana-tarball PATH" in message and "--no-grafana" in message
    assert PINNED.files["amd64"][0] in message  # which file to fetch elsewhere
    _nothing_unpacked(tmp_path / "cache")


@pytest.mark.parametrize("member", ["../escaped", "grafana-12.4.2/../../escaped", "/tmp/escaped-abs"])
def test_members_leaving_the_target_are_refused(tmp_path, member):
    tarball = tmp_path / "evil.tar.gz"
    sha = grafana_tarball.build(tarball, extra={member: b"owned"})
    cache = tmp_path / "cache"
    with pytest.raises(GrafanaInstallError, match="leaves the target"):
        ensure_grafana(cache, tarball=tarball, release=grafana_tarball.release_for(NAME, sha), arch="amd64")
    _nothing_unpacked(cache)
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/escaped-abs").exists()


def test_a_link_out_of_the_target_is_refused(tmp_path):
    tarball = tmp_path / "link.tar.gz"
    grafana_tarball.build(tarball)
    data = io.BytesIO()
    with tarfile.open(tarball) as src, tarfile.open(fileobj=data, mode="w:gz") as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m))
        link = tarfile.TarInfo("grafana-12.4.2/conf/provisioning")
        link.type, link.linkname = tarfile.SYMTYPE, "../../../../etc"
        dst.addfile(link)
    tarball.write_bytes(data.getvalue())
    sha = hashlib.sha256(data.getvalue()).hexdigest()
    with pytest.raises(GrafanaInstallError, match="points outside"):
        ensure_grafana(tmp_path / "cache", tarball=tarball, release=grafana_tarball.release_for(NAME, sha),
                       arch="amd64")
    _nothing_unpacked(tmp_path / "cache")


def test_pinned_release_covers_both_architectures_with_real_checksums():
    assert set(PINNED.files) == {"amd64", "arm64"}
    for arch, (name, sha) in PINNED.files.items():
        assert name.startswith(f"grafana_{PINNED.version}_") and name.endswith(f"_linux_{arch}.tar.gz")
        assert len(sha) == 64 and int(sha, 16)
    with pytest.raises(GrafanaInstallError, match="no Grafana 12.4.2 build for .*riscv64"):
        PINNED.file_for("riscv64")
    assert "dl.grafana.com/grafana/release/12.4.2/" in offline_hint(arch="amd64")


def test_two_installs_at_once_download_once_and_both_get_grafana(tmp_path):
    """A second `up` started while the first downloads waits for it, then finds Grafana installed
    (before: both wrote one .part file, and the loser failed with FileNotFoundError)."""
    good = tmp_path / "good.tar.gz"
    sha = grafana_tarball.build(good)
    release = grafana_tarball.release_for(NAME, sha)
    cache = tmp_path / "cache"
    hits, results, threads = [], [], []
    second_hit = threading.Event()

    def install():
        try:
            results.append(ensure_grafana(cache, download_url=url, release=release, arch="amd64",
                                          progress=lambda _: None))
        except BaseException as exc:  # noqa: BLE001 - the test reports whatever escaped
            results.append(exc)

    class Slow(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits.append(self.path)
            if len(hits) == 1:  # the first download is under way: start the second install now
                threads.append(threading.Thread(target=install))
                threads[0].start()
                second_hit.wait(2)  # an unlocked second install reaches the site meanwhile
            else:
                second_hit.set()
            data = good.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    with serving(Slow) as base:
        url = base + "/"
        install()
        threads[0].join()
    assert hits == [f"/{NAME}"]
    assert len(results) == 2 and results[0] == results[1] and results[0].binary.is_file(), results


def test_an_unwritable_cache_says_which_folder_and_how_to_choose_another(site, tmp_path):
    url, folder, _ = site
    sha = grafana_tarball.build(folder / NAME)
    release = grafana_tarball.release_for(NAME, sha)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for cache in (blocker, blocker / "cache"):  # the cache is a file / lies under one
        for source in ({"download_url": url}, {"tarball": folder / NAME}):
            with pytest.raises(GrafanaInstallError, match=f"cache directory {cache}: .*--cache-dir"):
                ensure_grafana(cache, release=release, arch="amd64", progress=lambda _: None, **source)
    assert blocker.read_text() == "not a folder"


def test_a_damaged_cached_tarball_is_downloaded_again(site, tmp_path):
    url, folder, hits = site
    sha = grafana_tarball.build(folder / NAME)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / NAME).write_bytes((folder / NAME).read_bytes()[:100])  # cut short, e.g. by a full disk
    got = ensure_grafana(cache, download_url=url, release=grafana_tarball.release_for(NAME, sha),
                         arch="amd64", progress=lambda _: None)
    assert got.binary.is_file() and hits == [f"/{NAME}"]
    assert (cache / NAME).read_bytes() == (folder / NAME).read_bytes()


def test_a_download_cut_short_leaves_no_partial_file(tmp_path):
    good = tmp_path / "good.tar.gz"
    sha = grafana_tarball.build(good)

    class Cut(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            data = good.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])  # then the connection drops

    cache = tmp_path / "cache"
    with serving(Cut) as base:
        with pytest.raises(GrafanaInstallError, match="nothing was unpacked|cannot download"):
            ensure_grafana(cache, download_url=base + "/", release=grafana_tarball.release_for(NAME, sha),
                           arch="amd64", progress=lambda _: None)
    _nothing_unpacked(cache)
    assert not (cache / NAME).exists()


def test_the_other_architectures_tarball_is_named_as_such(tmp_path):
    arm = tmp_path / "arm.tar.gz"
    arm_sha = grafana_tarball.build(arm)
    release = GrafanaRelease("12.4.2", {"amd64": (NAME, "a" * 64), "arm64": ("arm.tar.gz", arm_sha)})
    with pytest.raises(GrafanaInstallError, match="it is Grafana 12.4.2's arm64 tarball and this machine is "
                                                  f"amd64; use {NAME}"):
        ensure_grafana(tmp_path / "cache", tarball=arm, release=release, arch="amd64")
    _nothing_unpacked(tmp_path / "cache")
