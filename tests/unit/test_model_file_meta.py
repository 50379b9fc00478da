"""PyTorch and Keras files' metadata, read from real files made by torch and Keras
(tests/fixtures/{torch,keras}/make_fixtures.py) without either library, and no pickle code run."""
import io
import json
import os
import pickle
import time
import zipfile
from pathlib import Path

import pytest

from common.sources.file_models import scan_model_files
from common.sources.keras_meta import summarize_keras
from common.sources.safetensors_meta import summarize as safetensors_summarize
from common.sources.torch_meta import summarize_checkpoint
from tests.fakes.model_files import provider_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TORCH = json.loads((FIXTURES / "torch" / "expected.json").read_text())
KERAS = json.loads((FIXTURES / "keras" / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(TORCH))
def test_torch_checkpoints_give_torchs_own_parameter_count(name):
    summary = summarize_checkpoint(FIXTURES / "torch" / name)
    assert (summary.parameters, summary.dtype) == (TORCH[name]["parameters"], TORCH[name]["dtype"])


def test_torch_bytes_follow_the_dtype():
    f32 = summarize_checkpoint(FIXTURES / "torch" / "cnn-state-dict.pth")
    bf16 = summarize_checkpoint(FIXTURES / "torch" / "cnn-bf16.bin")
    assert f32.tensor_bytes == 4 * f32.parameters and bf16.tensor_bytes == 2 * bf16.parameters


@pytest.mark.parametrize("name", sorted(KERAS))
def test_keras_files_give_keras_count_params(name):
    summary = summarize_keras(FIXTURES / "keras" / name)
    assert (summary.tensors.parameters, summary.tensors.dtype) == (KERAS[name]["parameters"], KERAS[name]["dtype"])
    assert summary.class_name == KERAS[name].get("class_name", "")


def _zip_with_pickle(payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


class _Boom:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):  # what a malicious checkpoint does: call os.system on load
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(_zip_with_pickle(pickle.dumps({"weight": _Boom(str(marker))}, protocol=2)))
    with pytest.raises(ValueError, match="no tensors"):
        summarize_checkpoint(path)
    legacy = tmp_path / "evil-legacy.pt"
    legacy.write_bytes(pickle.dumps(_Boom(str(marker))))
    with pytest.raises(ValueError):
        summarize_checkpoint(legacy)
    assert not marker.exists()


@pytest.mark.parametrize("data", [b"", b"PK\x03\x04 truncated", b"\x80\x02}q\x00(X", b"not a checkpoint"])
def test_unreadable_checkpoints_raise_valueerror(tmp_path, data):
    path = tmp_path / "bad.pth"
    path.write_bytes(data)
    with pytest.raises(ValueError):
        summarize_checkpoint(path)


def test_reading_metadata_leaves_the_access_time_alone(tmp_path):
    for src in (FIXTURES / "torch" / "cnn-state-dict.pth", FIXTURES / "keras" / "small-cnn.keras"):
        path = tmp_path / src.name
        path.write_bytes(src.read_bytes())
        old = time.time() - 30 * 86400
        os.utime(path, (old, old))
        (summarize_checkpoint if src.suffix == ".pth" else summarize_keras)(path)
        assert path.stat().st_atime == pytest.approx(old)


def test_scan_lists_torch_fastai_keras_with_metadata_and_a_bad_file_hides_nothing(vm_env):
    provider_file(vm_env, "torch", "resnet-tiny.pth", (FIXTURES / "torch" / "cnn-state-dict.pth").read_bytes())
    provider_file(vm_env, "fastai", "pets/stage-1.pth", (FIXTURES / "torch" / "fastai-learner.pth").read_bytes())
    provider_file(vm_env, "keras", "small-cnn.keras", (FIXTURES / "keras" / "small-cnn.keras").read_bytes())
    provider_file(vm_env, "keras", "broken.h5", b"\x89HDF\r\n\x1a\n truncated")
    records = {(r.provider, r.model): r for r in scan_model_files(vm_env)}
    assert set(records) == {("torch", "resnet-tiny.pth"), ("fastai", "pets/stage-1.pth"),
                            ("keras", "small-cnn.keras"), ("keras", "broken.h5")}
    torch = records[("torch", "resnet-tiny.pth")]
    assert (torch.parameters, torch.quantization, torch.vram_estimate_bytes) == (3130, "F32", 3130 * 4)
    assert records[("fastai", "pets/stage-1.pth")].parameters == 3130
    assert (records[("keras", "small-cnn.keras")].parameters, records[("keras", "small-cnn.keras")].quantization) == (3146, "F32")
    broken = records[("keras", "broken.h5")]
    assert broken.parameters is None and broken.vram_estimate_bytes == broken.size_bytes


def _tensor_pickle(sizes) -> bytes:
    """{'w': torch._utils._rebuild_tensor_v2(<FloatStorage>, 0, sizes)}, written by hand (protocol 0
    text, one BINPERSID) so the sizes can be what no torch would write."""
    shape = b"(" + b"".join(b"I%d\n" % size for size in sizes) + b"t"
    return (b"(dp0\nVw\nctorch._utils\n_rebuild_tensor_v2\n("
            b"(Vstorage\nctorch\nFloatStorage\nV0\nVcpu\nI1\ntQ" b"I0\n" + shape + b"tRs.")


def test_a_hand_written_tensor_pickle_is_read_as_torch_writes_it(tmp_path):
    path = tmp_path / "ok.pth"
    path.write_bytes(_zip_with_pickle(_tensor_pickle((5, 10))))
    assert (summarize_checkpoint(path).parameters, summarize_checkpoint(path).tensor_bytes) == (50, 200)


@pytest.mark.parametrize("sizes, why", [
    ((-5, 10), "not a size"),             # would count -50 parameters
    ((3, -1), "not a size"),
    ((2**40, 2**40), "2\\*\\*63 elements"),  # more elements than an int64 counts
    ((2**62,) * 1000, "1000 dimensions"),  # multiplying 100,000 of these took two minutes
])
def test_a_checkpoint_declaring_impossible_sizes_is_refused(tmp_path, sizes, why):
    path = tmp_path / "odd.pth"
    path.write_bytes(_zip_with_pickle(_tensor_pickle(sizes)))
    with pytest.raises(ValueError, match=why):
        summarize_checkpoint(path)
    legacy = tmp_path / "odd-legacy.pt"
    legacy.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
                       + pickle.dumps({}, protocol=2) + _tensor_pickle(sizes))
    with pytest.raises(ValueError, match=why):
        summarize_checkpoint(legacy)


