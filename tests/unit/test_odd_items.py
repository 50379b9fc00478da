"""One odd item never hides the others, fails a scrape or fails a page (issue 9 A).

Real files on disk: a folder and a model file whose names are Latin-1 bytes (not UTF-8), a
symlink loop directly in the workspace, a Hugging Face model whose safetensors header is
valid JSON but not an object. Every other item must still be there, with its right value.
"""
from __future__ import annotations

import html
import json
import os
import re
import struct
import threading
import urllib.parse
from pathlib import Path

import pytest

from admin.ops import git_ops
from common.config import Settings
from common.readable import readable
from common.sources.file_models import scan_model_files
from common.sources.git_status import scan_statuses
from common.sources.hf_models import scan_hf_cache
from common.sources.model_dirs import hf_hub_cache, torch_checkpoints
from common.sources.ollama_client import OllamaClient, OllamaError
from exporter.collectors.models import ModelsCollector
from exporter.collectors.projects import ProjectsCollector
from tests.fakes.model_files import gguf_bytes, hf_cache_repo, hf_llm, llm_config, provider_file, safetensors_bytes
from tests.fakes.ollama_server import fake_ollama, sample_state
from tests.support.admin import csrf_from, logged_in_client, make_admin_app
from tests.support.git_repos import git, init_repo
from tests.support.metrics import exporter_metrics_containing, promtool_problems, refreshed, scrape

LATIN1_NAME = b"caf\xe9-notes"  # "café-notes" written by a Latin-1 system
SHOWN_NAME = "caf\\xe9-notes"  # how it is shown: the stray byte escaped


def header_bytes(header) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw


def odd_workspace(workspace: Path) -> None:
    init_repo(workspace / "good", {"README.md": "# good\n"})
    init_repo(Path(os.fsdecode(bytes(workspace) + b"/" + LATIN1_NAME)), {"notes.md": "x\n"})
    os.symlink("loop-b", workspace / "loop-a")
    os.symlink("loop-a", workspace / "loop-b")


def odd_models(env: dict) -> None:
    hf_llm(env)  # a healthy model, which must stay listed with its figures
    hf_cache_repo(hf_hub_cache(env), "org/list-header", {
        "config.json": json.dumps(llm_config()).encode(),
        "model.safetensors": header_bytes([1, 2])})
    provider_file(env, "torch", "resnet.pth")
    root = torch_checkpoints(env)
    (Path(os.fsdecode(bytes(root) + b"/" + LATIN1_NAME + b".pth"))).write_bytes(b"weights")


def test_readable_escapes_only_what_is_not_utf8():
    assert readable(os.fsdecode(LATIN1_NAME)) == SHOWN_NAME
    assert readable("café-notes") == "café-notes"
    assert readable("plain") == "plain"


def test_projects_latin1_name_and_symlink_loop_hide_nothing(vm_env):
    settings = Settings.from_env(vm_env)
    odd_workspace(settings.workspace)
    collector = ProjectsCollector(settings)
    for source in collector.sources:
        source.refresh_now()
    result = scrape(collector)
    assert promtool_problems(result.text) == ""
    assert result.value("wordslab_collector_success", collector="projects") == 1.0
    assert result.value("wordslab_project_status", project="good", status="no_remote") == 1.0
    assert result.value("wordslab_project_status", project=SHOWN_NAME, status="no_remote") == 1.0
    assert result.value("wordslab_project_changed_files", project=SHOWN_NAME) == 0.0
    # The loop is reported as what it is (unreadable), not silently dropped, not fatal.
    assert result.value("wordslab_project_status", project="loop-a", status="error") == 1.0
    statuses = scan_statuses(settings.workspace, settings.env)
    assert "symbolic links" in statuses["loop-a"].error


