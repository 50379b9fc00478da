"""Download, delete and benchmark models; usable without Flask (the views call these).

Every refusal is a ModelOpError with a message for the user, raised before anything is
written: ids are checked against a strict pattern, the hub is asked for the sizes first,
and a download that would not fit on the target filesystem is refused.
"""
from __future__ import annotations

import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from huggingface_hub import HfApi, scan_cache_dir, snapshot_download
from huggingface_hub.errors import (CacheNotFound, HfHubHTTPError, RepositoryNotFoundError,
                                    RevisionNotFoundError)

from common.readable import readable
from common.sources.file_models import MODEL_SUFFIXES
from common.sources.model_dirs import FILE_PROVIDER_DIRS, MODEL_PROVIDERS, hf_hub_cache, ollama_models
from common.sources.ollama_client import OllamaClient, OllamaError, OllamaNotFound

from admin.ops import archives
from admin.ops.file_download import (Checksum, check_https_url, download_file, file_name_from_url,
                                     torch_hash_prefix)
from admin.ops.model_catalog import catalog_entry, catalog_names
from admin.ops.model_errors import ModelOpError
from admin.validation import MAX_CHARS

HUB_TIMEOUT = 10.0
HUB_DEADLINE_SECONDS = 2 * HUB_TIMEOUT
TOKENS_UNIT = "tokens_per_second"
BENCHMARK_PROMPT = "Write one short sentence about the sea."

# name[/name[/name]][:tag], e.g. qwen3:8b, library/qwen3:8b-32k, hf.co/org/repo:Q4_K_M
# A registry may carry a port: registry:5000/ns/model:tag.
_OLLAMA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(:[0-9]{1,5}(?=/))?(/[A-Za-z0-9][A-Za-z0-9._-]*){0,2}"
                          r"(:[A-Za-z0-9][A-Za-z0-9._-]{0,127})?$")
_HF_REPO_ID = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._ +-]*(/[A-Za-z0-9_][A-Za-z0-9._ +-]*)*$")

DiskFree = Callable[[Path], int]
Report = Callable[..., None]  # progress.update(ratio, bytes_done=, bytes_total=, message=)


# -- validation ----------------------------------------------------------------------------

def check_provider(provider: str, allowed: tuple[str, ...] = MODEL_PROVIDERS) -> str:
    if provider not in allowed:
        raise ModelOpError(f"unknown provider {provider!r}: choose one of {', '.join(allowed)}")
    return provider


def _check_no_traversal(kind: str, value: str) -> None:
    if ".." in value or "--" in value or value.startswith(("/", "-", ".")):
        raise ModelOpError(f"{kind} {value!r} is not allowed: no '..', '--', or leading '/', '-', '.'")


def check_model_id(provider: str, model_id: str) -> str:
    model_id = (model_id or "").strip()
    if not model_id:
        raise ModelOpError("a model id is required")
    if len(model_id) > MAX_CHARS["model_id"]:
        raise ModelOpError(f"the model id is too long: at most {MAX_CHARS['model_id']} characters")
    _check_no_traversal("model id", model_id)
    pattern, hint = {
        "ollama": (_OLLAMA_NAME, "name[:tag], e.g. qwen3:8b or hf.co/org/repo:Q4_K_M"),
        "huggingface": (_HF_REPO_ID, "org/name, e.g. Qwen/Qwen3-0.6B"),
    }.get(provider, (_FILE_NAME, "a file name inside the provider's folder"))
    if not pattern.match(model_id):
        raise ModelOpError(f"model id {model_id!r} is not valid for {provider}: expected {hint} "
                           "(letters, digits, '.', '_', '-' only; no spaces or shell characters)")
    return model_id


def check_revision(revision: str | None) -> str | None:
    revision = (revision or "").strip() or None
    if revision is not None:
        if len(revision) > MAX_CHARS["revision"]:
            raise ModelOpError(f"the revision is too long: at most {MAX_CHARS['revision']} characters")
        _check_no_traversal("revision", revision)
        if not _REVISION.match(revision):
            raise ModelOpError(f"revision {revision!r} is not valid: a branch, tag or commit hash")
    return revision


# -- disk space ----------------------------------------------------------------------------

