"""Models admin pages through Flask's test client, with the fake Ollama and fake hub on loopback."""
import json

import pytest
from sqlalchemy import select

from common.sources.model_dirs import hf_hub_cache, ollama_models
from common.store.jobs import Job
from common.store.models import ModelSpeed, ModelTypeOverride
from tests.fakes.hf_hub import fake_hub, FakeRepo
from tests.fakes.model_files import (hf_cache_repo, hf_llm, llm_config, provider_file, safetensors_bytes,
                                     tiny_llm_tensors)
from tests.fakes.ollama_server import fake_ollama, sample_state
from tests.support.admin import csrf_from, logged_in_client, make_admin_app


@pytest.fixture
def servers(vm_env):
    with fake_ollama(sample_state(ollama_models(vm_env))) as ollama, fake_hub() as hub:
        hub.state.repos["tiny-org/tiny-llama"] = FakeRepo({
            "config.json": json.dumps(llm_config()).encode(),
            "model.safetensors": safetensors_bytes(tiny_llm_tensors())})
        hub.state.repos["big-org/huge"] = FakeRepo({"model.safetensors": b"x"},
                                                   declared_sizes={"model.safetensors": 2**60})
        vm_env.update(OLLAMA_API_BASE=ollama.base_url, HF_ENDPOINT=hub.base_url)
        yield ollama, hub


@pytest.fixture
def app(vm_env, servers):
    app = make_admin_app(vm_env, view_modules=("models", "jobs"))
    yield app
    app.extensions["wordslab"].jobs.wait_idle(30)


@pytest.fixture
def client(app):
    return logged_in_client(app)


def jobs(app) -> list[Job]:
    ctx = app.extensions["wordslab"]
    assert ctx.jobs.wait_idle(30)
    with ctx.sessions() as s:
        return list(s.scalars(select(Job).order_by(Job.id)))


def post(client, url, **data):
    token = csrf_from(client.get("/admin/models/new/").text)
    return client.post(url, data={"csrf_token": token, **data})


def test_list_shows_every_provider(client, vm_env):
    hf_llm(vm_env)
    provider_file(vm_env, "torch", "resnet18-f37072fd.pth")
    page = client.get("/admin/models/")
    assert page.status_code == 200
    for text in ("qwen3:8b-32k", "nomic-embed-text:latest", "tiny-org/tiny-llama", "resnet18-f37072fd.pth",
                 "Q4_K_M", "32768", "Embed (detected)", "LLM (detected)"):
        assert text in page.text


def test_download_from_ollama_as_a_job_with_progress(client, app, servers):
    ollama, _ = servers
    response = post(client, "/admin/models/new/", provider="ollama", model="tinyllama")
    assert response.status_code == 302
    (job,) = jobs(app)
    size = ollama.state.registry["tinyllama:latest"].size
    assert (job.kind, job.target, job.status, job.progress) == ("download", "ollama:tinyllama", "done", 1.0)
    assert (job.bytes_done, job.bytes_total) == (size, size)
    assert "tinyllama:latest" in client.get("/admin/models/").text


def test_ollama_pull_cut_mid_stream_is_a_failed_job_saying_why(client, app, servers):
    ollama, _ = servers
    ollama.state.pull_cut = "end"  # connection cut at 50 %: the stream ends without "success"
    assert post(client, "/admin/models/new/", provider="ollama", model="tinyllama").status_code == 302
    (job,) = jobs(app)
    assert job.status == "failed" and "did not finish" in job.message and "50 %" in job.message
    assert "tinyllama:latest" not in ollama.state.models


def test_download_from_the_hub_as_a_job(client, app, vm_env):
    assert post(client, "/admin/models/new/", provider="huggingface", model="tiny-org/tiny-llama").status_code == 302
    (job,) = jobs(app)
    assert job.status == "done", job.message
    assert job.bytes_done == job.bytes_total > 0
    assert (hf_hub_cache(vm_env) / "models--tiny-org--tiny-llama").is_dir()
    assert "tiny-org/tiny-llama" in client.get("/admin/models/").text


@pytest.mark.parametrize("data, message", [
    ({"provider": "civitai", "model": "x"}, "unknown provider &#39;civitai&#39;"),
    ({"provider": "ollama", "model": "../../etc/passwd"}, "is not allowed"),
    ({"provider": "ollama", "model": "qwen3; rm -rf ~"}, "not valid for ollama"),
    ({"provider": "huggingface", "model": "org/$(reboot)"}, "not valid for huggingface"),
    ({"provider": "huggingface", "model": "nobody/nothing"}, "unknown model id"),
    ({"provider": "huggingface", "model": "big-org/huge"}, "not enough disk space"),
])
def test_bad_download_requests_change_nothing(client, app, vm_env, data, message):
    response = post(client, "/admin/models/new/", **data)
    assert response.status_code == 400
    assert message in response.text
    assert jobs(app) == []
    assert not hf_hub_cache(vm_env).exists()


def test_unknown_ollama_model_fails_its_job_with_a_clear_message(client, app, servers):
    post(client, "/admin/models/new/", provider="ollama", model="no-such-model:7b")
    (job,) = jobs(app)
    assert job.status == "failed" and "unknown model id" in job.message and "does not exist" in job.message


