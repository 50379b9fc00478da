"""Admin endpoints and external APIs through Flask's test client, with real processes and servers."""
from __future__ import annotations

import html
import json
import logging
import os
import re
import shutil
import socket
import stat
import sys
from pathlib import Path

import pytest
from docker.errors import DockerException

from admin.ops import endpoint_ops
from exporter.collectors.endpoints import EndpointsCollector
from exporter.collectors.external_apis import ExternalApisCollector
from common.config import Settings
from admin.file_sd import targets_dir
from exporter.exposition import Exposition
from common.sources.endpoint_probe import process_alive
from common.store.jobs import Job
from common.store.services import Endpoint, ExternalApi
from tests.support.waiting import eventually
from tests.fakes import vllm_server
from tests.fakes.docker_client import FakeDockerClient
from tests.fakes.model_files import hf_llm, provider_file
from tests.fakes.ollama_server import FakeOllama, fake_model
from tests.fakes.openai_like import make_handler
from tests.fakes.loopback import serving
from tests.support.admin import csrf_from, logged_in_client, make_admin_app
from tests.support.env import free_port
from tests.unit.test_endpoints_probe import NO_GPU

KEY = "sk-live-9f8e7d6c5b4a3210ZYXWVU"
FAKE_VLLM = f"{sys.executable} {vllm_server.__file__} --port {{port}} --model {{model}} --gpu-memory-utilization {{gpu_memory_share}}"


def services_env(vm_env, **extra) -> dict:
    """The VM with Qwen/Qwen3-0.6B in its Hugging Face cache, its Ollama on a port where none
    listens (unless `extra` says otherwise), and no background status prober (tests refresh)."""
    env = {**vm_env, "OLLAMA_HOST": f"127.0.0.1:{free_port()}", "WORDSLAB_ENDPOINT_STATUS_INTERVAL_SECONDS": "0", **extra}
    hf_llm(env, "Qwen/Qwen3-0.6B")
    return env


@pytest.fixture
def admin_factory(vm_env):
    apps = []

    def make(**extra):
        app = make_admin_app(services_env(vm_env, **extra), view_modules=("jobs", "endpoints", "external_apis"))
        apps.append(app)
        return logged_in_client(app), app.extensions["wordslab"]
    yield make
    for app in apps:
        ctx = app.extensions["wordslab"]
        ctx.jobs.wait_idle()
        with ctx.sessions() as s:  # leave no server running
            for endpoint in s.query(Endpoint).all():
                if endpoint.server != "ollama" and (endpoint.pid or endpoint.container_id):
                    endpoint_ops.EndpointOps(ctx.settings, ctx.sessions).stop(endpoint.id)


@pytest.fixture
def admin(admin_factory):
    return admin_factory()


def token(client, url="/admin/endpoints/new/") -> str:
    return csrf_from(client.get(url).text)


def create_endpoint(client, **fields):
    data = {"name": "qwen", "model": "Qwen/Qwen3-0.6B", "service_type": "LLM", "server": "vllm",
            "api_type": "openai", "internal_port": str(free_port()), "base_url": "", "health_url": "",
            "command": FAKE_VLLM, "image": "", "gpu_memory_share": "0.5", **fields}
    return client.post("/admin/endpoints/new/", data={**data, "csrf_token": token(client)})


def endpoint(ctx, name="qwen") -> Endpoint:
    with ctx.sessions() as s:
        return s.query(Endpoint).filter_by(name=name).one()


def act(client, ctx, row, op):
    response = client.post(f"/admin/endpoints/action/{row.id}/{op}",
                           data={"csrf_token": token(client, "/admin/endpoints/")})
    assert response.status_code == 302
    assert ctx.jobs.wait_idle()
    return response


def last_job(ctx) -> Job:
    with ctx.sessions() as s:
        return s.query(Job).order_by(Job.id.desc()).first()


def live_status(ctx, name) -> str:
    collector = EndpointsCollector(ctx.settings, nvml=NO_GPU)
    for state in collector.source.refresh_now().value:
        if state.target.name == name:
            return state.status
    raise AssertionError(f"{name} not probed")