def test_models_list_header_and_latin1_file_hide_nothing(vm_env):
    odd_models(vm_env)
    collector = ModelsCollector(Settings.from_env(vm_env))
    for source in (collector.hf_source, collector.files_source, collector.config.source):
        source.refresh_now()
    result = scrape(collector)
    assert promtool_problems(result.text) == ""
    assert result.value("wordslab_source_refresh_success", source="models_huggingface") == 1.0
    assert result.value("wordslab_model_status", model="tiny-org/tiny-llama", status="ok") == 1.0
    assert result.value("wordslab_model_parameters", model="tiny-org/tiny-llama") > 0
    assert result.value("wordslab_model_status", model="org/list-header", status="error") == 1.0
    assert result.value("wordslab_model_parameters", model="org/list-header") is None
    assert result.value("wordslab_model_size_bytes", model="org/list-header") > 0
    assert result.value("wordslab_model_size_bytes", provider="torch", model=SHOWN_NAME + ".pth") == 7.0
    assert result.value("wordslab_model_size_bytes", provider="torch", model="resnet.pth") > 0


def test_hf_header_that_is_not_an_object_says_why(vm_env):
    odd_models(vm_env)
    records = {r.model: r for r in scan_hf_cache(hf_hub_cache(vm_env))}
    assert "not an object" in records["org/list-header"].problem


@pytest.mark.parametrize("header, why", [
    ({"w": [1, 2]}, "not an object"),
    ({"w": {"dtype": "F16", "shape": "2x2", "data_offsets": [0, 8]}}, "not a list of sizes"),
    ({"w": {"dtype": "F16", "shape": [2, 2], "data_offsets": [8, 0]}}, "not [start, end]"),
    # Siblings: what the safetensors library refuses before loading.
    ({"w": {"dtype": "F16", "shape": [10**6, 10**6], "data_offsets": [0, 8]}}, "does not fill"),
    ({"w": {"dtype": "F16", "shape": [10**30, 10**30], "data_offsets": [0, 8]}}, "more than 2**63 elements"),
    ({"w": {"dtype": "BF16", "shape": [4, 4], "data_offsets": [0, 8]}}, "does not fill"),
    ({"w": {"dtype": "F16", "shape": [True, 2], "data_offsets": [0, 8]}}, "not a list of sizes"),
    ({"w": {"dtype": 5, "shape": [2, 2], "data_offsets": [0, 8]}}, "not a type name"),
    ({"w": {"shape": [2, 2], "data_offsets": [0, 8]}}, "not a type name"),
])
def test_malformed_tensor_entries_are_an_error_of_that_model_only(vm_env, header, why):
    hf_llm(vm_env)
    hf_cache_repo(hf_hub_cache(vm_env), "org/odd", {"model.safetensors": header_bytes(header)})
    records = {r.model: r for r in scan_hf_cache(hf_hub_cache(vm_env))}
    assert records["tiny-org/tiny-llama"].status == "ok"
    assert records["org/odd"].status == "error" and why in records["org/odd"].problem


def test_truncated_safetensors_is_an_error_not_a_crash(vm_env):
    whole = safetensors_bytes({"w": ((4, 4), "float16")})
    hf_cache_repo(hf_hub_cache(vm_env), "org/cut", {"model.safetensors": whole[:20]})
    (record,) = scan_hf_cache(hf_hub_cache(vm_env))
    assert record.status == "error" and "truncated" in record.problem
    assert record.vram_estimate_bytes is None


def test_config_json_that_is_not_an_object_is_an_error_of_that_model(vm_env):
    hf_cache_repo(hf_hub_cache(vm_env), "org/cfg", {"config.json": b"[1, 2]",
                                                   "model.safetensors": safetensors_bytes({"w": ((2,), "float16")})})
    (record,) = scan_hf_cache(hf_hub_cache(vm_env))
    assert record.status == "error" and "config.json" in record.problem


def test_unreadable_hf_repo_folder_is_listed_as_error(vm_env):
    hf_llm(vm_env)
    cache = hf_hub_cache(vm_env)
    os.symlink("models--org--loop", cache / "models--org--loop")  # loops on itself
    records = {r.model: r for r in scan_hf_cache(cache)}
    assert records["tiny-org/tiny-llama"].status == "ok"
    assert records["org/loop"].status in ("error", "incomplete")


