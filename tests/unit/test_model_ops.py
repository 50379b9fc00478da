"""Model download / delete / benchmark operations against the fake Ollama and fake hub."""
import json
import os
from pathlib import Path

import pytest

from admin.ops import model_ops
from admin.ops.model_ops import ModelOpError
from common.sources.hf_models import scan_hf_cache
from common.sources.model_dirs import hf_hub_cache, ollama_models, torch_checkpoints
from tests.fakes.hf_hub import fake_hub, FakeRepo
from tests.fakes.model_files import hf_cache_repo, hf_llm, llm_config, provider_file, safetensors_bytes, \
    tiny_llm_tensors
from tests.fakes.ollama_server import fake_ollama, sample_state

PLENTY = lambda _path: 2**50  # noqa: E731
NO_SPACE = lambda _path: 1000  # noqa: E731


class Reports(list):
    def __call__(self, ratio=None, **kwargs):
        self.append((ratio, kwargs))


@pytest.fixture
def ollama(vm_env):
    with fake_ollama(sample_state(ollama_models(vm_env))) as server:
        vm_env["OLLAMA_API_BASE"] = server.base_url
        yield server


@pytest.fixture
def hub(vm_env):
    with fake_hub() as server:
        server.state.repos["tiny-org/tiny-llama"] = FakeRepo({
            "config.json": json.dumps(llm_config()).encode(),
            "model.safetensors": safetensors_bytes(tiny_llm_tensors())})
        server.state.repos["big-org/huge"] = FakeRepo({"model.safetensors": b"x"},
                                                      declared_sizes={"model.safetensors": 2**60})
        vm_env["HF_ENDPOINT"] = server.base_url
        yield server


@pytest.mark.parametrize("provider, model_id", [
    ("ollama", "../../etc/passwd"), ("ollama", "qwen3;rm -rf /"), ("ollama", "qwen3:8b && ls"),
    ("ollama", "--insecure"), ("ollama", "a b"), ("huggingface", "org/../x"), ("huggingface", "org/name/extra"),
    ("huggingface", "org/$(id)"), ("huggingface", "org--x/name"), ("huggingface", ""),
    ("torch", "../secret.pth"), ("torch", "/etc/passwd"),
])
def test_bad_model_ids_are_refused(provider, model_id):
    with pytest.raises(ModelOpError):
        model_ops.check_model_id(provider, model_id)


@pytest.mark.parametrize("provider, model_id", [
    ("ollama", "qwen3:8b"), ("ollama", "library/qwen3:8b-32k"), ("ollama", "hf.co/unsloth/Qwen3-GGUF:Q4_K_M"),
    ("huggingface", "Qwen/Qwen3-0.6B"), ("huggingface", "gpt2"), ("torch", "resnet18-f37072fd.pth"),
])
def test_good_model_ids_pass(provider, model_id):
    assert model_ops.check_model_id(provider, model_id) == model_id


def test_unknown_provider_and_bad_revision(vm_env):
    with pytest.raises(ModelOpError, match="unknown provider 'civitai'"):
        model_ops.plan_download(vm_env, "civitai", "x")
    with pytest.raises(ModelOpError, match="revision"):
        model_ops.plan_download(vm_env, "huggingface", "org/x", "../main")


def test_hf_download_with_progress_into_the_cache(vm_env, hub):
    plan = model_ops.plan_download(vm_env, "huggingface", "tiny-org/tiny-llama", free_fn=PLENTY)
    repo = hub.state.repos["tiny-org/tiny-llama"]
    assert plan.expected_bytes == sum(len(d) for d in repo.files.values())
    reports = Reports()
    message = model_ops.download(vm_env, plan, reports)
    assert "downloaded tiny-org/tiny-llama" in message
    assert reports[-1] == (1.0, {"bytes_done": plan.expected_bytes, "bytes_total": plan.expected_bytes,
                                 "message": "downloaded"})
    (record,) = scan_hf_cache(hf_hub_cache(vm_env))
    assert record.model == "tiny-org/tiny-llama" and record.context_length == 2048
    assert ("GET", f"/tiny-org/tiny-llama/resolve/{repo.commit}/model.safetensors") in hub.state.requests