def test_vllm_subprocess_starts_for_real_runs_and_stops(admin):
    client, ctx = admin
    assert create_endpoint(client).status_code == 302
    row = endpoint(ctx)
    assert row.base_url == f"http://127.0.0.1:{row.internal_port}/v1"
    act(client, ctx, row, "start")
    job = last_job(ctx)
    assert (job.status, job.kind) == ("done", "endpoint-start"), job.message
    row = endpoint(ctx)
    assert row.status == "running" and process_alive(row.pid)
    assert live_status(ctx, "qwen") == "running"
    log_text = (Path(ctx.settings.state_dir) / "endpoints" / "qwen.log").read_text()
    assert "loading Qwen/Qwen3-0.6B (gpu share 0.5)" in log_text
    sd_file = targets_dir(ctx.settings) / "vllm-qwen.json"
    (group,) = json.loads(sd_file.read_text())
    assert group["targets"] == [f"127.0.0.1:{row.internal_port}"]
    # Scraped as part of this machine: its exporter's instance, the server kept apart by vllm_server.
    assert group["labels"] == {"job": "vllm", "endpoint": "qwen", "instance": ctx.settings.exporter_address,
                               "vllm_server": f"127.0.0.1:{row.internal_port}"}
    page = client.get("/admin/endpoints/").text
    assert "running" in page and f"/admin/endpoints/action/{row.id}/stop" in page

    delete = client.post("/admin/endpoints/delete/", data={"id": row.id, "csrf_token": token(client)},
                         follow_redirects=True)
    assert "stop it before deleting" in delete.text and endpoint(ctx).id == row.id

    act(client, ctx, row, "stop")
    stopped = endpoint(ctx)
    assert (stopped.status, stopped.pid) == ("stopped", None)
    assert not process_alive(row.pid)
    assert not sd_file.exists()
    assert live_status(ctx, "qwen") == "stopped"


def test_vllm_that_dies_while_loading_is_an_error_with_its_log(admin):
    client, ctx = admin
    create_endpoint(client, command=f"{sys.executable} -c \"import sys; print('CUDA out of memory'); sys.exit(1)\"")
    act(client, ctx, endpoint(ctx), "start")
    job, row = last_job(ctx), endpoint(ctx)
    assert job.status == "failed" and "CUDA out of memory" in job.message
    assert row.status == "error" and "CUDA out of memory" in row.last_error
    assert not (targets_dir(ctx.settings) / "vllm-qwen.json").exists()


def test_vllm_container_through_the_docker_sdk(admin, monkeypatch):
    client, ctx = admin
    fake = FakeDockerClient()
    monkeypatch.setattr(endpoint_ops, "docker_client_factory", lambda: fake)
    create_endpoint(client, command="", image="vllm/vllm-openai:latest", gpu_memory_share="0.4")
    row = endpoint(ctx)
    act(client, ctx, row, "start")
    assert last_job(ctx).status == "done", last_job(ctx).message
    call = fake.calls[0]
    port = row.internal_port
    assert call["image"] == "vllm/vllm-openai:latest" and call["detach"] is True
    assert call["command"] == ["Qwen/Qwen3-0.6B", "--port", str(port), "--gpu-memory-utilization", "0.4"]
    assert call["ports"] == {f"{port}/tcp": ("127.0.0.1", port)}
    assert call["device_requests"][0]["Capabilities"] == [["gpu"]]
    running = endpoint(ctx)
    assert running.status == "running" and running.container_id
    act(client, ctx, running, "stop")
    assert endpoint(ctx).status == "stopped" and endpoint(ctx).container_id == ""
    assert fake.containers.list(all=True) == []
    fake.close()


def test_docker_unavailable_is_a_clear_message(admin, monkeypatch):
    client, ctx = admin

    def no_docker():
        raise DockerException("Error while fetching server API version: socket not found")
    monkeypatch.setattr(endpoint_ops, "docker_client_factory", no_docker)
    create_endpoint(client, command="", image="vllm/vllm-openai:latest")
    act(client, ctx, endpoint(ctx), "start")
    assert last_job(ctx).status == "failed"
    assert "Docker is not available here" in last_job(ctx).message