def test_admin_pages_render_odd_items_and_say_what_they_could_not_read(vm_env):
    settings = Settings.from_env(vm_env)
    odd_workspace(settings.workspace)
    odd_models(vm_env)
    vm_env["OLLAMA_API_BASE"] = "http://127.0.0.1:9"  # nothing listens: Ollama is said unavailable
    app = make_admin_app(vm_env, view_modules=("jobs", "projects", "models", "endpoints"))
    client = logged_in_client(app)
    try:
        projects = client.get("/admin/projects/")
        assert projects.status_code == 200
        assert 'id="project-good"' in projects.text and SHOWN_NAME in projects.text
        assert "loop-a" in projects.text and "symbolic links" in projects.text
        models = client.get("/admin/models/")
        assert models.status_code == 200
        assert "tiny-org/tiny-llama" in models.text and SHOWN_NAME + ".pth" in models.text
        row = models.text[models.text.index('data-model="org/list-header"'):]
        assert 'data-status="error"' in row[:200] and "not an object" in row[:row.index("</tr>")]
        form = client.get("/admin/endpoints/new/")
        assert form.status_code == 200
        assert "tiny-org/tiny-llama" in form.text and "org/list-header" in form.text
    finally:
        ctx = app.extensions["wordslab"]
        ctx.jobs.shutdown()
        ctx.engine.dispose()


def test_running_exporter_answers_200_with_every_odd_item(vm_env, tmp_path):
    settings = Settings.from_env(vm_env)
    odd_workspace(settings.workspace)
    odd_models(vm_env)
    # The projects and the models are two background sources: wait for both.
    text = exporter_metrics_containing(vm_env, tmp_path, (f'project="{SHOWN_NAME}"'.replace("\\", "\\\\"),
                                                          'model="org/list-header"'))
    assert 'wordslab_project_status{project="good",status="no_remote"} 1.0' in text
    assert 'wordslab_model_status{model="org/list-header",provider="huggingface",status="error"} 1.0' in text
    assert 'model="tiny-org/tiny-llama"' in text


def _scan_or_hang(scan, limit_s: float = 60.0):
    """Run `scan` on a thread; fails (instead of hanging the suite) when it never returns."""
    box = {}
    worker = threading.Thread(target=lambda: box.update(result=scan()), daemon=True)
    worker.start()
    worker.join(limit_s)
    assert not worker.is_alive(), "the scan is blocked reading a FIFO"
    return box["result"]


def test_fifo_named_like_a_model_is_an_error_and_never_blocks_the_scan(vm_env):
    """A FIFO (mkfifo, a socket's sibling) with a model's name, as a file model, as a Hugging
    Face blob and as its refs/main: opening it to read a header would wait forever for a writer,
    freezing the source and hiding every model. It is listed as what it is, the rest stays."""
    provider_file(vm_env, "torch", "good.safetensors", safetensors_bytes({"w": ((4, 4), "float16")}))
    root = torch_checkpoints(vm_env)
    for name in ("pipe.pt", "pipe.gguf", "pipe.safetensors", "pipe.keras"):
        os.mkfifo(root / name)
    records = {r.model: r for r in _scan_or_hang(lambda: scan_model_files(vm_env))}
    assert records["good.safetensors"].status == "ok" and records["good.safetensors"].parameters == 16
    for name in ("pipe.pt", "pipe.gguf", "pipe.safetensors", "pipe.keras"):
        assert records[name].status == "error" and "not a regular file" in records[name].problem
    hf_llm(vm_env)
    repo = hf_cache_repo(hf_hub_cache(vm_env), "org/piped", {"config.json": json.dumps(llm_config()).encode(),
                                                            "model.safetensors": b"replaced below"})
    blob = (repo / "snapshots").glob("*/model.safetensors").__next__().resolve()
    blob.unlink()
    os.mkfifo(blob)
    refs_main = repo / "refs" / "main"
    refs_main.unlink()
    os.mkfifo(refs_main)
    hf = {r.model: r for r in _scan_or_hang(lambda: scan_hf_cache(hf_hub_cache(vm_env)))}
    assert hf["tiny-org/tiny-llama"].status == "ok" and hf["tiny-org/tiny-llama"].parameters > 0
    assert hf["org/piped"].status == "error" and "not a regular file" in hf["org/piped"].problem


def _with_data(header: dict, data_size: int) -> bytes:
    return header_bytes(header) + bytes(data_size)


