"""Status and month cost of external AI APIs, with keys kept out of URLs, logs and labels.

A cheap authenticated GET per API at its own interval (default 60 s, not to burn rate
limits): `{base}/models` for openai-type, `/api/tags` for ollama-type, the spec URL for
openAPI. A 429 whose error is `insufficient_quota` (or a 402) means out of credit, not
rate limited. Cost this month comes hourly from the provider where a normal key can read
it (OpenRouter `/key` usage_monthly) or an admin key is given (OpenAI organization
costs, Anthropic cost report); otherwise from the figure entered in the admin.
"""
from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator, Mapping

from common import http_client, redact
from common.config import Settings
from common.store.services import ExternalApi
from common.sources import config_db

PROBE_TIMEOUT = (3.0, 10.0)
COST_INTERVAL_SECONDS = 3600.0
ERROR_TEXT_MAX = 200
API_STATES = ("ok", "out_of_credit", "rate_limited", "unauthorized", "error", "unreachable")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def user_env_path(settings: Settings) -> Path | None:
    return settings.workspace / ".secrets" / "user-env.bashrc" if settings.workspace else None


def read_user_env(settings: Settings) -> dict[str, str]:
    """`export NAME=value` lines of the platform's user key file (quotes handled, rest ignored)."""
    path = user_env_path(settings)
    try:
        text = path.read_text() if path else ""
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("export "):
            continue
        name, sep, raw = line[len("export "):].partition("=")
        name = name.strip()
        if not sep or not _VAR_NAME.match(name):
            continue
        try:
            parts = shlex.split(raw, comments=True)
        except ValueError:
            continue
        found[name] = parts[0] if parts else ""
    redact.remember_env(found)
    return found


def scrub(text: str, *secrets: str) -> str:
    """Text safe to show (common.redact, these secrets included), as one bounded line."""
    redact.remember(*secrets)
    return redact.scrub_line(text, ERROR_TEXT_MAX)


@dataclass(frozen=True)
class ApiTarget:
    name: str
    provider: str
    api_type: str
    base_url: str
    spec_url: str = ""
    api_key_var: str = ""
    api_key: str = field(default="", repr=False)
    admin_key_var: str = ""
    admin_key: str = field(default="", repr=False)
    manual_cost_month_usd: float | None = None
    probe_interval_seconds: float = 60.0
    quota_description: str = ""  # as entered in the admin
    cost_per_call_description: str = ""

    def __post_init__(self):
        redact.remember(self.api_key, self.admin_key)  # masked wherever they are echoed


@dataclass(frozen=True)
class ProbeOutcome:
    state: str  # one of API_STATES
    http_status: int  # 0: no HTTP answer
    duration_seconds: float
    at: float
    error: str = ""

    @property
    def up(self) -> bool:
        return self.state == "ok"


@dataclass(frozen=True)
class CostOutcome:
    usd: float | None
    source: str  # "provider" or "manual"
    credit_remaining_usd: float | None = None
    error: str = ""


@dataclass(frozen=True)
class ApiState:
    target: ApiTarget
    probe: ProbeOutcome | None
    cost: CostOutcome | None

    @property
    def out_of_credit(self) -> bool:
        if self.probe is not None and self.probe.state == "out_of_credit":
            return True
        remaining = self.cost.credit_remaining_usd if self.cost else None
        return remaining is not None and remaining <= 0


def _target_from_row(row: ExternalApi) -> ApiTarget:
    return ApiTarget(
        name=row.name, provider=row.provider, api_type=row.api_type,
        base_url=(row.base_url or "").rstrip("/"), spec_url=row.spec_url or "",
        api_key_var=row.api_key_var or "", api_key=row.api_key or "",
        admin_key_var=row.admin_key_var or "", admin_key=row.admin_key or "",
        manual_cost_month_usd=row.manual_cost_month_usd,
        probe_interval_seconds=float(row.probe_interval_seconds or 60),
        quota_description=row.quota_description or "",
        cost_per_call_description=row.cost_per_call_description or "")


def configured_apis(settings: Settings) -> list[ApiTarget]:
    """The external APIs configured in the admin, from the exporter's shared DB snapshot."""
    db = config_db.shared(settings.db_path)
    db.add_read("external_apis", config_db.all_rows(ExternalApi, _target_from_row), ())
    return list(db.fresh("external_apis"))


def resolve_key(stored: str, var: str, settings: Settings, user_env: Mapping[str, str]) -> str:
    """A key stored for this API wins; else the variable from the environment or user-env.bashrc."""
    if stored:
        return stored
    if var:
        return settings.get(var) or user_env.get(var, "")
    return ""


def auth_headers(target: ApiTarget, key: str) -> dict[str, str]:
    if not key:
        return {}
    if target.provider == "anthropic":
        return {"x-api-key": key, "anthropic-version": "2023-06-01"}
    return {"Authorization": f"Bearer {key}"}