def test_ollama_load_and_unload(admin):
    client, ctx = admin
    with FakeOllama() as ollama:
        ollama.state.install(fake_model("llama3.2:3b"))
        assert create_endpoint(client, name="llama", model="llama3.2:3b", server="ollama", api_type="ollama",
                               internal_port="", base_url=ollama.base_url, command="").status_code == 302
        row = endpoint(ctx, "llama")
        assert live_status(ctx, "llama") == "stopped"
        act(client, ctx, row, "load")
        assert last_job(ctx).status == "done", last_job(ctx).message
        assert "llama3.2:3b" in ollama.state.loaded
        assert endpoint(ctx, "llama").status == "running" and live_status(ctx, "llama") == "running"
        act(client, ctx, row, "unload")
        assert "llama3.2:3b" not in ollama.state.loaded
        assert endpoint(ctx, "llama").status == "stopped" and live_status(ctx, "llama") == "stopped"
        ollama.state.install(fake_model("ghost:1b"))
        assert create_endpoint(client, name="ghost", model="ghost:1b", server="ollama", api_type="ollama",
                               internal_port="", base_url=ollama.base_url, command="").status_code == 302
        ollama.state.remove("ghost:1b")  # deleted after the endpoint was configured
        act(client, ctx, endpoint(ctx, "ghost"), "load")
    assert last_job(ctx).status == "failed" and "not found" in last_job(ctx).message


@pytest.mark.parametrize("fields, message", [
    ({"base_url": "ftp://127.0.0.1:8000"}, "must be an http:// or https:// URL"),
    ({"base_url": "http://user:pw@127.0.0.1:8000"}, "must not carry credentials"),
    ({"internal_port": "-5"}, "port must be 1024-65535"),
    ({"internal_port": "99999"}, "port must be 1024-65535"),
    ({"gpu_memory_share": "7"}, "GPU memory share must be between 0.05 and 1"),
    ({"server": "tgi"}, "Not a valid choice"),
    ({"name": "../etc"}, "use letters, digits"),
    ({"name": "a;rm -rf"}, "use letters, digits"),
    ({"command": "vllm serve 'unclosed"}, "command: No closing quotation"),
    ({"model": ""}, "needs a model"),
    ({"model": "Qwen/Qwen3-32B"}, "Qwen/Qwen3-32B is not a downloaded Hugging Face model"),
])
def test_bad_endpoint_input_is_refused_and_changes_nothing(admin, fields, message):
    client, ctx = admin
    response = create_endpoint(client, **fields)
    assert response.status_code == 200 and message in response.text
    with ctx.sessions() as s:
        assert s.query(Endpoint).count() == 0


def test_duplicate_names_and_ports_are_refused(admin):
    client, ctx = admin
    port = str(free_port())
    assert create_endpoint(client, internal_port=port).status_code == 302
    assert "Already exists" in create_endpoint(client, internal_port=str(free_port())).text
    assert "already the port of endpoint qwen" in create_endpoint(client, name="other", internal_port=port).text
    with ctx.sessions() as s:
        assert s.query(Endpoint).count() == 1


def test_start_on_a_port_in_use_is_refused_and_changes_nothing(admin):
    client, ctx = admin
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        create_endpoint(client, internal_port=str(busy.getsockname()[1]))
        row = endpoint(ctx)
        response = client.post(f"/admin/endpoints/action/{row.id}/start",
                               data={"csrf_token": token(client, "/admin/endpoints/")}, follow_redirects=True)
    assert "is already in use" in response.text
    assert endpoint(ctx).status == "stopped" and endpoint(ctx).pid is None and last_job(ctx) is None


def test_actions_need_csrf(admin):
    client, ctx = admin
    create_endpoint(client)
    response = client.post(f"/admin/endpoints/action/{endpoint(ctx).id}/start", data={})
    assert response.status_code == 400 and last_job(ctx) is None


# -- the model: one of the downloaded models ---------------------------------------------