def disk_free(path: Path) -> int:
    """Free bytes on the filesystem that will hold `path` (its nearest existing ancestor)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def check_space(needed: int, target: Path, free_fn: DiskFree) -> None:
    free = free_fn(target)
    if needed > free:
        raise ModelOpError(f"not enough disk space: the download needs {_gib(needed)} but only "
                           f"{_gib(free)} is free on the filesystem of {target}; nothing was downloaded")


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**26 else f"{n / 2**20:.1f} MiB"


# -- download ------------------------------------------------------------------------------

@dataclass(frozen=True)
class FileSource:
    """Where a torch / fastai / keras file comes from and how it is checked."""

    url: str
    file_name: str
    checksum: Checksum | None
    hash_prefix: str | None  # torch hub's sha256 prefix in the file name

    @property
    def verified_by(self) -> str:
        if self.checksum:
            return f"{self.checksum.algorithm} {self.checksum.hexdigest}"
        return f"sha256 prefix {self.hash_prefix}" if self.hash_prefix else "size only (no checksum given)"


@dataclass(frozen=True)
class DownloadPlan:
    provider: str
    model: str
    revision: str | None
    target_dir: Path
    expected_bytes: int | None  # known up front for Hugging Face, streamed for Ollama
    source: FileSource | None = None  # torch, fastai, keras

    @property
    def target(self) -> str:
        return f"{self.provider}:{self.model}" + (f"@{self.revision}" if self.revision else "")


def plan_download(env: Mapping[str, str], provider: str, model_id: str, revision: str | None = None,
                  *, free_fn: DiskFree = disk_free, checksum: str | None = None) -> DownloadPlan:
    """Validate everything that can be checked before a job starts; raise ModelOpError if not.

    torch / fastai / keras take a catalog name (model_catalog.CATALOG) or an https URL, with an
    optional checksum (sha256 or md5 hex digest) for a URL.
    """
    provider = check_provider(provider)
    if provider in FILE_PROVIDER_DIRS:
        if revision:
            raise ModelOpError(f"{provider} downloads take no revision")
        return _plan_file_download(env, provider, model_id, checksum, free_fn)
    model_id = check_model_id(provider, model_id)
    revision = check_revision(revision)
    if provider == "ollama":
        if revision:
            raise ModelOpError("Ollama models take a tag (name:tag), not a revision")
        check_ollama_answers(env)
        return DownloadPlan(provider, model_id, None, ollama_models(env), None)
    cache = hf_hub_cache(env)
    expected = hub_repo_size(env, model_id, revision)
    check_space(expected, cache, free_fn)
    return DownloadPlan(provider, model_id, revision, cache, expected)


def _plan_file_download(env: Mapping[str, str], provider: str, model_id: str, checksum: str | None,
                        free_fn: DiskFree) -> DownloadPlan:
    model_id = (model_id or "").strip()
    entry = catalog_entry(provider, model_id)
    if entry is not None:
        if (checksum or "").strip():
            raise ModelOpError(f"{entry.name} is from the catalog, whose published checksum is used: "
                               "leave the checksum empty")
        source = FileSource(entry.url, entry.file_name, entry.checksum,
                            torch_hash_prefix(entry.file_name) if provider == "torch" else None)
        expected = entry.size_bytes
    elif model_id.startswith("https://") or "://" in model_id:
        url = check_https_url(model_id)
        name = check_model_id(provider, file_name_from_url(url))
        if not (name.endswith(MODEL_SUFFIXES) or archives.is_archive(name)):
            raise ModelOpError(f"{name!r} is not a weights file ({', '.join(MODEL_SUFFIXES)}) or a "
                               ".tgz/.tar model archive")
        source = FileSource(url, name, Checksum.parse(checksum),
                            torch_hash_prefix(name) if provider == "torch" else None)
        expected = None
    else:
        known = ", ".join(catalog_names(provider))
        raise ModelOpError(f"{model_id!r} is neither an https:// URL nor a {provider} catalog name "
                           f"({known})")
    target_dir = FILE_PROVIDER_DIRS[provider](env)
    if archives.is_archive(source.file_name) and provider != "fastai":
        raise ModelOpError("only fastai downloads may be archives (fastai unpacks its model zoo's .tgz)")
    final = _file_target(target_dir, source.file_name)
    if final.exists():
        raise ModelOpError(f"{final} already exists: delete it first to download it again")
    if expected:
        check_space(expected, target_dir, free_fn)
    return DownloadPlan(provider, source.file_name, None, target_dir, expected, source)


def _file_target(target_dir: Path, file_name: str) -> Path:
    """The file itself, or for an archive the folder it unpacks to (FASTAI_HOME/models/<stem>)."""
    if archives.is_archive(file_name):
        return target_dir / archives.archive_stem(file_name)
    return target_dir / file_name


def download_file_model(env: Mapping[str, str], plan: DownloadPlan, report: Report,
                        free_fn: DiskFree = disk_free) -> str:
    """Stream, verify, then rename (or unpack an archive) into the provider's folder."""
    source = plan.source
    final = _file_target(plan.target_dir, source.file_name)
    if not archives.is_archive(source.file_name):
        size = download_file(source.url, final, report, free_fn, checksum=source.checksum,
                             hash_prefix=source.hash_prefix)
        return f"downloaded {final} ({size} bytes, verified by {source.verified_by})"
    # fastai keeps archives in FASTAI_HOME/archive and unpacks them into FASTAI_HOME/models.
    archive = plan.target_dir.parent / "archive" / source.file_name
    archive.unlink(missing_ok=True)  # a leftover from an earlier, failed unpack
    size = download_file(source.url, archive, report, free_fn, checksum=source.checksum,
                         hash_prefix=source.hash_prefix)
    report(1.0, message="unpacking")
    count = archives.unpack(archive, final, free_fn)
    return f"downloaded {archive.name} ({size} bytes, verified by {source.verified_by}), unpacked {count} files into {final}"