def test_tensor_data_cut_short_is_incomplete_and_a_newer_dtype_is_shown(vm_env):
    """The header is whole but the weights end early (a copy or download cut short; a header
    naming one tensor twice, which JSON keeps as the last, whose span then runs past the end):
    incomplete, no parameters claimed. A dtype newer than this reader is shown as it is."""
    hf_llm(vm_env)
    cache = hf_hub_cache(vm_env)
    hf_cache_repo(cache, "org/cut-data", {"model.safetensors": _with_data(
        {"w": {"dtype": "F16", "shape": [4, 4], "data_offsets": [0, 32]}}, 10)})
    twice = (b'{"w": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]},'
             b' "w": {"dtype": "F16", "shape": [4, 4], "data_offsets": [0, 32]}}')
    hf_cache_repo(cache, "org/named-twice", {"model.safetensors": struct.pack("<Q", len(twice)) + twice + bytes(8)})
    hf_cache_repo(cache, "org/new-dtype", {"model.safetensors": _with_data(
        {"w": {"dtype": "F9_NEW", "shape": [4, 4], "data_offsets": [0, 16]}}, 16)})
    records = {r.model: r for r in scan_hf_cache(cache)}
    assert records["tiny-org/tiny-llama"].status == "ok"
    for model in ("org/cut-data", "org/named-twice"):
        assert records[model].status == "incomplete" and "truncated" in records[model].problem
        assert records[model].parameters is None and records[model].vram_estimate_bytes is None
    assert records["org/new-dtype"].status == "ok"
    assert records["org/new-dtype"].parameters == 16 and records["org/new-dtype"].quantization == "F9_NEW"
    provider_file(vm_env, "torch", "cut.safetensors",
                  _with_data({"w": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}, 31))
    (cut,) = scan_model_files(vm_env)
    assert cut.status == "incomplete" and "truncated" in cut.problem


def _odd_admin(vm_env):
    app = make_admin_app(vm_env, view_modules=("jobs", "projects", "models"))
    client = logged_in_client(app)
    return app, client, csrf_from(client.get("/admin/projects/").text)


def _close(app):
    ctx = app.extensions["wordslab"]
    ctx.jobs.shutdown()
    ctx.engine.dispose()


@pytest.mark.parametrize("raw_name, shown", [
    (LATIN1_NAME, SHOWN_NAME),  # a Latin-1 system's "café-notes"
    (b"My Notes", "My Notes"),  # names made in a terminal or a file manager, not by a clone
    (b'say "hi" {v2}', 'say "hi" {v2}'),
])
def test_project_made_outside_the_admin_can_be_deleted_by_its_shown_name(vm_env, raw_name, shown):
    """The list links to the project by the name it shows; the delete page must render and
    delete exactly that folder (before: a name a clone may not take was refused as 'Refused
    name', and a Latin-1 name gave HTTP 500 on the confirm page)."""
    workspace = Settings.from_env(vm_env).workspace
    init_repo(workspace / "good", {"README.md": "# good\n"})
    repo = init_repo(Path(os.fsdecode(bytes(workspace) + b"/" + raw_name)), {"notes.md": "x\n"})
    (repo / "draft.md").write_text("unsaved\n")
    app, client, token = _odd_admin(vm_env)
    try:
        url = f"/admin/projects/{urllib.parse.quote(shown, safe='')}/delete/"
        assert url in html.unescape(client.get("/admin/projects/").text)
        page = client.post(url, data={"csrf_token": token})
        assert page.status_code == 200, page.text[:500]
        assert "draft.md" in page.text and f"Delete project {shown}?" in html.unescape(page.text)
        fingerprint = re.search(r'name="fingerprint" value="([^"]+)"', page.text).group(1)
        done = client.post(url, data={"csrf_token": token, "fingerprint": fingerprint, "confirm": "1"})
        assert done.status_code == 302 and not repo.exists()
        assert (workspace / "good").is_dir()
    finally:
        _close(app)


