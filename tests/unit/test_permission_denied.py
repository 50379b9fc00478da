"""Permission denied on one item (issue 9 A siblings): the scanners run as an unprivileged user
(a forked child that drops root, as an exporter not running as root would be) over a real tree
where one project, one Hugging Face repo and one model file cannot be read. Each is reported
as what it is; the others are all there.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import pytest

from common.sources.file_models import scan_dir
from common.sources.git_status import scan_statuses
from common.sources.hf_models import scan_hf_cache
from tests.fakes.model_files import hf_cache_repo, hf_llm, llm_config, safetensors_bytes
from tests.support.git_repos import init_repo

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child as another user")


def as_nobody(fn):
    """fn() in a forked child running as uid/gid 65534; its result (or exception) comes back pickled."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            payload = pickle.dumps(("ok", fn()))
        except BaseException as exc:  # noqa: BLE001 - sent to the parent as is
            payload = pickle.dumps(("error", repr(exc)))
        with os.fdopen(write, "wb") as out:
            out.write(payload)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as inp:
        kind, value = pickle.loads(inp.read())
    os.waitpid(pid, 0)
    assert kind == "ok", value
    return value


def open_to_all(path) -> None:
    for dirpath, dirs, files in os.walk(path):
        os.chmod(dirpath, 0o755)
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o644)


@pytest.fixture
def world():
    # Not under pytest's tmp_path: its parent is root's alone, so nobody could reach anything.
    base = Path(tempfile.mkdtemp(prefix="wordslab-perm-"))
    try:
        yield _world(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _world(base: Path):
    workspace = base / "workspace"
    init_repo(workspace / "open", {"a.txt": "a\n"})
    init_repo(workspace / "private", {"b.txt": "b\n"})
    cache = base / "hub"
    env = {"HF_HUB_CACHE": str(cache)}
    hf_llm(env)
    hf_cache_repo(cache, "org/private", {"config.json": json.dumps(llm_config()).encode(),
                                         "model.safetensors": safetensors_bytes({"w": ((4, 4), "float16")})})
    models = base / "torch"
    models.mkdir()
    (models / "open.safetensors").write_bytes(safetensors_bytes({"w": ((2, 2), "float16")}))
    (models / "private.safetensors").write_bytes(safetensors_bytes({"w": ((2, 2), "float16")}))
    open_to_all(base)
    # What the user keeps to themselves:
    os.chmod(workspace / "private", 0o700)
    os.chmod(cache / "models--org--private" / "blobs", 0o700)
    os.chmod(models / "private.safetensors", 0o600)
    return workspace, cache, models


def test_each_scanner_reports_the_unreadable_item_and_keeps_the_others(world):
    workspace, cache, models = world
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"}
    statuses = as_nobody(lambda: {n: (p.state, p.error) for n, p in scan_statuses(workspace, env).items()})
    assert statuses["open"][0] == "no_remote"
    assert statuses["private"][0] == "error" and "ermission denied" in statuses["private"][1]

    hf = as_nobody(lambda: {r.model: (r.status, r.problem, r.parameters) for r in scan_hf_cache(cache)})
    assert hf["tiny-org/tiny-llama"][0] == "ok" and hf["tiny-org/tiny-llama"][2] > 0
    assert hf["org/private"][0] == "error" and "ermission denied" in hf["org/private"][1]

    files = as_nobody(lambda: {r.model: (r.status, r.parameters) for r in scan_dir("torch", models)})
    assert files["open.safetensors"] == ("ok", 4)
    assert files["private.safetensors"][0] == "error"


def test_model_folder_that_cannot_be_listed_is_said_not_skipped(world):
    """A sub-folder of a provider's folder the exporter's user may not list: listed as one
    unreadable entry; before, its models vanished without a word."""
    _, _, models = world
    (models / "kept").mkdir()
    (models / "kept" / "x.safetensors").write_bytes(safetensors_bytes({"w": ((2, 2), "float16")}))
    os.chmod(models / "kept", 0o700)
    files = as_nobody(lambda: {r.model: (r.status, r.problem) for r in scan_dir("torch", models)})
    assert files["open.safetensors"][0] == "ok"
    assert files["kept/"][0] == "error" and "Permission denied" in files["kept/"][1]
    assert "kept/x.safetensors" not in files
