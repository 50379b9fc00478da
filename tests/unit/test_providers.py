"""Provider clients against loopback fakes of Runpod, Vast.ai and Jarvislabs: lifecycle, state
mapping, billing, and failures (timeout, 401, 500, malformed JSON) that stay contained."""
import pytest

from common.config import Settings
from admin.cloud import vm_status
from admin.cloud.providers import (CreateRequest, ProviderAuthError, ProviderError, UnknownProvider,
                                        make_client, resolve_api_key)
from admin.cloud.providers import jarvislabs, runpod, vastai
from common.store import connect, init_db, session_factory
from common.store.vms import HostingPlatform, Vm, VmTemplate
from tests.fakes.cloud_providers import API_KEY, FAKES, FakeRunpod, FakeVast, serve

PROVIDERS = list(FAKES)


@pytest.fixture(params=PROVIDERS)
def provider_fake(request):
    fake = FAKES[request.param](hang_seconds=1.0)
    with serve(fake) as base_url:
        yield request.param, fake, base_url


def _client(provider, base_url, key=API_KEY, **kwargs):
    return make_client(provider, key, base_url, timeout=0.3, ports=(8888, 9877), **kwargs)


def _request(gpu="RTX_4090"):
    return CreateRequest(name="box", gpu=gpu, container_gb=20, volume_gb=50, image="wordslab/notebooks",
                         ports=(8888, 9877))


def test_lifecycle_maps_each_providers_states_to_ours(provider_fake):
    provider, fake, base_url = provider_fake
    client = _client(provider, base_url)
    created = client.create(_request())
    assert created.status == "starting"
    seen = []
    for _ in range(3):  # booting -> running
        seen.append(client.statuses()[created.instance_id].status)
    assert seen[-1] == "running" and set(seen) <= {"starting", "running"}
    client.stop(created.instance_id)
    stopped = client.statuses()[created.instance_id]
    assert stopped.status == "stopped"
    assert stopped.provider_state in ("EXITED", "exited", "Paused")
    started_id = client.start(created.instance_id)
    # Jarvislabs resumes on another machine with a new id; the others keep theirs.
    assert (started_id != created.instance_id) == (provider == "jarvislabs.ai")
    assert [client.statuses()[started_id].status for _ in range(2)][-1] == "running"
    client.terminate(started_id)
    assert started_id not in client.statuses() and created.instance_id not in client.statuses()
    # The key travels in the Authorization header only, never in a URL.
    assert fake.requests and all(API_KEY not in path for _, path, _ in fake.requests)
    assert all(auth == f"Bearer {API_KEY}" for _, _, auth in fake.requests)


@pytest.mark.parametrize("mapper, cases", [
    (runpod.map_state, {"RUNNING": "running", "EXITED": "stopped", "TERMINATED": "terminated",
                        "CREATED": "starting", "DEAD": "error", "???": "unknown"}),
    (vastai.map_state, {"loading": "starting", "running": "running", "stopped": "stopped",
                        "exited": "stopped", "offline": "unknown", "weird": "unknown"}),
    (jarvislabs.map_state, {"Running": "running", "Paused": "stopped", "Failed": "error",
                            "Creating": "starting", "Pausing": "stopping", None: "unknown"}),
])
def test_state_tables(mapper, cases):
    assert {state: mapper(state) for state in cases} == cases


def test_runpod_running_without_runtime_is_still_starting_and_urls_use_the_proxy():
    assert runpod.map_state("RUNNING", has_runtime=False) == "starting"
    assert runpod.proxy_url("abc", 8888) == "https://abc-8888.proxy.runpod.net"


def test_jarvislabs_urls_never_carry_the_jupyter_token():
    fake = FAKES["jarvislabs.ai"]()
    with serve(fake) as base_url:
        client = _client("jarvislabs.ai", base_url)
        created = client.create(_request("A100"))
        assert client.statuses()[created.instance_id].status == "starting"  # Creating
        state = client.statuses()[created.instance_id]
    assert state.status == "running"
    assert state.terminal_url == f"https://{created.instance_id}.notebooks.jarvislabs.net/lab"
    assert state.public_urls[9877] == f"https://{created.instance_id}-9877.notebooks.jarvislabs.net"
    assert "token" not in state.terminal_url


@pytest.mark.parametrize("failure, message", [
    ("timeout", "no answer within 0.3 s"),
    ("401", "API key refused (HTTP 401)"),
    ("500", "HTTP 500"),
    ("malformed", "malformed JSON"),
])
def test_failures_become_clear_provider_errors(provider_fake, failure, message):
    provider, fake, base_url = provider_fake
    fake.fail = failure
    with pytest.raises(ProviderError) as err:
        _client(provider, base_url).statuses()
    assert message in str(err.value)
    assert provider in str(err.value)
    assert API_KEY not in str(err.value)
    if failure == "401":
        assert isinstance(err.value, ProviderAuthError)