def options(page: str) -> dict[str, str]:
    """value -> label of the model field's options."""
    select = re.search(r'<select[^>]*id="model".*?</select>', page, re.S).group(0)
    return {html.unescape(v): html.unescape(label.strip())
            for v, label in re.findall(r'<option[^>]*value="([^"]*)"[^>]*>([^<]*)</option>', select)}


def test_model_field_offers_the_downloaded_models_of_every_source(admin_factory):
    with FakeOllama() as ollama:
        ollama.state.install(fake_model("llama3.2:3b"))
        ollama.state.install(fake_model("nomic-embed-text:latest"))
        client, ctx = admin_factory(OLLAMA_HOST=ollama.base_url)
        provider_file(ctx.settings.env, "torch", "resnet18.pth")
        page = client.get("/admin/endpoints/new/").text
        assert options(page) == {
            "": "(none)",
            "llama3.2:3b": "llama3.2:3b (ollama)",
            "nomic-embed-text:latest": "nomic-embed-text:latest (ollama)",
            "Qwen/Qwen3-0.6B": "Qwen/Qwen3-0.6B (huggingface)",
            "resnet18.pth": "resnet18.pth (torch)",
        }
        assert "unavailable" not in page
        # The form reads the admin's watched model snapshots: it asks Ollama nothing itself.
        asked = len(ollama.state.requests)
        assert options(client.get("/admin/endpoints/new/").text) == options(page)
        assert ollama.state.requests[asked:] == []
        assert create_endpoint(client, name="llama", model="llama3.2:3b", server="ollama", api_type="ollama",
                               internal_port="", command="").status_code == 302
        assert create_endpoint(client, name="llama-short", model="nomic-embed-text", server="ollama",
                               api_type="ollama", internal_port="", command="").status_code == 302
        assert create_endpoint(client).status_code == 302  # vllm + Qwen/Qwen3-0.6B from the HF cache
        assert create_endpoint(client, name="app", model="", server="fastapi", api_type="openAPI",
                               command="python -m app --port {port}").status_code == 302  # (none) still allowed
    with ctx.sessions() as s:
        assert {e.name: e.model for e in s.query(Endpoint)} == {
            "llama": "llama3.2:3b", "llama-short": "nomic-embed-text", "qwen": "Qwen/Qwen3-0.6B", "app": ""}


@pytest.mark.parametrize("fields, message", [
    ({"model": "meta-llama/Llama-3.1-8B"}, "meta-llama/Llama-3.1-8B is not a downloaded Hugging Face model"),
    ({"model": "llama3.2:3b"}, "llama3.2:3b is not a downloaded Hugging Face model"),  # vllm serves HF repos
    ({"server": "ollama", "api_type": "ollama", "internal_port": "", "command": ""},
     "Qwen/Qwen3-0.6B is not a downloaded Ollama model"),
    ({"server": "ollama", "api_type": "ollama", "internal_port": "", "command": "", "model": "mistral:7b"},
     "mistral:7b is not a downloaded Ollama model"),
    ({"server": "fastapi", "model": "nobody/nothing"}, "nobody/nothing is not a downloaded model"),
])
def test_a_model_that_is_not_downloaded_is_refused_and_changes_nothing(admin_factory, fields, message):
    with FakeOllama() as ollama:
        ollama.state.install(fake_model("llama3.2:3b"))
        client, ctx = admin_factory(OLLAMA_HOST=ollama.base_url)
        response = create_endpoint(client, **fields)
    assert response.status_code == 200 and message in response.text
    with ctx.sessions() as s:
        assert s.query(Endpoint).count() == 0


def test_ollama_down_the_form_still_offers_the_other_models_and_says_why(admin):
    client, ctx = admin  # its Ollama: a port where nothing listens
    page = client.get("/admin/endpoints/new/")
    assert page.status_code == 200
    assert "Ollama models are unavailable" in page.text and "the list shows the other models" in page.text
    assert options(page.text) == {"": "(none)", "Qwen/Qwen3-0.6B": "Qwen/Qwen3-0.6B (huggingface)"}
    assert create_endpoint(client).status_code == 302
    refused = create_endpoint(client, name="llama", model="llama3.2:3b", server="ollama", api_type="ollama",
                              internal_port="", command="")
    assert refused.status_code == 200
    assert "cannot check that llama3.2:3b is downloaded: Ollama models are unavailable" in refused.text
    with ctx.sessions() as s:
        assert [e.name for e in s.query(Endpoint)] == ["qwen"]