def test_hf_unknown_model_or_revision(vm_env, hub):
    with pytest.raises(ModelOpError, match="unknown model id.*'nobody/nothing'"):
        model_ops.plan_download(vm_env, "huggingface", "nobody/nothing")
    with pytest.raises(ModelOpError, match="no revision 'v9'"):
        model_ops.plan_download(vm_env, "huggingface", "tiny-org/tiny-llama", "v9")


def test_hf_download_that_does_not_fit_is_refused_before_writing(vm_env, hub):
    with pytest.raises(ModelOpError, match="not enough disk space.*nothing was downloaded"):
        model_ops.plan_download(vm_env, "huggingface", "big-org/huge")  # the real free space
    with pytest.raises(ModelOpError, match="not enough disk space"):
        model_ops.plan_download(vm_env, "huggingface", "tiny-org/tiny-llama", free_fn=NO_SPACE)
    assert not hf_hub_cache(vm_env).exists()
    assert not any("/resolve/" in path for _, path in hub.state.requests)


def test_ollama_pull_with_one_progress_figure(vm_env, ollama):
    plan = model_ops.plan_download(vm_env, "ollama", "tinyllama")
    reports = Reports()
    assert model_ops.download(vm_env, plan, reports, free_fn=PLENTY) == "pulled tinyllama into Ollama"
    size = ollama.state.registry["tinyllama:latest"].size
    assert reports[-1] == (1.0, {"bytes_done": size, "bytes_total": size, "message": "success"})
    assert "tinyllama:latest" in ollama.state.models


def test_ollama_pull_stops_when_the_layers_do_not_fit(vm_env, ollama):
    ollama.state.pull_delay = 0.05  # still streaming when the client hangs up, as a real pull would be
    plan = model_ops.plan_download(vm_env, "ollama", "tinyllama")
    with pytest.raises(ModelOpError, match="not enough disk space"):
        model_ops.download(vm_env, plan, Reports(), free_fn=NO_SPACE)
    assert "tinyllama:latest" not in ollama.state.models
    assert not (ollama_models(vm_env) / "manifests" / "registry.ollama.ai" / "library" / "tinyllama").exists()


def test_ollama_unknown_model(vm_env, ollama):
    plan = model_ops.plan_download(vm_env, "ollama", "no-such-model:7b")
    with pytest.raises(ModelOpError, match="unknown model id.*does not exist"):
        model_ops.download(vm_env, plan, Reports(), free_fn=PLENTY)


def test_delete_asks_for_confirmation_first(vm_env):
    path = provider_file(vm_env, "torch", "resnet18-f37072fd.pth")
    target = model_ops.describe_delete(vm_env, "torch", "resnet18-f37072fd.pth")
    assert str(path) in target.description
    with pytest.raises(ModelOpError, match="confirm"):
        model_ops.delete_model(vm_env, target, confirmed=False)
    assert path.exists()
    model_ops.delete_model(vm_env, target, confirmed=True)
    assert not path.exists()


def test_file_delete_is_confined_to_the_provider_folder(vm_env, tmp_path):
    outside = tmp_path / "precious.pth"
    outside.write_bytes(b"keep me")
    checkpoints = torch_checkpoints(vm_env)
    checkpoints.mkdir(parents=True)
    os.symlink(outside, checkpoints / "link.pth")
    for name in ("link.pth", "../../../../precious.pth", "missing.pth"):
        with pytest.raises(ModelOpError):
            model_ops.describe_delete(vm_env, "torch", name)
    assert outside.read_bytes() == b"keep me"