def test_model_file_delete_page_for_odd_files_renders_or_says_why(vm_env):
    """A Latin-1 named checkpoint is deleted by its shown name; a symlink loop named like a
    model gets a clear refusal, not HTTP 500."""
    odd = provider_file(vm_env, "torch", "placeholder.pth")
    latin1 = Path(os.fsdecode(bytes(odd.parent) + b"/" + LATIN1_NAME + b".pth"))
    latin1.write_bytes(b"weights")
    (odd.parent / "café--v2.pth").write_bytes(b"utf-8 name, a double dash")
    os.symlink("loop-b.pt", odd.parent / "loop-a.pt")
    os.symlink("loop-a.pt", odd.parent / "loop-b.pt")
    app, client, token = _odd_admin(vm_env)
    try:
        shown = urllib.parse.quote(SHOWN_NAME + ".pth", safe="")
        page = client.get(f"/admin/models/delete/?provider=torch&model={shown}")
        assert page.status_code == 200 and "7 bytes" in page.text
        done = client.post("/admin/models/delete/", data={"csrf_token": token, "provider": "torch",
                                                          "model": SHOWN_NAME + ".pth", "confirm": "1"})
        assert done.status_code == 302 and not latin1.exists() and odd.exists()
        page = client.get(f"/admin/models/delete/?provider=torch&model={urllib.parse.quote('café--v2.pth')}")
        assert page.status_code == 200 and "25 bytes" in page.text
        loop = client.get("/admin/models/delete/?provider=torch&model=loop-a.pt", follow_redirects=True)
        assert loop.status_code == 200 and "loop-a.pt" in loop.text and "cannot be resolved" in loop.text
        nul = client.get("/admin/models/delete/?provider=torch&model=a%00b.pth", follow_redirects=True)
        assert nul.status_code == 200 and "Not deleted" in nul.text and odd.exists()
    finally:
        _close(app)


@pytest.mark.parametrize("odd", [
    {"GET /api/ps": {"models": ["qwen3:8b", None, 5]}},  # entries that are not objects
    {"GET /api/ps": [1, 2]},  # the whole answer not an object
    {"GET /api/ps": b"<html>bad gateway</html>"},
    {"POST /api/show qwen3:8b-32k": [1, 2]},  # one model's show answer not an object
    {"POST /api/show qwen3:8b-32k": b"not json"},
    {"tags": [{"name": "odd:digest", "size": 5, "digest": ["not", "text"]},
              {"name": "odd:size", "size": None, "digest": "d" * 64}, "just a string", {"name": 7}]},
])
def test_one_odd_ollama_answer_never_hides_the_other_models(vm_env, odd):
    """Ollama forks, old versions and proxies answer oddly; before, one /api/ps entry that was
    not an object, a /api/show answer that was a JSON list or a digest of another type failed
    the whole listing: every Ollama model vanished."""
    state = sample_state()
    state.odd_tags = odd.pop("tags", [])
    state.odd_answers = odd
    with fake_ollama(state) as server:
        vm_env["OLLAMA_API_BASE"] = server.base_url
        collector = ModelsCollector(Settings.from_env(vm_env))
        result = scrape(refreshed(collector))
    assert promtool_problems(result.text) == ""
    assert result.value("wordslab_source_refresh_success", source="models_ollama") == 1.0
    assert result.value("wordslab_model_status", model="qwen3:8b", status="ok") == 1.0
    assert result.value("wordslab_model_status", model="nomic-embed-text:latest", status="ok") == 1.0
    assert result.value("wordslab_model_parameters", model="nomic-embed-text:latest") == 136_727_040
    assert result.value("wordslab_model_status", model="qwen3:8b-32k", status="ok") == 1.0
    if state.odd_tags:
        assert result.value("wordslab_model_size_bytes", model="odd:digest") == 5
        assert result.value("wordslab_model_status", model="odd:size", status="error") == 1.0


def test_ollama_answer_that_is_not_an_object_says_so(vm_env):
    state = sample_state()
    state.odd_answers = {"GET /api/tags": [{"name": "qwen3:8b"}]}
    with fake_ollama(state) as server:
        vm_env["OLLAMA_API_BASE"] = server.base_url
        with pytest.raises(OllamaError) as err:
            OllamaClient.from_env(vm_env).tags()
    assert "JSON list, not an object" in str(err.value)


