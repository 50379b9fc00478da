"""PyTorch, fastai and Keras downloads: streamed from an https server on loopback into the
folders those libraries use, verified, and never left half-written."""
import dataclasses
import fcntl
import hashlib
import io
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import select

from admin.ops import model_ops
from admin.ops.model_catalog import CATALOG
from admin.ops.file_download import download_file
from admin.ops.model_ops import ModelOpError
from common.sources.file_models import scan_model_files
from common.sources.model_dirs import fastai_models, keras_models, torch_checkpoints
from common.store.jobs import Job
from tests.fakes.weights_server import weights_server
from tests.support.admin import csrf_from, logged_in_client, make_admin_app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CNN = (FIXTURES / "torch" / "cnn-state-dict.pth").read_bytes()
KERAS = (FIXTURES / "keras" / "small-cnn.keras").read_bytes()
SHA = hashlib.sha256(CNN).hexdigest()
TORCH_NAME = f"tiny-cnn-{SHA[:8]}.pth"  # torch hub's naming: sha256 prefix after the last '-'


@pytest.fixture
def server(tmp_path, monkeypatch):
    with weights_server(tmp_path, monkeypatch) as server:
        server.files[TORCH_NAME] = CNN
        server.files["bad-cnn-00000000.pth"] = CNN
        server.files["cnn.pth"] = CNN
        server.files["small-cnn.keras"] = KERAS
        yield server


def _run(env, provider, model, checksum=None, free=10**12):
    plan = model_ops.plan_download(env, provider, model, checksum=checksum, free_fn=lambda _p: free)
    progress = []
    message = model_ops.download(env, plan, lambda *a, **k: progress.append(k), free_fn=lambda _p: free)
    return plan, message, progress


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith("."))


def test_torch_url_lands_in_hub_checkpoints_verified_by_its_name_with_metadata(vm_env, server):
    plan, message, progress = _run(vm_env, "torch", server.url(TORCH_NAME))
    target = torch_checkpoints(vm_env) / TORCH_NAME
    assert target.read_bytes() == CNN and "sha256 prefix" in message
    assert progress[-1]["bytes_done"] == len(CNN) == progress[-1]["bytes_total"]
    (record,) = scan_model_files(vm_env)
    assert (record.provider, record.model, record.parameters, record.quantization) == ("torch", TORCH_NAME, 3130, "F32")


def test_keras_url_with_md5_lands_in_keras_home_models(vm_env, server):
    md5 = hashlib.md5(KERAS).hexdigest()
    _run(vm_env, "keras", server.url("small-cnn.keras"), checksum=md5)
    (record,) = scan_model_files(vm_env)
    assert (record.provider, record.path, record.parameters) == (
        "keras", str(keras_models(vm_env) / "small-cnn.keras"), 3146)


@pytest.mark.parametrize("name,checksum,why", [
    ("bad-cnn-00000000.pth", None, "promises a sha256 starting with 00000000"),
    ("cnn.pth", "0" * 64, "expected sha256 " + "0" * 64),
    ("cnn.pth", "md5:" + "1" * 32, "expected md5"),
])
def test_a_wrong_checksum_is_refused_and_nothing_is_kept(vm_env, server, name, checksum, why):
    with pytest.raises(ModelOpError, match="checksum mismatch") as refused:
        _run(vm_env, "torch", server.url(name), checksum=checksum)
    assert why in str(refused.value)
    folder = torch_checkpoints(vm_env)
    assert not (folder / name).exists() and _leftovers(folder) == []


def test_an_interrupted_stream_is_refused_and_no_partial_file_is_left(vm_env, server):
    with pytest.raises(ModelOpError, match=f"got {len(CNN) // 2} of {len(CNN)} bytes"):
        _run(vm_env, "torch", server.url("cnn.pth", mode="cut"))
    folder = torch_checkpoints(vm_env)
    assert list(folder.iterdir()) == [] and scan_model_files(vm_env) == []


def test_a_disk_too_small_is_refused_before_writing_and_while_streaming(vm_env, server):
    with pytest.raises(ModelOpError, match="not enough disk space: the file is"):
        _run(vm_env, "torch", server.url("cnn.pth"), free=100)
    with pytest.raises(ModelOpError, match="not enough disk space: more than 100 bytes"):
        _run(vm_env, "torch", server.url("cnn.pth", mode="nolength"), free=100)
    assert _leftovers(torch_checkpoints(vm_env)) == [] and scan_model_files(vm_env) == []