def _hub(env: Mapping[str, str]) -> HfApi:
    return HfApi(endpoint=env.get("HF_ENDPOINT") or None, token=env.get("HF_TOKEN") or None)


def _within_deadline(fn, *args, **kwargs):
    """fn(...) in a worker, waited for HUB_DEADLINE_SECONDS in all: the hub client's timeout
    bounds each read, not the answer, and this runs inside an admin request.

    The worker is a daemon thread of its own, not a pool's: a call given up on (a hub trickling
    its answer) may go on reading, and a pool's workers are joined when the process exits, so
    one such call would keep the admin from ever exiting.
    """
    done = threading.Event()
    outcome: dict = {}

    def call() -> None:
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the waiting request, which re-raises it
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=call, name="hub-call", daemon=True).start()
    if not done.wait(HUB_DEADLINE_SECONDS):
        raise ModelOpError(f"the Hugging Face hub did not answer within {HUB_DEADLINE_SECONDS:g} s; "
                           "nothing was downloaded")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def hub_repo_size(env: Mapping[str, str], repo_id: str, revision: str | None) -> int:
    """Sum of the repo's file sizes, from the hub API (HF_ENDPOINT honoured)."""
    try:
        info = _within_deadline(_hub(env).repo_info, repo_id, revision=revision, files_metadata=True,
                                timeout=HUB_TIMEOUT)
    except ModelOpError:
        raise
    except RevisionNotFoundError:
        raise ModelOpError(f"Hugging Face model {repo_id!r} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise ModelOpError(f"unknown model id: Hugging Face has no model {repo_id!r} "
                           "(or it is private and no HF_TOKEN is set)") from None
    except HfHubHTTPError as exc:
        raise ModelOpError(f"the Hugging Face hub refused {repo_id!r}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # httpx connection errors and timeouts
        raise ModelOpError(f"the Hugging Face hub is not reachable ({type(exc).__name__})") from None
    return sum(s.size or 0 for s in info.siblings or [])


def download(env: Mapping[str, str], plan: DownloadPlan, report: Report, *,
             free_fn: DiskFree = disk_free) -> str:
    if plan.provider == "ollama":
        return pull_ollama(OllamaClient.from_env(env), plan.model, plan.target_dir, report, free_fn)
    if plan.source is not None:
        return download_file_model(env, plan, report, free_fn)
    return download_hf(env, plan, report)


def check_ollama_answers(env: Mapping[str, str]) -> None:
    """Raise ModelOpError when Ollama does not answer: a pull queued now could only fail."""
    client = OllamaClient.from_env(env)
    try:
        client.tags()
    except OllamaError as exc:
        raise ModelOpError(f"Ollama does not answer at {client.base_url} ({exc}): start it (ollama serve, "
                           "or the platform's start script) and download again; nothing was queued") from exc


def pull_ollama(client: OllamaClient, name: str, models_dir: Path, report: Report,
                free_fn: DiskFree = disk_free) -> str:
    """Pull with one progress figure over all layers; stop (closing the stream) if it cannot fit."""
    try:
        for step in client.pull(name):
            if step.new_layer:  # re-check as each layer's size becomes known
                check_space(sum(t - c for c, t in step.layers.values()), models_dir, free_fn)
            report(step.ratio, bytes_done=step.completed or None, bytes_total=step.total or None,
                   message=step.status)
    except OllamaNotFound as exc:
        raise ModelOpError(f"unknown model id: {exc}") from None
    except OllamaError as exc:
        raise ModelOpError(str(exc)) from None
    return f"pulled {name} into Ollama"


def download_hf(env: Mapping[str, str], plan: DownloadPlan, report: Report) -> str:
    """snapshot_download into the hub cache; progress is the bytes landing in the repo's blobs."""
    blobs = plan.target_dir / ("models--" + plan.model.replace("/", "--")) / "blobs"
    before = _dir_bytes(blobs)
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.5):
            got = max(0, _dir_bytes(blobs) - before)
            report(None, bytes_done=got, bytes_total=plan.expected_bytes, message="downloading")

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        path = snapshot_download(plan.model, revision=plan.revision, cache_dir=plan.target_dir,
                                 endpoint=env.get("HF_ENDPOINT") or None,
                                 token=env.get("HF_TOKEN") or None, etag_timeout=HUB_TIMEOUT)
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise ModelOpError(f"unknown model id: {str(exc).splitlines()[0]}") from None
    except Exception as exc:
        raise ModelOpError(f"download of {plan.model} failed: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    finally:
        done.set()
        watcher.join()
    total = plan.expected_bytes or _dir_bytes(blobs) - before
    report(1.0, bytes_done=total, bytes_total=total, message="downloaded")
    return f"downloaded {plan.model} to {path}"


def _dir_bytes(path: Path) -> int:
    try:
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    except OSError:
        return 0


# -- delete --------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeleteTarget:
    provider: str
    model: str
    revision: str | None
    description: str  # what would be removed, shown on the confirmation page
    # Hugging Face: the cached revisions (commit, refs) when the whole repo is targeted,
    # so the page can offer to delete just one.
    revisions: tuple[tuple[str, str], ...] = ()


def describe_delete(env: Mapping[str, str], provider: str, model: str,
                    revision: str | None = None) -> DeleteTarget:
    """Check the target exists and say exactly what a delete would remove."""
    provider = check_provider(provider)
    revision = check_revision(revision)
    if provider in FILE_PROVIDER_DIRS:  # a library of plain weight files
        # A file already there, whatever its name (café.pth, a Latin-1 name, quotes): the
        # name a download may take does not apply; _model_file keeps it inside the folder.
        model = (model or "").strip()
        if not model or len(model) > MAX_CHARS["model_id"]:
            raise ModelOpError(f"a model file name is required, as the Models list shows it "
                               f"(at most {MAX_CHARS['model_id']} characters)")
        if model.startswith("/") or ".." in model.split("/"):
            raise ModelOpError(f"model file {readable(model)!r} is not allowed: no '..' or leading '/'")
        path = _model_file(env, provider, model)
        return DeleteTarget(provider, model, None, f"the file {readable(str(path))} ({path.stat().st_size} bytes)")
    model = check_model_id(provider, model)
    if provider == "ollama":
        client = OllamaClient.from_env(env)
        try:
            client.show(model)
        except OllamaNotFound:
            raise ModelOpError(f"Ollama has no model {model!r}") from None
        except OllamaError as exc:
            raise ModelOpError(str(exc)) from None
        return DeleteTarget(provider, model, None, f"the Ollama model {model} (its blobs go once "
                                                   "no other model uses them)")
    if provider == "huggingface":
        folder = _hf_unreadable_folder(env, model, revision)
        if folder is not None:
            return DeleteTarget(provider, model, None, f"the whole folder {folder} (an incomplete or "
                                "unreadable download: huggingface_hub cannot list its revisions)")
        repo, revisions = _hf_revisions(env, model, revision)
        what = f"revision {revision} of " if revision else ""
        listed = () if revision else tuple((r.commit_hash, ", ".join(sorted(r.refs))) for r in revisions)
        return DeleteTarget(provider, model, revision,
                            f"{what}{model} in {repo.repo_path} ({len(revisions)} revision(s))", listed)


def delete_model(env: Mapping[str, str], target: DeleteTarget, *, confirmed: bool) -> str:
    if not confirmed:
        raise ModelOpError(f"not deleted: confirm that you want to remove {target.description}")
    if target.provider == "ollama":
        try:
            OllamaClient.from_env(env).delete(target.model)
        except OllamaError as exc:
            raise ModelOpError(str(exc)) from None
        return f"deleted Ollama model {target.model}"
    if target.provider == "huggingface":
        folder = _hf_unreadable_folder(env, target.model, target.revision)
        if folder is not None:
            shutil.rmtree(folder)
            return f"deleted {target.model} from the Hugging Face cache (its whole folder)"
        _, revisions = _hf_revisions(env, target.model, target.revision)
        info = scan_cache_dir(hf_hub_cache(env))
        strategy = info.delete_revisions(*(r.commit_hash for r in revisions))
        strategy.execute()
        return f"deleted {target.model} from the Hugging Face cache ({strategy.expected_freed_size} bytes freed)"
    path = _model_file(env, target.provider, target.model)
    path.unlink()
    return f"deleted {readable(str(path))}"


def _hf_unreadable_folder(env: Mapping[str, str], repo_id: str, revision: str | None) -> Path | None:
    """The repo's cache folder when huggingface_hub cannot read it (a blob deleted by hand, a
    download cut before its first file): only the whole folder can then be deleted."""
    folder = hf_hub_cache(env) / ("models--" + repo_id.replace("/", "--"))
    if revision is not None or folder.is_symlink() or not folder.is_dir():
        return None
    try:
        listed = any(r.repo_id == repo_id and r.repo_type == "model" for r in scan_cache_dir(folder.parent).repos)
    except CacheNotFound:
        listed = False
    return None if listed else folder


def _hf_revisions(env: Mapping[str, str], repo_id: str, revision: str | None):
    try:
        info = scan_cache_dir(hf_hub_cache(env))
    except CacheNotFound:
        raise ModelOpError("the Hugging Face cache is empty") from None
    repo = next((r for r in info.repos if r.repo_id == repo_id and r.repo_type == "model"), None)
    if repo is None:
        raise ModelOpError(f"{repo_id!r} is not in the Hugging Face cache")
    if revision is None:
        return repo, list(repo.revisions)
    chosen = [r for r in repo.revisions if r.commit_hash == revision or revision in r.refs]
    if not chosen:
        raise ModelOpError(f"{repo_id!r} has no cached revision {revision!r}")
    return repo, chosen


def _model_file(env: Mapping[str, str], provider: str, name: str) -> Path:
    """The model file the pages show as `name`, confined to the provider's folder (symlinks
    resolved); ModelOpError when there is none or it cannot be resolved (a symlink loop)."""
    try:
        root = FILE_PROVIDER_DIRS[provider](env).resolve()
        shown = _shown_file(root, name)
        # strict for a link: Python 3.13's lenient resolve() returns a looping link as is instead of raising.
        path = shown.resolve(strict=shown.is_symlink())
    except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError/ELOOP: a symlink loop; ValueError: a NUL
        raise ModelOpError(f"{readable(name)!r} cannot be resolved ({readable(str(exc))}): "
                           "remove it in a terminal") from None
    if root not in path.parents or not path.is_file() or not path.name.endswith(MODEL_SUFFIXES):
        raise ModelOpError(f"{readable(name)!r} is not a model file in {readable(str(root))}")
    return path


def _shown_file(root: Path, name: str) -> Path:
    """`root / name`, else the file whose relative path the pages show as `name` (`readable`
    escapes bytes that are not UTF-8, so such a name is not the path itself)."""
    path = root / name
    if os.path.lexists(path):
        return path
    for dirpath, _dirs, files in os.walk(root):
        for file in files:
            candidate = Path(dirpath) / file
            if readable(candidate.relative_to(root).as_posix()) == name:
                return candidate
    return path


# -- benchmark -----------------------------------------------------------------------------

def benchmark_ollama(env: Mapping[str, str], name: str) -> float:
    """Tokens per second of a tiny generation, from Ollama's eval_count / eval_duration (ns)."""
    name = check_model_id("ollama", name)
    try:
        reply = OllamaClient.from_env(env).generate(name, BENCHMARK_PROMPT)
    except OllamaError as exc:
        raise ModelOpError(str(exc)) from None
    speed = OllamaClient.tokens_per_second(reply)
    if speed is None:
        raise ModelOpError(f"Ollama did not report eval_count/eval_duration for {name}")
    return speed