def test_post_without_csrf_is_refused(client, servers):
    response = client.post("/admin/models/new/", data={"provider": "ollama", "model": "tinyllama"})
    assert response.status_code == 400
    response = client.post("/admin/models/delete/", data={"provider": "ollama", "model": "qwen3:8b",
                                                          "confirm": "1"})
    assert response.status_code == 400
    assert "qwen3:8b" in servers[0].state.models


def test_delete_needs_the_confirmation(client, servers):
    ollama, _ = servers
    page = client.get("/admin/models/delete/?provider=ollama&model=qwen3:8b-32k")
    assert page.status_code == 200 and "the Ollama model qwen3:8b-32k" in page.text
    refused = post(client, "/admin/models/delete/", provider="ollama", model="qwen3:8b-32k")
    assert refused.status_code == 409 and "not deleted" in refused.text
    assert "qwen3:8b-32k" in ollama.state.models
    done = post(client, "/admin/models/delete/", provider="ollama", model="qwen3:8b-32k", confirm="1")
    assert done.status_code == 302
    assert "qwen3:8b-32k" not in ollama.state.models


def test_delete_of_a_model_a_running_endpoint_serves_names_it_and_asks_first(client, app, servers):
    ollama, _ = servers
    from common.store.services import Endpoint
    with app.extensions["wordslab"].sessions.begin() as s:
        s.add_all([Endpoint(name="chat", model="qwen3:8b-32k", server="ollama", status="running"),
                   Endpoint(name="nightly", model="qwen3:8b-32k", server="ollama", status="stopped"),
                   Endpoint(name="other", model="qwen3:8b", server="ollama", status="running"),
                   Endpoint(name="vl", model="qwen3:8b-32k", server="vllm", status="running")])
    page = client.get("/admin/models/delete/?provider=ollama&model=qwen3:8b-32k")
    assert page.status_code == 200
    warning = page.text[page.text.index('id="endpoints-in-use"'):]
    warning = warning[:warning.index("</div>")]
    assert "<strong>chat</strong>" in warning
    assert "<strong>other</strong>" not in warning and "<strong>vl</strong>" not in warning
    assert "nightly" in page.text[page.text.index('id="endpoints-configured"'):]
    assert "and break endpoint chat" in page.text
    # A confirmation that did not see the endpoint (an old page, a script) is asked again.
    again = post(client, "/admin/models/delete/", provider="ollama", model="qwen3:8b-32k", confirm="1")
    assert again.status_code == 409 and "endpoint chat now serves this model" in again.text
    assert "qwen3:8b-32k" in ollama.state.models
    done = post(client, "/admin/models/delete/", provider="ollama", model="qwen3:8b-32k", confirm="1",
                endpoints_shown="chat")
    assert done.status_code == 302 and "qwen3:8b-32k" not in ollama.state.models
    assert "endpoint chat served it" in client.get("/admin/models/").text


def test_delete_of_a_file_outside_its_folder_is_refused(client, vm_env, tmp_path):
    victim = tmp_path / "victim.pth"
    victim.write_bytes(b"data")
    response = post(client, "/admin/models/delete/", provider="torch", model="../../../../victim.pth", confirm="1")
    assert response.status_code == 302
    assert "is not allowed" in client.get("/admin/models/").text
    assert victim.exists()


def test_type_override_and_benchmark(client, app):
    assert post(client, "/admin/models/type/", provider="ollama", model="qwen3:8b", model_type="VLM").status_code == 302
    refused = post(client, "/admin/models/type/", provider="ollama", model="qwen3:8b", model_type="Robot")
    assert "unknown model type" in client.get(refused.headers["Location"]).text
    assert post(client, "/admin/models/benchmark/", provider="ollama", model="qwen3:8b").status_code == 302
    (job,) = jobs(app)
    assert (job.kind, job.status, job.message) == ("benchmark", "done", "80.0 tokens/s")
    with app.extensions["wordslab"].sessions() as s:
        assert s.get(ModelTypeOverride, ("ollama", "qwen3:8b")).model_type == "VLM"
        assert s.get(ModelSpeed, ("ollama", "qwen3:8b", "tokens_per_second")).value == pytest.approx(80.0)
    page = client.get("/admin/models/").text
    assert "80.0 tokens/s" in page and '<option value="VLM" selected>' in page


def test_hf_confirmation_page_offers_each_cached_revision(client, vm_env):
    cache = hf_hub_cache(vm_env)
    hf_cache_repo(cache, "org/m", {"config.json": b'{"v": 1}'}, commit="a" * 40, ref="")
    repo = hf_cache_repo(cache, "org/m", {"config.json": b'{"v": 2}'}, commit="b" * 40)
    page = client.get("/admin/models/delete/?provider=huggingface&model=org/m")
    assert "Delete this revision" in page.text and "(main)" in page.text
    post(client, "/admin/models/delete/", provider="huggingface", model="org/m", revision="a" * 40, confirm="1")
    assert [p.name for p in (repo / "snapshots").iterdir()] == ["b" * 40]
