"""wordslab_endpoint_* from DB rows and discovered services, fresh per scrape, promtool-clean."""
from __future__ import annotations


from prometheus_client.parser import text_string_to_metric_families

from exporter.collectors.endpoints import EndpointsCollector
from common.config import Settings
from exporter.exposition import Exposition
from common.store import connect, init_db, session_factory
from common.store.services import Endpoint
from tests.fakes import vllm_server
from tests.fakes.loopback import serving
from tests.support.metrics import promtool_problems
from tests.support.env import free_port
from tests.unit.test_endpoints_probe import NO_GPU


def samples(text: str, name: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def scrape(collector) -> str:
    collector.source.refresh_now()
    return Exposition([collector]).render().decode()


def add_rows(settings, *rows):
    engine = connect(settings.db_path)
    init_db(engine)
    with session_factory(engine).begin() as s:
        s.add_all(rows)
    engine.dispose()


def test_configured_and_discovered_endpoints(vm_env):
    with serving(vllm_server.make_handler()) as up, serving(vllm_server.make_handler(engine_dead=True)) as dead:
        env = dict(vm_env, VLLM_SERVER_URL=f"{up}/v1", API_SERVER_PORT=str(free_port()))
        settings = Settings.from_env(env)
        add_rows(settings,
                 Endpoint(name="qwen", model="Qwen/Qwen3-8B", server="vllm", api_type="openai",
                          service_type="LLM", base_url=f"{dead}/v1", status="running", internal_port=8123),
                 Endpoint(name="embed", model="bge", server="fastapi", api_type="openAPI",
                          service_type="Embed", base_url=f"http://127.0.0.1:{free_port()}", status="stopped"))
        text = scrape(EndpointsCollector(settings, nvml=NO_GPU))

    info = samples(text, "wordslab_endpoint_info")
    names = {dict(k)["endpoint"] for k in info}
    assert names == {"qwen", "embed", "vllm", "hermes-agent"}
    assert (("api_type", "openai"), ("base_url", f"{dead}/v1"), ("endpoint", "qwen"), ("internal_port", "8123"),
            ("model", "Qwen/Qwen3-8B"), ("server", "vllm"), ("service_type", "LLM")) in info
    # Without a recorded port, the base URL's: the discovered ones and the embed row.
    ports = {dict(k)["endpoint"]: dict(k)["internal_port"] for k in info}
    assert ports["vllm"] == up.rsplit(":", 1)[1] and ports["hermes-agent"] == env["API_SERVER_PORT"]
    assert ports["embed"] != "" 
    status = samples(text, "wordslab_endpoint_status")
    current = {}
    for labels, value in status.items():
        labels = dict(labels)
        current.setdefault(labels["endpoint"], []).append((labels["status"], value))
    for endpoint, states in current.items():  # a state set: all four, exactly one is 1
        assert sorted(s for s, _ in states) == ["error", "running", "starting", "stopped"]
        assert sum(v for _, v in states) == 1, endpoint
    one = {e: next(s for s, v in states if v == 1) for e, states in current.items()}
    assert one == {"qwen": "error", "embed": "stopped", "vllm": "running", "hermes-agent": "stopped"}
    errors = {dict(k)["endpoint"]: dict(k)["error"] for k in samples(text, "wordslab_endpoint_last_error_info")}
    assert "engine dead" in errors["qwen"]
    assert "vllm" not in errors
    assert promtool_problems(text) == ""


def test_last_error_kept_after_recovery_and_removed_endpoint_vanishes(vm_env, tmp_path):
    dead_file = tmp_path / "dead"
    dead_file.touch()
    with serving(vllm_server.make_handler(dead_file=str(dead_file))) as url:
        settings = Settings.from_env(dict(vm_env, API_SERVER_PORT=str(free_port())))
        add_rows(settings, Endpoint(name="qwen", model="q", server="vllm", base_url=url, status="running"))
        collector = EndpointsCollector(settings, nvml=NO_GPU)
        assert samples(scrape(collector), "wordslab_endpoint_status")[
            (("endpoint", "qwen"), ("status", "error"))] == 1
        dead_file.unlink()
        text = scrape(collector)
        assert samples(text, "wordslab_endpoint_status")[(("endpoint", "qwen"), ("status", "running"))] == 1
        assert any("engine dead" in dict(k)["error"] for k in samples(text, "wordslab_endpoint_last_error_info"))

        engine = connect(settings.db_path)
        with session_factory(engine).begin() as s:
            s.query(Endpoint).delete()
        engine.dispose()
        text = scrape(collector)
    assert "qwen" not in text


def test_missing_db_is_nothing_configured_and_corrupt_db_does_not_break_the_scrape(vm_env):
    settings = Settings.from_env(dict(vm_env, API_SERVER_PORT=str(free_port())))
    collector = EndpointsCollector(settings, nvml=NO_GPU)
    text = scrape(collector)
    assert {dict(k)["endpoint"] for k in samples(text, "wordslab_endpoint_info")} == {"hermes-agent"}
    settings.db_path.write_bytes(b"this is not a sqlite database" * 100)
    text = scrape(collector)
    # The one DB reader fails and says so; the endpoints keep being probed from the last good rows.
    assert 'wordslab_source_refresh_success{source="config_db"} 0.0' in text
    assert 'wordslab_source_refresh_success{source="endpoints"} 1.0' in text
    assert 'wordslab_collector_success{collector="endpoints"} 1.0' in text
    assert {dict(k)["endpoint"] for k in samples(text, "wordslab_endpoint_info")} == {"hermes-agent"}


def test_a_row_that_cannot_be_probed_is_an_error_not_a_lost_source(vm_env):
    """An ollama row saved with an empty base URL (older admin) makes probing raise; the others still come."""
    with serving(vllm_server.make_handler()) as up:
        settings = Settings.from_env(dict(vm_env, API_SERVER_PORT=str(free_port())))
        add_rows(settings,
                 Endpoint(name="broken", model="llama3", server="ollama", api_type="ollama",
                          service_type="LLM", base_url="", status="running"),
                 Endpoint(name="qwen", model="q", server="vllm", api_type="openai",
                          service_type="LLM", base_url=f"{up}/v1", status="running"))
        collector = EndpointsCollector(settings, nvml=NO_GPU)
        text = scrape(collector)
    assert collector.source.snapshot().ok
    status = {dict(k)["endpoint"]: dict(k)["status"] for k, v in samples(text, "wordslab_endpoint_status").items()
              if v == 1}
    assert status["broken"] == "error" and status["qwen"] == "running"
    errors = {dict(k)["endpoint"]: dict(k)["error"] for k in samples(text, "wordslab_endpoint_last_error_info")}
    assert errors["broken"].startswith("probe failed:")
