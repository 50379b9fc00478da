"""The one scrubbing point for text that leaves the process: labels, logs, pages, stored messages.

`scrub(text)` masks, in this order and in time linear in len(text):
- every known secret (`remember()`: configured API keys, provider keys, tokens, the admin
  password), also each line of a secret that spans lines, its URL-quoted forms and the forms a
  JSON answer quotes it in (`\\/`, `\\uXXXX`);
- common token shapes: `Bearer x`, `Basic x`, `sk-…`, `hf_…`, `ghp_…`, `github_pat_…`
  (random-looking: a capital and a digit), `xox?-…`, and the value of `token=`, `key=`, `password=`, `secret=` (and `api_key=`,
  `access_token=`… any name ending so) in query strings, forms and `name: value` text;
- the user-info of any `scheme://user:password@host` (all of it, except the user name of an
  ssh URL, as in `ssh://git@host`).

Every pattern here is linear: no nested or adjacent unbounded repetitions that can match the
same characters, so a 1 MB string costs a few milliseconds, never minutes.
"""
from __future__ import annotations

import functools
import logging
import re
import threading
from typing import Iterable, Mapping
import json
from urllib.parse import quote, quote_plus

MASK = "***"
# Shorter values are not masked as known secrets: they would mask ordinary words.
MIN_SECRET_CHARS = 6

# A URL scheme: bounded, so scanning back from "://" costs at most this many steps.
_SCHEME_MAX = 32
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_AUTHORITY_END = re.compile(r"[/?#\s\"'<>]")

_SECRET_NAME = r"[A-Za-z0-9_.-]{0,24}?(?:token|key|password|passwd|secret|pwd|signature|sig|auth)"
_TOKEN_SHAPES = re.compile(
    r"\b(?:[Bb]earer|BEARER|(?-i:Basic|Token))\s+[A-Za-z0-9._~+/=-]{8,}"
    # Prefixed keys are random: 16+ characters with a capital and a digit, so a project or model
    # called sk-learn-notes or hf-experiments keeps its name (lookaheads bounded: linear).
    r"|(?-i:\b(?:sk|rk|pk|hf|ghp|gho|ghu|ghs|ghr|glpat|github_pat)[_-]"
    r"(?=[\w-]{0,64}?[A-Z])(?=[\w-]{0,64}?[0-9])[\w-]{16,})"
    r"|(?-i:\bxox[abposr]-[0-9]{6,}-[\w-]{6,})"
    # name=value (query strings, forms, env lines) and "name": "value" / name: value
    rf"|(?P<name>{_SECRET_NAME})(?P<sep>=|[\"']?\s*:\s*[\"']?)(?P<value>[^\s&\"',;}}]+)",
    re.IGNORECASE)

# Environment variables whose values are secrets (OPENAI_API_KEY, HF_TOKEN, ..._PASSWORD).
SECRET_VAR = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASS|PAT|CREDENTIALS?|AUTH)$", re.IGNORECASE)

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_ordered: tuple[str, ...] = ()
_generation = 0  # bumped with each new secret: cached label scrubs start over


def _variants(secret: str) -> set[str]:
    """The secret, its URL-quoted forms (a path or query that quotes it), its JSON string forms
    (PHP's json_encode writes / as \\/, others \\u00e9) and each line of one pasted with a line
    break (a log line may hold one of them). Words of a passphrase are not masked alone."""
    as_json = json.dumps(secret)[1:-1]
    found = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret),
             as_json, as_json.replace("/", "\\/"), json.dumps(secret, ensure_ascii=False)[1:-1]}
    found.update(line.strip() for line in secret.splitlines())
    return {v for v in found if len(v) >= MIN_SECRET_CHARS}


def remember(*values: str | None) -> None:
    """Mask these values from now on wherever `scrub` runs (in this process)."""
    global _secrets, _ordered
    new = set()
    for value in values:
        if value and isinstance(value, str):
            new |= _variants(value.strip()) | _variants(value)
    global _generation
    with _lock:
        if new <= _secrets:
            return
        _secrets = _secrets | new
        # Longest first: a secret that contains another is masked whole.
        _ordered = tuple(sorted(_secrets, key=len, reverse=True))
        _generation += 1


def remember_env(env: Mapping[str, str]) -> None:
    """Remember the values of the variables named like secrets (`*_API_KEY`, `*_TOKEN`...)."""
    remember(*(value for name, value in env.items() if SECRET_VAR.search(name)))