def test_an_endpoint_whose_model_was_deleted_stays_editable_until_its_model_changes(admin):
    client, ctx = admin
    create_endpoint(client)
    row = endpoint(ctx)
    shutil.rmtree(Path(ctx.settings.env["HF_HOME"]) / "hub" / "models--Qwen--Qwen3-0.6B")
    url = f"/admin/endpoints/edit/?id={row.id}"
    # The model list is a snapshot kept fresh by file events: the deletion shows within seconds.
    page = eventually(lambda: (lambda text: "(not downloaded)" in text and text)(client.get(url).text))
    assert options(page)["Qwen/Qwen3-0.6B"] == "Qwen/Qwen3-0.6B (not downloaded)"
    assert re.search(r'<option selected value="Qwen/Qwen3-0.6B"|<option value="Qwen/Qwen3-0.6B" selected', page)
    form = {"name": "qwen", "model": "Qwen/Qwen3-0.6B", "service_type": "LLM", "server": "vllm",
            "api_type": "openai", "internal_port": str(row.internal_port), "base_url": row.base_url,
            "health_url": "", "command": FAKE_VLLM, "image": "", "gpu_memory_share": "0.7",
            "csrf_token": token(client, url)}
    assert client.post(url, data=form).status_code == 302
    assert endpoint(ctx).gpu_memory_share == 0.7
    changed = client.post(url, data={**form, "model": "Qwen/Qwen3-8B"})
    assert changed.status_code == 200 and "Qwen/Qwen3-8B is not a downloaded Hugging Face model" in changed.text
    assert endpoint(ctx).model == "Qwen/Qwen3-0.6B"


# -- external APIs ------------------------------------------------------------------------

def create_api(client, **fields):
    data = {"name": "openrouter", "provider": "openrouter", "api_type": "openai",
            "base_url": "https://openrouter.ai/api/v1", "spec_url": "", "api_key_var": "",
            "admin_key_var": "", "quota_description": "20 req/min free tier",
            "cost_per_call_description": "per token", "manual_cost_month_usd": "",
            "probe_interval_seconds": "60", "new_api_key": KEY, "new_admin_key": "", **fields}
    return client.post("/admin/external_apis/new/",
                       data={**data, "csrf_token": token(client, "/admin/external_apis/new/")})


def test_stored_key_is_masked_everywhere_and_never_in_metrics_or_logs(admin, caplog):
    caplog.set_level(logging.DEBUG)
    client, ctx = admin
    with serving(make_handler(expected_key=KEY)) as url:
        assert create_api(client, base_url=f"{url}/api/v1").status_code == 302
        with ctx.sessions() as s:
            api = s.query(ExternalApi).one()
        assert api.api_key == KEY
        pages = [client.get("/admin/external_apis/").text,
                 client.get(f"/admin/external_apis/details/?id={api.id}").text,
                 client.get(f"/admin/external_apis/edit/?id={api.id}").text]
        for page in pages:
            assert KEY not in page and KEY[:12] not in page
        assert "••••WVU" not in pages[0] and "••••XWVU" in pages[0] and "••••XWVU" in pages[1]

        collector = ExternalApisCollector(Settings.from_env(ctx.settings.env))
        collector.source.refresh_now()
        text = Exposition([collector]).render().decode()
    assert 'wordslab_external_api_up{api="openrouter"} 1.0' in text
    assert 'wordslab_external_api_cost_month_usd{api="openrouter",source="provider"} 12.5' in text
    assert KEY not in text
    assert KEY not in caplog.text


