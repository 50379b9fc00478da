"""Anthropic's API on loopback: `/v1/models` for the probe and the Admin API cost report.

Shapes follow Anthropic's API reference (GET /v1/organizations/cost_report): `x-api-key` and
`anthropic-version` headers, `starting_at`/`ending_at` RFC 3339, `bucket_width` only "1d",
`limit` 1..31, `page` = the previous `next_page`; answers `data[].results[].amount` as a
decimal string in cents with `currency` "USD", `has_more`, `next_page`; errors as
`{"type": "error", "error": {"type", "message"}}`.

Knobs (class attributes): `api_key` (the probe's key), `admin_key` (the cost report's key),
`cost_mode` = ok | timeout | malformed, `timeout_delay`, `cost_pages` (one list of daily
amounts in cents, as strings, per page). Every request is recorded (path with query, headers).
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from tests.fakes.loopback import RecordingJsonHandler

VERSION = "2023-06-01"


def _error(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}}


def _parse_rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class AnthropicHandler(RecordingJsonHandler):
    api_key = "sk-ant-api03-probe"
    admin_key = "sk-ant-admin01-cost"
    cost_mode = "ok"
    timeout_delay = 2.0
    cost_pages: list[list[str]] = [["123.45", "250"], ["0.55"]]

    def do_GET(self):
        self.record()
        if self.headers.get("anthropic-version") != VERSION:
            return self._json(400, _error("invalid_request_error", "anthropic-version: header is required"))
        path = urlsplit(self.path).path
        if path == "/v1/models":
            if self._authorized(self.api_key):
                self._json(200, {"data": [{"type": "model", "id": "claude-fake-4", "display_name": "Claude Fake 4",
                                           "created_at": "2025-05-22T00:00:00Z"}],
                                 "has_more": False, "first_id": "claude-fake-4", "last_id": "claude-fake-4"})
        elif path == "/v1/organizations/cost_report":
            if self._authorized(self.admin_key):
                self._cost_report(parse_qs(urlsplit(self.path).query))
        else:
            self._json(404, _error("not_found_error", f"no route {path}"))

    def _authorized(self, expected: str) -> bool:
        if self.headers.get("x-api-key") == expected:
            return True
        self._json(401, _error("authentication_error", "invalid x-api-key"))
        return False

    def _cost_report(self, query: dict) -> None:
        if self.cost_mode == "timeout":
            time.sleep(self.timeout_delay)
        if self.cost_mode == "malformed":
            return self._json(200, b'{"data": [{"results": [{"amount": "12')
        try:
            start = _parse_rfc3339(query["starting_at"][0])
            _parse_rfc3339(query["ending_at"][0])
            limit = int(query.get("limit", ["7"])[0])
        except (KeyError, ValueError):
            return self._json(400, _error("invalid_request_error", "bad starting_at, ending_at or limit"))
        if query.get("bucket_width", ["1d"])[0] != "1d" or not 1 <= limit <= 31:
            return self._json(400, _error("invalid_request_error", "bucket_width must be 1d, limit 1..31"))
        page = int(query.get("page", ["page_0"])[0].removeprefix("page_"))
        first_day = sum(len(p) for p in self.cost_pages[:page])
        data = [{"starting_at": f"{start + timedelta(days=first_day + i):%Y-%m-%dT%H:%M:%SZ}",
                 "ending_at": f"{start + timedelta(days=first_day + i + 1):%Y-%m-%dT%H:%M:%SZ}",
                 "results": [{"currency": "USD", "amount": cents, "workspace_id": None, "description": None,
                              "cost_type": None, "context_window": None, "model": None,
                              "service_tier": None, "token_type": None}]}
                for i, cents in enumerate(self.cost_pages[page])]
        more = page + 1 < len(self.cost_pages)
        self._json(200, {"data": data, "has_more": more, "next_page": f"page_{page + 1}" if more else None})


def make_handler(**knobs) -> type[AnthropicHandler]:
    knobs.setdefault("requests", [])
    return type("ConfiguredAnthropic", (AnthropicHandler,), knobs)