def test_gguf_listing_a_tensor_twice_is_an_error_not_twice_the_parameters(vm_env, tmp_path):
    """llama.cpp refuses a GGUF file naming one tensor twice; its parameters were summed twice."""
    tensors = {"blk.0.attn_q.weight": ((64, 64), "float16"), "blk.0.attn_k.weight": ((64, 64), "float16")}
    whole = gguf_bytes(tmp_path, tensors=tensors)
    assert whole.count(b"blk.0.attn_k.weight") == 1
    provider_file(vm_env, "torch", "good.gguf", whole)
    provider_file(vm_env, "torch", "twice.gguf", whole.replace(b"blk.0.attn_k.weight", b"blk.0.attn_q.weight"))
    records = {r.model: r for r in scan_model_files(vm_env)}
    assert records["good.gguf"].status == "ok" and records["good.gguf"].parameters == 2 * 64 * 64
    assert records["twice.gguf"].status == "error" and "listed twice" in records["twice.gguf"].problem
    assert records["twice.gguf"].parameters is None


def test_ollama_name_that_is_not_text_renders_escaped_on_the_models_page(vm_env):
    """A name JSON gives as a lone surrogate ("caf\\udce9", an Ollama behind a proxy that
    escaped a Latin-1 byte): the Models page linked it for deletion and answered HTTP 500."""
    state = sample_state()
    state.odd_tags = [{"name": "caf\udce9:latest", "size": 7}]
    with fake_ollama(state) as server:
        vm_env["OLLAMA_API_BASE"] = server.base_url
        app, client, _ = _odd_admin(vm_env)
        try:
            page = client.get("/admin/models/")
            assert page.status_code == 200
            assert "qwen3:8b" in page.text and "caf\\xe9:latest" in page.text
        finally:
            _close(app)


def test_repo_set_to_hide_untracked_files_still_counts_them_and_a_delete_names_them(vm_env):
    """`git config status.showUntrackedFiles no` (as dotfile repos are set): git status hides new
    files, so the project read 0 changed files and its delete page said nothing would be lost."""
    settings = Settings.from_env(vm_env)
    repo = init_repo(settings.workspace / "dotfiles", {"a.txt": "x\n"})
    git(repo, "config", "status.showUntrackedFiles", "no")
    (repo / "new-notes.md").write_text("not committed yet\n")
    statuses = scan_statuses(settings.workspace, settings.env)
    assert statuses["dotfiles"].branch.untracked == ("new-notes.md",)
    loss = git_ops.what_would_be_lost(repo, env=settings.env)
    assert loss.uncommitted == ("new-notes.md",) and not loss.empty


def test_sharded_weights_with_a_shard_never_downloaded_are_incomplete(vm_env, tmp_path):
    """A download stopped between files (Ctrl-C in snapshot_download) leaves no partial blob,
    only fewer shards: it read as a complete model of half the parameters, with a VRAM estimate."""
    cache = hf_hub_cache(vm_env)
    config = json.dumps(llm_config()).encode()
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    shard = safetensors_bytes({"a": ((4, 4), "float16")})
    hf_cache_repo(cache, "org/half", {"config.json": config, "model.safetensors.index.json": json.dumps(index).encode(),
                                      "model-00001-of-00002.safetensors": shard})
    hf_cache_repo(cache, "org/whole", {"config.json": config, "model.safetensors.index.json": json.dumps(index).encode(),
                                       "model-00001-of-00002.safetensors": shard,
                                       "model-00002-of-00002.safetensors": safetensors_bytes({"b": ((4, 4), "float16")})})
    split = gguf_bytes(tmp_path)
    hf_cache_repo(cache, "org/gguf-split", {"m-Q4_K_M-00001-of-00003.gguf": split, "m-Q4_K_M-00003-of-00003.gguf": split})
    records = {r.model: r for r in scan_hf_cache(cache)}
    assert records["org/whole"].status == "ok" and records["org/whole"].parameters == 32
    half = records["org/half"]
    assert half.status == "incomplete" and "model-00002-of-00002.safetensors" in half.problem
    assert half.parameters is None and half.vram_estimate_bytes is None and half.size_bytes > 0
    gguf = records["org/gguf-split"]
    assert gguf.status == "incomplete" and "m-Q4_K_M-00002-of-00003.gguf" in gguf.problem