def test_edit_keeps_or_forgets_the_stored_key(admin):
    client, ctx = admin
    create_api(client)
    with ctx.sessions() as s:
        api_id = s.query(ExternalApi).one().id
    form = {"name": "openrouter", "provider": "openrouter", "api_type": "openai",
            "base_url": "https://openrouter.ai/api/v1", "probe_interval_seconds": "120", "new_api_key": "",
            "csrf_token": token(client, f"/admin/external_apis/edit/?id={api_id}")}
    assert client.post(f"/admin/external_apis/edit/?id={api_id}", data=form).status_code == 302
    with ctx.sessions() as s:
        api = s.get(ExternalApi, api_id)
        assert (api.api_key, api.probe_interval_seconds) == (KEY, 120)
    client.post(f"/admin/external_apis/edit/?id={api_id}", data={**form, "clear_api_key": "y"})
    with ctx.sessions() as s:
        assert s.get(ExternalApi, api_id).api_key == ""


def test_key_variables_of_user_env_are_offered_by_name_only(admin):
    client, ctx = admin
    secrets = ctx.settings.workspace / ".secrets"
    secrets.mkdir()
    (secrets / "user-env.bashrc").write_text("export OPENROUTER_API_KEY=sk-or-v1-secretvalue123\n"
                                              "export HF_TOKEN=hf_secretvalue123456\n")
    page = client.get("/admin/external_apis/new/").text
    assert '<option value="OPENROUTER_API_KEY">' in page and '<option value="HF_TOKEN">' in page
    assert "secretvalue" not in page
    assert create_api(client, api_key_var="OPENROUTER_API_KEY", new_api_key="").status_code == 302
    assert create_api(client, name="x", api_key_var="NOT_OFFERED").status_code == 200


@pytest.mark.parametrize("fields, message", [
    ({"base_url": "file:///etc/passwd"}, "must be an http:// or https:// URL"),
    ({"base_url": "https://api.example.com/v1?key=abc"}, "must not carry credentials"),
    ({"base_url": ""}, "base URL is required"),
    ({"provider": "acme-ai"}, "Not a valid choice"),
    ({"manual_cost_month_usd": "-3"}, "cost must be between"),
    ({"probe_interval_seconds": "1"}, "probe interval must be between"),
    ({"new_api_key": "sk-abc def"}, "no spaces"),
    ({"name": "bad name"}, "use letters, digits"),
])
def test_bad_api_input_is_refused_and_changes_nothing(admin, fields, message):
    client, ctx = admin
    response = create_api(client, **fields)
    assert response.status_code == 200 and message in response.text
    assert KEY not in response.text
    with ctx.sessions() as s:
        assert s.query(ExternalApi).count() == 0


def test_duplicate_api_name_is_refused(admin):
    client, ctx = admin
    assert create_api(client).status_code == 302
    response = create_api(client)
    assert "Already exists" in response.text and KEY not in response.text


def test_database_file_is_owner_only(admin):
    _, ctx = admin
    mode = stat.S_IMODE(os.stat(ctx.settings.db_path).st_mode)
    assert mode == 0o600


def test_stop_after_an_admin_restart_signals_the_recorded_process_group(admin, monkeypatch):
    import subprocess
    from common.store.jobs import utcnow
    _, ctx = admin
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # naive UTC timestamps must not be read as local time
    time_module = __import__("time")
    time_module.tzset()
    try:
        # Started by a previous admin process: not among this process' children.
        server = subprocess.Popen([sys.executable, vllm_server.__file__, "--port", str(free_port())],
                                  stdout=subprocess.DEVNULL, start_new_session=True)
        with ctx.sessions.begin() as s:
            s.add(Endpoint(name="orphan", model="m", server="vllm", internal_port=free_port(),
                           pid=server.pid, status="running", started_at=utcnow()))
        with ctx.sessions() as s:
            row_id = s.query(Endpoint).filter_by(name="orphan").one().id
        endpoint_ops.EndpointOps(ctx.settings, ctx.sessions).stop(row_id)
        stopped_by_ops = server.poll() is not None or _exits(server)
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
        monkeypatch.delenv("TZ")
        time_module.tzset()
    assert stopped_by_ops
    assert endpoint(ctx, "orphan").status == "stopped"


def _exits(process, timeout: float = 15.0) -> bool:
    import subprocess
    try:
        process.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        return False
