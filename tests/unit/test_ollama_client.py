"""The Ollama client against an Ollama-speaking server on loopback."""
import pytest

from common.sources.ollama_client import (OllamaClient, OllamaError, OllamaNotFound, ollama_base_url,
                                          resolve_ollama)
from tests.fakes.ollama_server import fake_ollama, sample_state
from tests.support.env import free_port


@pytest.mark.parametrize("env, expected", [
    ({}, "http://127.0.0.1:11434"),
    # host only, host:port, bind-all hosts: the ollama CLI's default scheme and port, on loopback
    ({"OLLAMA_HOST": "gpu-box"}, "http://gpu-box:11434"),
    ({"OLLAMA_HOST": "gpu-box:11500"}, "http://gpu-box:11500"),
    ({"OLLAMA_HOST": "0.0.0.0"}, "http://127.0.0.1:11434"),
    ({"OLLAMA_HOST": "0.0.0.0:11500"}, "http://127.0.0.1:11500"),
    ({"OLLAMA_HOST": ":11500"}, "http://127.0.0.1:11500"),
    ({"OLLAMA_HOST": "[::]:11434"}, "http://127.0.0.1:11434"),
    ({"OLLAMA_HOST": "::"}, "http://127.0.0.1:11434"),
    # IPv6
    ({"OLLAMA_HOST": "[::1]:11434"}, "http://[::1]:11434"),
    ({"OLLAMA_HOST": "::1"}, "http://[::1]:11434"),
    ({"OLLAMA_API_BASE": "http://[fd00::2]:8080/api"}, "http://[fd00::2]:8080"),
    # a scheme without a port: its own port, as the ollama CLI reads it
    ({"OLLAMA_HOST": "https://ollama.example.org"}, "https://ollama.example.org:443"),
    ({"OLLAMA_HOST": "http://gpu-box"}, "http://gpu-box:80"),
    ({"OLLAMA_HOST": " HTTP://gpu-box:8080 "}, "http://gpu-box:8080"),
    # trailing slash and trailing /api, the same rule for both variables
    ({"OLLAMA_HOST": "http://gpu-box:8080/"}, "http://gpu-box:8080"),
    ({"OLLAMA_HOST": "127.0.0.1:11434/api/"}, "http://127.0.0.1:11434"),
    ({"OLLAMA_API_BASE": "http://127.0.0.1:11434/api", "OLLAMA_HOST": "0.0.0.0:1"}, "http://127.0.0.1:11434"),
    ({"OLLAMA_API_BASE": "http://127.0.0.1:11434/"}, "http://127.0.0.1:11434"),
    ({"OLLAMA_API_BASE": "0.0.0.0:11434/api"}, "http://127.0.0.1:11434"),
    # a reverse-proxy prefix stays; credentials never travel in the URL
    ({"OLLAMA_API_BASE": "https://proxy.example.org/ollama/"}, "https://proxy.example.org:443/ollama"),
    ({"OLLAMA_API_BASE": "https://u:secret@proxy.example.org/ollama/api"}, "https://proxy.example.org:443/ollama"),
    ({"OLLAMA_API_BASE": "", "OLLAMA_HOST": "gpu-box"}, "http://gpu-box:11434"),
])
def test_base_url_from_the_platform_variables(env, expected):
    assert ollama_base_url(env) == expected
    address = resolve_ollama(env)
    assert address.problem == "" and address.base_url == expected
    assert address.var == ("OLLAMA_API_BASE" if env.get("OLLAMA_API_BASE") else "OLLAMA_HOST")
    assert f":{address.port}" in expected


@pytest.mark.parametrize("value, problem", [
    ("ftp://gpu-box", "OLLAMA_HOST='ftp://gpu-box' is not an http(s) address"),
    ("gpu-box:port", "OLLAMA_HOST='gpu-box:port' has no valid port (1-65535)"),
    ("gpu-box:70000", "OLLAMA_HOST='gpu-box:70000' has no valid port (1-65535)"),
])
def test_an_unusable_address_says_why(value, problem):
    assert resolve_ollama({"OLLAMA_HOST": value}).problem == problem


@pytest.fixture
def ollama():
    with fake_ollama(sample_state()) as server:
        yield server


def test_list_show_ps_and_delete(ollama):
    client = OllamaClient(ollama.base_url)
    assert [m["name"] for m in client.tags()] == ["qwen3:8b", "qwen3:8b-32k", "nomic-embed-text:latest"]
    shown = client.show("qwen3:8b-32k")
    assert shown["parameters"] == "num_ctx 32768"
    assert shown["model_info"]["llama.context_length"] == 8192
    assert client.ps() == []
    client.generate("qwen3:8b", "hi")
    assert [m["name"] for m in client.ps()] == ["qwen3:8b"]
    client.delete("qwen3:8b")
    assert "qwen3:8b" not in [m["name"] for m in client.tags()]
    with pytest.raises(OllamaNotFound, match="not found"):
        client.delete("qwen3:8b")


def test_keep_alive_loads_and_unloads_without_generating(ollama):
    client = OllamaClient(ollama.base_url)
    assert client.keep_alive("qwen3:8b", -1)["done_reason"] == "load"
    assert [m["name"] for m in client.ps()] == ["qwen3:8b"]
    assert client.keep_alive("qwen3:8b", 0)["done_reason"] == "unload"
    assert client.ps() == []
    with pytest.raises(OllamaNotFound, match="ghost:1b"):
        client.keep_alive("ghost:1b", -1)


def test_pull_sums_all_layers_into_one_progress_figure(ollama):
    client = OllamaClient(ollama.base_url)
    model = ollama.state.registry["tinyllama:latest"]
    steps = list(client.pull("tinyllama"))
    layered = [s for s in steps if s.layers]
    assert len(layered[-1].layers) == len(model.layers) > 2
    assert layered[-1].total == model.size
    assert steps[-1].status == "success" and steps[-1].completed == model.size and steps[-1].ratio == 1.0
    # Once every layer is announced, the figure only grows.
    announced = [s.completed for s in layered if len(s.layers) == len(model.layers)]
    assert announced == sorted(announced) and announced[0] == 0
    assert "tinyllama:latest" in [m["name"] for m in client.tags()]


def test_pull_of_an_unknown_model_is_a_clear_error(ollama):
    with pytest.raises(OllamaNotFound, match="does not exist"):
        list(OllamaClient(ollama.base_url).pull("no-such-model:7b"))


def test_unreachable_and_failing_servers_give_clear_errors(ollama):
    with pytest.raises(OllamaError, match="not reachable"):
        OllamaClient(f"http://127.0.0.1:{free_port()}").tags()
    ollama.state.fail_all = True
    with pytest.raises(OllamaError, match="internal error"):
        OllamaClient(ollama.base_url).tags()


def test_show_of_an_unknown_model(ollama):
    with pytest.raises(OllamaNotFound, match="'ghost' not found"):
        OllamaClient(ollama.base_url).show("ghost")


@pytest.mark.parametrize("cut, why", [("end", r"ended at 50 % \(\d+ of \d+ bytes\) without \"success\""),
                                      ("reset", "broke off")])
def test_pull_cut_at_half_is_an_error_saying_why(ollama, cut, why):
    ollama.state.pull_cut = cut
    client = OllamaClient(ollama.base_url)
    with pytest.raises(OllamaError, match=why):
        list(client.pull("tinyllama"))
    assert "tinyllama:latest" not in [m["name"] for m in client.tags()]