@pytest.mark.parametrize("shape, why", [
    ([-5, 10], "not a size"), ([True, 3], "not a size"), ([2**40, 2**40], "2\\*\\*63 elements"),
    ([2**62] * 1000, "1000 dimensions"),
])
def test_a_safetensors_header_declaring_impossible_sizes_is_refused(tmp_path, shape, why):
    header = json.dumps({"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}}).encode()
    path = tmp_path / "odd.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(ValueError, match=why):
        safetensors_summarize(path)


def test_a_keras_archive_whose_weights_inflate_hugely_is_read_in_place(tmp_path):
    """A .keras whose model.weights.h5 is padded to 1 GiB of zeros (a few MB compressed): the
    variables are still read, without inflating the member into memory."""
    import resource
    import zipfile as zf
    src = zf.ZipFile(FIXTURES / "keras" / "small-cnn.keras")
    weights = src.read("model.weights.h5")
    path = tmp_path / "padded.keras"
    with zf.ZipFile(path, "w", compression=zf.ZIP_DEFLATED) as out:
        out.writestr("config.json", src.read("config.json"))
        out.writestr("metadata.json", src.read("metadata.json"))
        with out.open("model.weights.h5", "w", force_zip64=True) as member:
            member.write(weights)
            zeros = bytes(1 << 20)
            for _ in range(1024):
                member.write(zeros)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    summary = summarize_keras(path)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert (summary.tensors.parameters, summary.tensors.dtype) == (KERAS["small-cnn.keras"]["parameters"], "F32")
    assert grown_mib < 256, f"peak memory grew by {grown_mib:.0f} MiB"