def probe_url(target: ApiTarget) -> str:
    if target.api_type == "ollama":
        return f"{target.base_url}/api/tags"
    if target.api_type == "openAPI":
        return target.spec_url or f"{target.base_url}/openapi.json"
    return f"{target.base_url}/models"


def _error_of(response: http_client.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def classify(response: http_client.Response) -> tuple[str, str]:
    """(state, error text) of one HTTP answer."""
    status = response.status_code
    if 200 <= status < 300:
        try:
            response.json()
        except ValueError:
            return "error", f"HTTP {status} with malformed JSON"
        return "ok", ""
    error = _error_of(response)
    detail = str(error.get("message") or "")
    if status == 402 or (status == 429 and "insufficient_quota" in (error.get("code"), error.get("type"))):
        return "out_of_credit", f"out of credit (HTTP {status}) {detail}"
    if status == 429:
        return "rate_limited", f"rate limited (HTTP 429) {detail}"
    if status in (401, 403):
        return "unauthorized", f"key refused (HTTP {status}) {detail}"
    return "error", f"HTTP {status} {detail}"


def probe_api(target: ApiTarget, key: str, timeout=PROBE_TIMEOUT) -> ProbeOutcome:
    started = time.perf_counter()
    at = time.time()
    if not target.base_url.startswith(("http://", "https://")):
        return ProbeOutcome("error", 0, 0.0, at, "base URL is not http(s)")
    try:
        response = http_client.get(probe_url(target), headers=auth_headers(target, key),
                                   timeout=timeout, allow_redirects=False, carries_secret=True)
    except http_client.ForbiddenDestination as exc:
        return ProbeOutcome("error", 0, time.perf_counter() - started, at, scrub(str(exc), key))
    except http_client.Timeout:
        return ProbeOutcome("unreachable", 0, time.perf_counter() - started, at, "timed out")
    except http_client.RequestException as exc:
        kind = "connection failed" if isinstance(exc, http_client.ConnectionError) else type(exc).__name__
        return ProbeOutcome("unreachable", 0, time.perf_counter() - started, at, kind)
    duration = time.perf_counter() - started
    state, error = classify(response)
    if state == "unauthorized" and not key:
        error = f"no key configured ({target.api_key_var or 'no variable'}): {error}"
    return ProbeOutcome(state, response.status_code, duration, at, scrub(error, key))


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _get_json(url: str, headers: dict[str, str], params: dict | None, timeout) -> dict:
    response = http_client.get(url, headers=headers, params=params, timeout=timeout, allow_redirects=False,
                               carries_secret=True)
    if response.status_code != 200:
        refused = " (key refused)" if response.status_code in (401, 403) else ""
        raise ValueError(f"{url.rsplit('/', 1)[-1]} answered HTTP {response.status_code}{refused}")
    try:
        body = response.json()
    except ValueError:
        raise ValueError("malformed JSON in the cost answer") from None
    if not isinstance(body, dict):
        raise ValueError("unexpected cost answer")
    return body


def openrouter_cost(target: ApiTarget, key: str, timeout=PROBE_TIMEOUT) -> CostOutcome:
    data = _get_json(f"{target.base_url}/key", _bearer(key), None, timeout).get("data") or {}
    usage = data.get("usage_monthly")
    if usage is None:
        raise ValueError("/key has no usage_monthly")
    remaining = data.get("limit_remaining")
    return CostOutcome(float(usage), "provider",
                       float(remaining) if remaining is not None else None)


def _cost_results(url: str, headers: dict[str, str], params: dict, timeout) -> Iterator[dict]:
    """Every data[].results[] item of a paged cost answer, following has_more/next_page."""
    for _ in range(20):  # pages; a month is at most 31 daily buckets
        body = _get_json(url, headers, params, timeout)
        for bucket in body.get("data") or []:
            yield from bucket.get("results") or []
        if not body.get("has_more") or not body.get("next_page"):
            return
        params = {**params, "page": body["next_page"]}


def month_start(now: datetime) -> datetime:
    return now.astimezone(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def openai_cost(target: ApiTarget, admin_key: str, now: datetime, timeout=PROBE_TIMEOUT) -> CostOutcome:
    """Sum of OpenAI's organization costs buckets since the 1st of the month (UTC)."""
    params = {"start_time": int(month_start(now).timestamp()), "bucket_width": "1d", "limit": 31}
    results = _cost_results(f"{target.base_url}/organization/costs", _bearer(admin_key), params, timeout)
    return CostOutcome(sum(float((r.get("amount") or {}).get("value") or 0.0) for r in results), "provider")


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def anthropic_cost(target: ApiTarget, admin_key: str, now: datetime, timeout=PROBE_TIMEOUT) -> CostOutcome:
    """Sum of Anthropic's cost report daily buckets since the 1st of the month (UTC).

    Amounts are decimal strings in cents ("123.45" is $1.23). `ending_at` keeps buckets
    that end before it, so it is set a day past today's bucket: today's partial day is
    counted, and a bucket still to come holds nothing."""
    today = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    params = {"starting_at": _rfc3339(month_start(now)), "ending_at": _rfc3339(today + timedelta(days=2)),
              "bucket_width": "1d", "limit": 31}
    url = f"{target.base_url.removesuffix('/v1')}/v1/organizations/cost_report"
    cents = Decimal(0)  # decimal strings summed exactly, not as binary floats
    for result in _cost_results(url, auth_headers(target, admin_key), params, timeout):
        if str(result.get("currency") or "USD").upper() != "USD":
            raise ValueError(f"cost report in {result.get('currency')}, not USD")
        try:
            cents += Decimal(str(result.get("amount") or 0))
        except InvalidOperation:
            raise ValueError("cost report amount is not a number") from None
    return CostOutcome(float(cents / 100), "provider")


def _is_openrouter(target: ApiTarget) -> bool:
    return target.provider == "openrouter" or "openrouter.ai" in target.base_url


class DueProbes:
    """Each API probed when its own probe interval has passed; the last outcome otherwise."""

    def __init__(self, timeout=PROBE_TIMEOUT):
        self.timeout = timeout
        self._probes: dict[str, ProbeOutcome] = {}
        self._probed_at: dict[str, float] = {}  # by the caller's clock, which decides what is due

    def outcome(self, target: ApiTarget, key: str, now: float) -> ProbeOutcome:
        last = self._probed_at.get(target.name)
        if last is None or now - last >= target.probe_interval_seconds:
            self._probes[target.name] = probe_api(target, key, self.timeout)
            self._probed_at[target.name] = now
        return self._probes[target.name]


def probe_configured(settings: Settings, probes: DueProbes, now: float) -> list[tuple[ApiTarget, str, ProbeOutcome]]:
    """(target, resolved key, probe outcome) of every configured API, probing those due."""
    user_env = read_user_env(settings)
    found = []
    for target in configured_apis(settings):
        key = resolve_key(target.api_key, target.api_key_var, settings, user_env)
        found.append((target, key, probes.outcome(target, key, now)))
    return found


class ExternalApiMonitor:
    """Refresh function of the external_apis BackgroundSource: probes what is due, costs hourly."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time,
                 timeout=PROBE_TIMEOUT):
        self.settings = settings
        self.clock = clock
        self.timeout = timeout
        self.probes = DueProbes(timeout)
        self._costs: dict[str, tuple[float, CostOutcome]] = {}  # name -> (fetched at, outcome)

    def refresh(self) -> list[ApiState]:
        user_env = read_user_env(self.settings)
        now = self.clock()
        return [ApiState(target, outcome, self._cost(target, key, user_env, now))
                for target, key, outcome in probe_configured(self.settings, self.probes, now)]

    def _cost(self, target: ApiTarget, key: str, user_env: Mapping[str, str], now: float) -> CostOutcome | None:
        cached = self._costs.get(target.name)
        if cached is not None and now - cached[0] < COST_INTERVAL_SECONDS:
            return self._with_manual(target, cached[1])
        admin_key = resolve_key(target.admin_key, target.admin_key_var, self.settings, user_env)
        try:
            if _is_openrouter(target) and key:
                outcome = openrouter_cost(target, key, self.timeout)
            elif target.provider == "openai" and admin_key:
                outcome = openai_cost(target, admin_key, datetime.fromtimestamp(now, timezone.utc),
                                      self.timeout)
            elif target.provider == "anthropic" and admin_key:
                outcome = anthropic_cost(target, admin_key, datetime.fromtimestamp(now, timezone.utc),
                                         self.timeout)
            else:
                outcome = CostOutcome(None, "manual")
        except (http_client.RequestException, ValueError, TypeError, AttributeError) as exc:
            error = scrub(f"cost: {exc}", key, admin_key)
            previous = cached[1] if cached and cached[1].source == "provider" else None
            outcome = (CostOutcome(previous.usd, "provider", previous.credit_remaining_usd, error)
                       if previous else CostOutcome(None, "manual", None, error))
        self._costs[target.name] = (now, outcome)
        return self._with_manual(target, outcome)

    @staticmethod
    def _with_manual(target: ApiTarget, outcome: CostOutcome) -> CostOutcome:
        # The admin figure is read fresh so an edit shows without waiting an hour.
        if outcome.source == "manual":
            return CostOutcome(target.manual_cost_month_usd, "manual", None, outcome.error)
        return outcome
