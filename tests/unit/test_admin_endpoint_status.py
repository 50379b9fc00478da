"""The admin's endpoint list shows the live status and last error, from the exporter's probe,
written to the rows by the admin's background prober (driven here with refresh_now)."""
from __future__ import annotations

import contextlib
import html
import os
import re
import signal
import threading
import time
from http.server import ThreadingHTTPServer

import psutil

from admin.ops.endpoint_status import EndpointStatusRefresher, status_interval
from common.config import Settings
from common.sources.endpoint_probe import process_alive
from common.store.services import Endpoint
from tests.fakes.ollama_server import FakeOllama, OllamaState, fake_model, ollama_handler
from tests.unit.test_admin_services import (act, admin, admin_factory, create_endpoint, endpoint,  # noqa: F401
                                            last_job, live_status)
from tests.unit.test_endpoints_probe import NO_GPU


@contextlib.contextmanager
def ollama_on(port: int, state: OllamaState):
    """A fake Ollama on a given port: the one an endpoint was configured with, back up."""
    server = ThreadingHTTPServer(("127.0.0.1", port), ollama_handler(state))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def list_row(client, name: str) -> str:
    """The text of endpoint `name`'s row on the list page."""
    page = client.get("/admin/endpoints/").text
    texts = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html.unescape(row)))
             for row in re.findall(r"<tr.*?</tr>", page, re.S)]
    rows = [text for text in texts if f" {name} " in text]
    assert len(rows) == 1, f"no single row for {name}"
    return rows[0]


def wait_dead(pid: int) -> None:
    # SIGKILL is asynchronous: the process is gone (or a zombie) a moment later.
    for _ in range(200):
        if not process_alive(pid):
            return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} still alive")


def test_killed_vllm_shows_error_with_its_last_error_in_the_list_as_in_metrics(admin):
    client, ctx = admin
    create_endpoint(client)
    act(client, ctx, endpoint(ctx), "start")
    assert last_job(ctx).status == "done", last_job(ctx).message
    prober = EndpointStatusRefresher(ctx.settings, ctx.sessions, nvml=NO_GPU)
    assert prober.refresh_now().value == 0  # running, as recorded: nothing to write
    assert "running" in list_row(client, "qwen")

    pid = endpoint(ctx).pid
    os.kill(pid, signal.SIGKILL)  # the server dies on its own, no admin action
    wait_dead(pid)
    # A request never probes: until the prober runs, the row says what was last known.
    assert "running" in list_row(client, "qwen")
    assert live_status(ctx, "qwen") == "error"

    snapshot = prober.refresh_now()
    assert snapshot.ok and snapshot.value == 1
    row = endpoint(ctx)
    assert row.status == "error"
    assert "/health: connection refused" in row.last_error
    assert "fake vllm: serving on" in row.last_error  # the tail of its log
    shown = list_row(client, "qwen")
    assert "error" in shown and "running" not in shown
    assert "/health: connection refused" in shown and "fake vllm: serving on" in shown
    assert not psutil.pid_exists(pid)  # our dead child was reaped, not left a zombie

    # /metrics, probing on its own from the row the prober wrote, says the same.
    assert live_status(ctx, "qwen") == "error"
    assert prober.refresh_now().value == 0  # stable: nothing flips on the next round

    act(client, ctx, row, "stop")  # stop still cleans up after a dead server
    assert endpoint(ctx).status == "stopped" and endpoint(ctx).pid is None