def test_a_redirect_is_followed_over_https_only(vm_env, server, tmp_path):
    server.redirects[TORCH_NAME] = server.url(TORCH_NAME)
    _run(vm_env, "torch", server.url(TORCH_NAME, mode="redirect"))  # https to https: followed
    assert (torch_checkpoints(vm_env) / TORCH_NAME).read_bytes() == CNN
    with weights_server(tmp_path / "plain", tls=False) as plain:
        plain.files["cnn.pth"] = CNN
        server.redirects["cnn.pth"] = plain.url("cnn.pth")
        with pytest.raises(ModelOpError, match="redirected to a URL that is not https"):
            _run(vm_env, "torch", server.url("cnn.pth", mode="redirect"))
        assert plain.requests == []  # refused before a byte went out in clear
    assert not (torch_checkpoints(vm_env) / "cnn.pth").exists()
    assert _leftovers(torch_checkpoints(vm_env)) == []


def test_a_file_that_appears_during_the_download_is_kept_not_replaced(vm_env, server):
    target = torch_checkpoints(vm_env) / "cnn.pth"

    def user_copies_one_in(*_args, **_kw):  # another download of it, or the user's own copy
        if not target.exists():
            target.write_bytes(b"the user's own weights")

    plan = model_ops.plan_download(vm_env, "torch", server.url("cnn.pth"), free_fn=lambda _p: 10**12)
    with pytest.raises(ModelOpError, match="appeared while this download ran"):
        model_ops.download(vm_env, plan, user_copies_one_in, free_fn=lambda _p: 10**12)
    assert target.read_bytes() == b"the user's own weights"
    assert _leftovers(torch_checkpoints(vm_env)) == []