def test_hf_delete_a_revision_then_the_repo(vm_env):
    cache = hf_hub_cache(vm_env)
    hf_cache_repo(cache, "org/m", {"config.json": b'{"v": 1}'}, commit="a" * 40, ref="")
    repo = hf_cache_repo(cache, "org/m", {"config.json": b'{"v": 2}'}, commit="b" * 40)
    hf_llm(vm_env)
    target = model_ops.describe_delete(vm_env, "huggingface", "org/m", "a" * 40)
    model_ops.delete_model(vm_env, target, confirmed=True)
    assert [p.name for p in (repo / "snapshots").iterdir()] == ["b" * 40]
    with pytest.raises(ModelOpError, match="no cached revision"):
        model_ops.describe_delete(vm_env, "huggingface", "org/m", "a" * 40)
    model_ops.delete_model(vm_env, model_ops.describe_delete(vm_env, "huggingface", "org/m"), confirmed=True)
    assert not repo.exists()
    assert [r.model for r in scan_hf_cache(cache)] == ["tiny-org/tiny-llama"]


def test_ollama_delete_and_benchmark(vm_env, ollama):
    assert model_ops.benchmark_ollama(vm_env, "qwen3:8b") == pytest.approx(24 / 0.3)
    target = model_ops.describe_delete(vm_env, "ollama", "qwen3:8b-32k")
    model_ops.delete_model(vm_env, target, confirmed=True)
    assert "qwen3:8b-32k" not in ollama.state.models
    with pytest.raises(ModelOpError, match="no model 'qwen3:8b-32k'"):
        model_ops.describe_delete(vm_env, "ollama", "qwen3:8b-32k")


def test_ollama_pull_whose_stream_is_cut_fails_with_why(vm_env, ollama):
    ollama.state.pull_cut = "end"  # the connection ends at 50 %, no "success" line
    plan = model_ops.plan_download(vm_env, "ollama", "tinyllama")
    with pytest.raises(ModelOpError, match="did not finish.*50 %"):
        model_ops.download(vm_env, plan, Reports(), free_fn=PLENTY)
    assert "tinyllama:latest" not in ollama.state.models


def test_ollama_names_from_a_registry_with_a_port_are_valid():
    assert model_ops.check_model_id("ollama", "registry:5000/ns/model:tag") == "registry:5000/ns/model:tag"
    assert model_ops.check_model_id("ollama", "model:5000") == "model:5000"  # no '/' after: a tag
    with pytest.raises(ModelOpError):
        model_ops.check_model_id("ollama", "registry:123456/ns/model")  # not a port


def test_hf_repo_with_a_missing_blob_can_be_deleted_whole(vm_env):
    import hashlib
    weights = safetensors_bytes({"w": ((8, 8), "float16")})
    repo = hf_cache_repo(hf_hub_cache(vm_env), "org/broken", {"config.json": json.dumps(llm_config()).encode(),
                                                              "model.safetensors": weights})
    (repo / "blobs" / hashlib.sha256(weights).hexdigest()).unlink()
    hf_llm(vm_env)  # a healthy neighbour stays
    target = model_ops.describe_delete(vm_env, "huggingface", "org/broken")
    assert "whole folder" in target.description and str(repo) in target.description
    assert "deleted org/broken" in model_ops.delete_model(vm_env, target, confirmed=True)
    assert not repo.exists()
    assert [r.model for r in scan_hf_cache(hf_hub_cache(vm_env))] == ["tiny-org/tiny-llama"]


def test_a_hub_call_given_up_on_never_keeps_the_process_from_exiting(tmp_path):
    """A hub that trickles its answer is given up at the deadline; the call left reading must not
    be joined at exit (a pool's worker would be: the admin, and pytest, would never end)."""
    import subprocess
    import sys
    code = (
        "import threading\n"
        "from admin.ops import model_ops\n"
        "model_ops.HUB_DEADLINE_SECONDS = 0.2\n"
        "try:\n"
        "    model_ops._within_deadline(threading.Event().wait)\n"
        "except model_ops.ModelOpError as exc:\n"
        "    print('refused:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert "refused: the Hugging Face hub did not answer within 0.2 s" in done.stdout