def test_ollama_down_is_an_error_until_it_is_back_and_the_error_text_is_kept(admin_factory):
    with FakeOllama() as ollama:
        ollama.state.install(fake_model("llama3.2:3b"))
        client, ctx = admin_factory(OLLAMA_HOST=ollama.base_url)
        create_endpoint(client, name="llama", model="llama3.2:3b", server="ollama", api_type="ollama",
                        internal_port="", command="")
        assert endpoint(ctx, "llama").base_url == ollama.base_url  # empty: the platform's Ollama
        act(client, ctx, endpoint(ctx, "llama"), "load")
        assert endpoint(ctx, "llama").status == "running"
        port = int(ollama.base_url.rsplit(":", 1)[1])
    prober = EndpointStatusRefresher(ctx.settings, ctx.sessions, nvml=NO_GPU)
    for _ in range(2):  # Ollama gone: error, and it stays error (no flip to stopped)
        prober.refresh_now()
        row = endpoint(ctx, "llama")
        assert (row.status, live_status(ctx, "llama")) == ("error", "error")
    assert "is not reachable" in row.last_error
    assert "error" in list_row(client, "llama") and "is not reachable" in list_row(client, "llama")

    back = OllamaState()
    back.install(fake_model("llama3.2:3b"))
    back.loaded["llama3.2:3b"] = time.time() + 600
    with ollama_on(port, back):
        prober.refresh_now()
        row = endpoint(ctx, "llama")
        assert (row.status, live_status(ctx, "llama")) == ("running", "running")
        assert "is not reachable" in row.last_error  # the last error is kept after recovery


def test_a_stale_probe_never_overwrites_what_an_action_wrote_meanwhile(admin):
    client, ctx = admin
    create_endpoint(client)
    prober = EndpointStatusRefresher(ctx.settings, ctx.sessions, nvml=NO_GPU)
    [seen] = prober._read()
    time.sleep(0.001)  # updated_at has microseconds: the action's write gets a later stamp
    with ctx.sessions.begin() as s:  # an action's job moves the row after the probe read it
        s.query(Endpoint).filter_by(name="qwen").one().status = "starting"
    assert prober._write(seen, "error", "stale") == 0
    assert (endpoint(ctx).status, endpoint(ctx).last_error) == ("starting", "")
    [fresh] = prober._read()
    assert prober._write(fresh, "error", "current") == 1
    assert (endpoint(ctx).status, endpoint(ctx).last_error) == ("error", "current")


def test_interval_is_configurable_and_zero_turns_the_thread_off(vm_env):
    def interval(value=None):
        env = dict(vm_env) if value is None else {**vm_env, "WORDSLAB_ENDPOINT_STATUS_INTERVAL_SECONDS": value}
        return status_interval(Settings.from_env(env))
    assert (interval(), interval("30"), interval("0"), interval("soon")) == (10.0, 30.0, 0.0, 10.0)
    settings = Settings.from_env({**vm_env, "WORDSLAB_ENDPOINT_STATUS_INTERVAL_SECONDS": "0"})
    off = EndpointStatusRefresher(settings, sessions=None, nvml=NO_GPU)
    off.start()
    assert off.source._thread is None


def test_the_list_page_says_whether_status_is_live(admin):
    client, ctx = admin
    note = client.get("/admin/endpoints/").text
    assert "Live status probing is off" in note


def test_a_failed_starts_error_is_kept_until_the_endpoint_is_up_or_restarted(admin):
    """'cannot run ... (is vLLM installed?)' says what to do; the probe that follows only finds
    nothing listening. The list and /metrics keep the start error."""
    from common.sources.endpoint_probe import EndpointProber, configured_targets
    client, ctx = admin
    create_endpoint(client, command="/nonexistent/vllm serve {model} --port {port}")
    act(client, ctx, endpoint(ctx), "start")
    row = endpoint(ctx)
    assert row.status == "error" and "is vLLM installed?" in row.last_error
    start_error = row.last_error

    prober = EndpointStatusRefresher(ctx.settings, ctx.sessions, nvml=NO_GPU)
    for _ in range(2):
        prober.refresh_now()
    assert (endpoint(ctx).status, endpoint(ctx).last_error) == ("error", start_error)
    assert start_error in list_row(client, "qwen")
    [state] = [s for s in EndpointProber(ctx.settings, NO_GPU).refresh() if s.target.name == "qwen"]
    assert (state.status, state.error) == ("error", start_error)
    assert configured_targets(ctx.settings)[0].recorded_error == start_error