def test_partial_files_of_a_killed_download_go_at_the_next_one_a_running_ones_stay(vm_env, server):
    folder = torch_checkpoints(vm_env)
    folder.mkdir(parents=True)
    dead = folder / ".cnn.pth.partial-dead0001"  # its admin was killed with kill -9: no lock
    dead.write_bytes(CNN[:100])
    running = folder / ".cnn.pth.partial-live0001"
    running.write_bytes(CNN[:100])
    other = folder / f".{TORCH_NAME}.partial-dead0002"  # another file's: not this download's business
    other.write_bytes(b"x")
    with open(running, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as the running download's job holds it
        _run(vm_env, "torch", server.url("cnn.pth"))
        assert _leftovers(folder) == sorted([running.name, other.name])
    assert (folder / "cnn.pth").read_bytes() == CNN


def test_an_existing_file_is_not_overwritten(vm_env, server):
    _run(vm_env, "torch", server.url(TORCH_NAME))
    with pytest.raises(ModelOpError, match="already exists"):
        _run(vm_env, "torch", server.url(TORCH_NAME))


@pytest.mark.parametrize("model,why", [
    ("http://localhost/x.pth", "https://"),
    ("https://user:pw@localhost/x.pth", "user name or password"),
    ("https://localhost/", "does not end with a file name"),
    ("https://localhost/notes.txt", "not a weights file"),
    ("https://localhost/x.pth.tgz", "only fastai"),
    ("alexnet-of-my-dreams", "neither an https:// URL nor a torch catalog name"),
])
def test_bad_sources_are_refused_up_front(vm_env, model, why):
    with pytest.raises(ModelOpError, match=why):
        model_ops.plan_download(vm_env, "torch", model)


def test_bad_checksums_are_refused_up_front(vm_env):
    with pytest.raises(ModelOpError, match="sha256 \\(64 hex digits\\) or md5"):
        model_ops.plan_download(vm_env, "keras", "https://localhost/m.h5", checksum="abc")
    with pytest.raises(ModelOpError, match="published checksum is used"):
        model_ops.plan_download(vm_env, "keras", "resnet50", checksum="0" * 32)


def test_catalog_entries_carry_their_published_checks(vm_env):
    plan = model_ops.plan_download(vm_env, "torch", "resnet18")
    assert (plan.source.url, plan.source.hash_prefix) == ("https://download.pytorch.org/models/resnet18-f37072fd.pth",
                                                         "f37072fd")
    assert plan.target_dir == torch_checkpoints(vm_env)
    keras = model_ops.plan_download(vm_env, "keras", "resnet50_notop")
    assert (keras.source.checksum.algorithm, keras.source.checksum.hexdigest) == ("md5", "4d473c1dd8becc155b73f8504c6f6626")
    assert {e.provider for e in CATALOG} == {"torch", "keras", "fastai"}
    with pytest.raises(ModelOpError, match="not enough disk space"):  # its published size: 206789489 bytes
        model_ops.plan_download(vm_env, "fastai", "wt103", free_fn=lambda _p: 10**6)


def _tgz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_catalog_archive_is_verified_then_unpacked_where_fastai_looks(vm_env, server):
    data = _tgz({"wt103/fwd.pth": CNN, "wt103/itos.pkl": b"\x80\x04]."})
    server.files["wt103.tgz"] = data
    plan = model_ops.plan_download(vm_env, "fastai", "wt103", free_fn=lambda _p: 10**12)
    # The catalog's URL, pointed at the loopback server: its published md5 cannot match our bytes.
    wrong = dataclasses.replace(plan, source=dataclasses.replace(plan.source, url=server.url("wt103.tgz")))
    with pytest.raises(ModelOpError, match="checksum mismatch: expected md5 76fd08236c78bf91b7fb76698d53afa3"):
        model_ops.download(vm_env, wrong, lambda *a, **k: None, free_fn=lambda _p: 10**12)
    assert not (fastai_models(vm_env) / "wt103").exists()
    md5 = hashlib.md5(data).hexdigest()
    _run(vm_env, "fastai", server.url("wt103.tgz"), checksum=md5)
    assert (fastai_models(vm_env) / "wt103" / "wt103" / "fwd.pth").read_bytes() == CNN
    assert (fastai_models(vm_env).parent / "archive" / "wt103.tgz").is_file()
    records = {(r.provider, r.model): r.parameters for r in scan_model_files(vm_env)}
    assert records[("fastai", "wt103/wt103/fwd.pth")] == 3130


def test_an_archive_escaping_its_folder_is_refused_and_nothing_is_unpacked(vm_env, server):
    server.files["evil.tgz"] = _tgz({"../../escaped.pth": CNN})
    with pytest.raises(ModelOpError, match="cannot unpack evil.tgz"):
        _run(vm_env, "fastai", server.url("evil.tgz"))
    models = fastai_models(vm_env)
    assert not (models / "evil").exists() and not (models.parent.parent / "escaped.pth").exists()
    assert _leftovers(models) == []


def test_an_archive_unpacking_to_more_than_the_free_disk_is_refused_before_writing(vm_env, server):
    data = _tgz({"bomb/zeros.pth": bytes(2_000_000)})  # a few KB that unpack to 2 MB
    server.files["bomb.tgz"] = data
    with pytest.raises(ModelOpError, match="not enough disk space to unpack bomb.tgz: its files hold 2000000 bytes"):
        _run(vm_env, "fastai", server.url("bomb.tgz"), free=1_000_000)
    models = fastai_models(vm_env)
    assert not (models / "bomb").exists() and _leftovers(models) == []


def test_the_admin_form_downloads_a_torch_file_as_a_job(vm_env, server):
    app = make_admin_app(vm_env, view_modules=("models", "jobs"))
    client = logged_in_client(app)
    page = client.get("/admin/models/new/")
    assert "PyTorch" in page.text and "resnet50_notop" in page.text
    token = csrf_from(page.text)
    response = client.post("/admin/models/new/", data={"csrf_token": token, "provider": "torch",
                                                       "model": server.url(TORCH_NAME)})
    assert response.status_code == 302
    ctx = app.extensions["wordslab"]
    assert ctx.jobs.wait_idle(30)
    with ctx.sessions() as s:
        (job,) = s.scalars(select(Job))
        assert (job.kind, job.status, job.bytes_done) == ("download", "done", len(CNN)), job.message
    assert TORCH_NAME in client.get("/admin/models/").text
    refused = client.post("/admin/models/new/", data={"csrf_token": token, "provider": "keras",
                                                      "model": server.url("small-cnn.keras"), "checksum": "0" * 64})
    assert refused.status_code == 302  # accepted as a job; the job fails on the checksum
    assert ctx.jobs.wait_idle(30)
    with ctx.sessions() as s:
        failed = s.scalars(select(Job).order_by(Job.id.desc())).first()
        assert failed.status == "failed" and "checksum mismatch" in failed.message
    assert not (keras_models(vm_env) / "small-cnn.keras").exists()


def test_a_server_trickling_bytes_is_given_up_under_the_speed_floor(vm_env, server):
    """A byte every 0.2 s never trips a read timeout; the low-speed limit (git's and curl's
    kind, here 100 bytes/s over 1 s) ends it, and nothing is left."""
    target = torch_checkpoints(vm_env) / "slow.pth"
    with pytest.raises(ModelOpError, match="download too slow: under 100 bytes/s for 1 s"):
        download_file(server.url("cnn.pth", mode="trickle"), target, lambda *a, **k: None,
                      lambda _p: 10**12, low_speed=(100, 1.0))
    assert not target.exists() and _leftovers(torch_checkpoints(vm_env)) == []