def test_wrong_key_is_refused_without_echoing_it(provider_fake):
    provider, _, base_url = provider_fake
    with pytest.raises(ProviderAuthError) as err:
        _client(provider, base_url, key="wrong-key-abcdef").statuses()
    assert "wrong-key" not in str(err.value)


def test_unreachable_provider_is_a_clear_error():
    from tests.support.env import free_port
    client = make_client("vast.ai", API_KEY, f"http://127.0.0.1:{free_port()}", timeout=0.3)
    with pytest.raises(ProviderError, match="cannot connect"):
        client.statuses()


def test_runpod_graphql_errors_and_vast_without_offers_are_clear():
    fake = FakeRunpod()
    with serve(fake) as base_url:
        with pytest.raises(ProviderError, match="runpod: pod not found"):
            _client("runpod.io", base_url).stop("nope")
    vast = FakeVast()
    with serve(vast) as base_url:
        with pytest.raises(ProviderError, match="no rentable offer for 1 x H100"):
            _client("vast.ai", base_url).create(_request("H100"))


def test_unknown_provider_and_missing_key():
    with pytest.raises(UnknownProvider, match="unknown provider 'aws': expected one of runpod.io"):
        make_client("aws", API_KEY)
    with pytest.raises(ProviderError, match="no API key for vast.ai"):
        make_client("vast.ai", None)


def test_billing_runpod_history_and_vast_invoices_jarvislabs_none():
    fake = FakeRunpod()
    fake.billing = {"pod1": {"gpuAmount": 3.0, "cpuAmount": 0.5, "diskAmount": 1.25, "totalAmount": 4.75},
                    "other": {"totalAmount": 99.0}}
    with serve(fake) as base_url:
        billed = _client("runpod.io", base_url).billing(["pod1"], 0, 10_000)
    assert billed["pod1"].compute_usd == 3.5 and billed["pod1"].storage_usd == 1.25
    assert billed["pod1"].total_usd == 4.75 and "other" not in billed
    vast = FakeVast()
    vast.charges = [{"type": "charge", "instance_id": 7, "amount": 1.5, "timestamp": 100},
                    {"type": "charge", "instance_id": 7, "amount": 2.0, "timestamp": 200},
                    {"type": "charge", "instance_id": 7, "amount": 9.0, "timestamp": 99_999},
                    {"type": "payment", "instance_id": 7, "amount": -50, "timestamp": 150}]
    with serve(vast) as base_url:
        billed = _client("vast.ai", base_url).billing(["7"], 0, 10_000)
    assert billed["7"].total_usd == 3.5 and billed["7"].compute_usd is None
    assert make_client("jarvislabs.ai", API_KEY).billing(["1"], 0, 1) is None


def test_key_resolution_order(tmp_path):
    env = {"MY_KEY": "from-my-var", "VAST_API_KEY": "from-vast-var"}
    assert resolve_api_key("vast.ai", "stored", "MY_KEY", env) == "stored"
    assert resolve_api_key("vast.ai", None, "MY_KEY", env) == "from-my-var"
    assert resolve_api_key("vast.ai", None, None, env) == "from-vast-var"
    assert resolve_api_key("jarvislabs.ai", None, None, env) is None
    (tmp_path / ".runpod").mkdir()
    (tmp_path / ".runpod" / "config.toml").write_text('[default]\napi_key = "from-runpod-config"\n')
    assert resolve_api_key("runpod.io", None, None, {}, tmp_path) == "from-runpod-config"


def test_one_failing_provider_leaves_the_other_vms_reported(tmp_path, vm_env):
    engine = connect(tmp_path / "dashboard.db")
    init_db(engine)
    sessions = session_factory(engine)
    settings = Settings.from_env({**vm_env, "WORDSLAB_VM_PROVIDER_TIMEOUT_SECONDS": "0.3"})
    good, bad = FakeRunpod(), FakeVast(hang_seconds=1.0)
    with serve(good) as good_url, serve(bad) as bad_url:
        pod = make_client("runpod.io", API_KEY, good_url).create(_request("NVIDIA RTX A6000"))
        vast_id = make_client("vast.ai", API_KEY, bad_url).create(_request()).instance_id
        with sessions.begin() as s:
            for provider, url, inst in (("runpod.io", good_url, pod.instance_id), ("vast.ai", bad_url, vast_id)):
                platform = HostingPlatform(name=provider, provider=provider, api_key=API_KEY, base_url=url)
                template = VmTemplate(name=f"t-{provider}", platform=platform, gpu="g")
                s.add(Vm(name=f"vm-{provider}", template=template, instance_id=inst, status="starting",
                         created_at=1.0))
        vm_status.refresh_statuses(sessions, settings)  # both booting
        bad.fail = "timeout"
        vm_status.refresh_statuses(sessions, settings)
        with sessions() as s:
            states = {vm.name: (vm.status, vm.last_error) for vm in s.query(Vm)}
    engine.dispose()
    assert states["vm-runpod.io"] == ("running", "")
    assert states["vm-vast.ai"][0] == "unknown"
    assert "no answer within 0.3 s" in states["vm-vast.ai"][1]