def forget_all() -> None:
    """Tests only: start from no known secret."""
    global _secrets, _ordered, _generation
    with _lock:
        _secrets, _ordered = frozenset(), ()
        _generation += 1


def known_count() -> int:
    return len(_secrets)


def generation() -> int:
    """Changes whenever a secret is added: text cached before then may hold it."""
    return _generation


def strip_userinfo(text: str) -> str:
    """`https://user:tok@host/x` -> `https://host/x`; `ssh://git:pw@host` -> `ssh://git@host`.


    Linear: each "://" is looked at once, its scheme scanned back at most _SCHEME_MAX
    characters and its authority forward to the next '/', '?', '#', quote or space.
    """
    if "://" not in text:
        return text
    out: list[str] = []
    done = 0
    start = text.find("://")
    while start != -1:
        scheme_start = start
        while scheme_start > max(0, start - _SCHEME_MAX) and text[scheme_start - 1] in _SCHEME_CHARS:
            scheme_start -= 1
        scheme = text[scheme_start:start]
        netloc_start = start + 3
        end_match = _AUTHORITY_END.search(text, netloc_start)
        netloc_end = end_match.start() if end_match else len(text)
        authority = text[netloc_start:netloc_end]
        at = authority.rfind("@")
        if scheme and at != -1:
            user = authority[:at].split(":", 1)[0]
            # Only an ssh user name ("git@") is kept: over any other scheme it may be a token.
            keep = user + "@" if user and scheme.lower().endswith(("ssh", "ssh+git")) else ""
            out.append(text[done:netloc_start])
            out.append(keep)
            done = netloc_start + at + 1
        start = text.find("://", max(netloc_end, netloc_start))
    out.append(text[done:])
    return "".join(out)


def _mask_shape(match: re.Match) -> str:
    if match["name"]:
        return f"{match['name']}{match['sep']}{MASK}"
    return MASK


def scrub_known(text: str | None) -> str:
    """`text` with the known secrets masked, nothing else (for whole pages, whose forms and
    scripts may legitimately hold `token: ...` shapes)."""
    if not text:
        return text or ""
    text = str(text)
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def scrub(text: str | None) -> str:
    """`text` with every known secret, token shape and URL credential masked (see module doc)."""
    if not text:
        return text or ""
    text = _TOKEN_SHAPES.sub(_mask_shape, scrub_known(text))
    return strip_userinfo(text)


def scrub_line(text: str | None, limit: int) -> str:
    """`scrub(text)` as one line of at most `limit` characters (error texts shown as labels)."""
    return " ".join(scrub(text).split())[:limit]


def excerpt(text: str | None, limit: int) -> str:
    """`scrub(text)` as one line, cut to `limit` characters with "..." when longer. Masking comes
    first: a cut through a key would leave its first part, which no later scrub recognises."""
    line = " ".join(scrub(text).split())
    return line if len(line) <= limit else line[:limit] + "..."


def scrub_label(value: str) -> str:
    """`scrub` for metric label values, cached: the same values come back every scrape."""
    return _scrub_cached(value, _generation)


@functools.lru_cache(maxsize=16384)
def _scrub_cached(value: str, generation: int) -> str:
    return scrub(value)


def scrub_all(values: Iterable[str]) -> list[str]:
    return [scrub(v) for v in values]


class ScrubFilter(logging.Filter):
    """Rewrites each record's message (and traceback text) through `scrub` before any handler
    formats it. Installed on the handlers, so records of every logger are covered."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what we can show
            message = str(record.msg)
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Put a ScrubFilter on every handler of `logger` (default: the root logger)."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, ScrubFilter) for f in handler.filters):
            handler.addFilter(ScrubFilter())


def protect_process(env: Mapping[str, str]) -> None:
    """At a process's start, after logging is configured: scrub every log record (the root
    logger's handlers), send uncaught exceptions through logging too (so their text is
    scrubbed), and remember the secrets of the environment."""
    import sys

    install_log_filter()
    remember_env(env)
    log = logging.getLogger("uncaught")

    def log_uncaught(exc_type, exc, tb):
        log.error("uncaught exception", exc_info=(exc_type, exc, tb))

    def log_thread_uncaught(args):
        if args.exc_type is not SystemExit:
            log.error("uncaught exception in thread %s", getattr(args.thread, "name", "?"),
                      exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = log_uncaught
    threading.excepthook = log_thread_uncaught
