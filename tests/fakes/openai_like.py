"""An OpenAI-compatible API on loopback, with OpenRouter's `/key` and OpenAI's organization costs.

Knobs (class attributes, changeable while serving): `mode` = ok | timeout | unauthorized |
server_error | malformed | insufficient_quota | rate_limited | payment_required;
`expected_key` (anything else gets OpenAI's 401 body, `echo_key` quoting it whole); `usage_monthly`, `limit_remaining`
(OpenRouter key); `cost_pages` (OpenAI costs, one list of daily amounts per page).
Every request is recorded (path with query, headers) so tests can check where keys went.
"""
from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

from tests.fakes.loopback import RecordingJsonHandler

QUOTA_BODY = {"error": {
    "message": "You exceeded your current quota, please check your plan and billing details.",
    "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}
RATE_BODY = {"error": {"message": "Rate limit reached for requests", "type": "requests",
                       "param": None, "code": "rate_limit_exceeded"}}


class OpenAILikeHandler(RecordingJsonHandler):
    mode = "ok"
    expected_key: str | None = None
    echo_key = False  # the 401 message quotes the whole refused key, as some providers do
    timeout_delay = 2.0
    usage_monthly = 12.5
    limit_remaining: float | None = 87.5
    cost_pages: list[list[float]] = [[1.25, 2.5], [0.25]]

    def do_GET(self):
        self.record()
        if self.mode == "timeout":
            time.sleep(self.timeout_delay)
            return self._json(200, {"object": "list", "data": []})
        if self.expected_key is not None:
            sent = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            if sent != self.expected_key:
                shown = sent if self.echo_key else f"{sent[:3]}***{sent[-4:]}" if sent else ""
                return self._json(401, {"error": {
                    "message": f"Incorrect API key provided: {shown}.", "type": "invalid_request_error",
                    "param": None, "code": "invalid_api_key"}})
        failure = {"unauthorized": (401, {"error": {"message": "Invalid key", "code": "invalid_api_key"}}),
                   "server_error": (500, {"error": {"message": "The server had an error"}}),
                   "malformed": (200, b'{"object": "list", "data": [tru'),
                   "insufficient_quota": (429, QUOTA_BODY),
                   "rate_limited": (429, RATE_BODY),
                   "payment_required": (402, {"error": {"message": "Insufficient credits", "code": 402}})}
        if self.mode in failure:
            return self._json(*failure[self.mode])
        path = urlsplit(self.path).path
        if path.endswith("/models"):
            return self._json(200, {"object": "list", "data": [
                {"id": "fake-gpt", "object": "model", "created": 1700000000, "owned_by": "fake"}]})
        if path.endswith("/key"):
            return self._json(200, {"data": {
                "label": "sk-or-v1-abc...xyz", "limit": 100, "usage": 40.0,
                "usage_daily": 1.0, "usage_weekly": 5.0, "usage_monthly": self.usage_monthly,
                "limit_remaining": self.limit_remaining, "is_free_tier": False}})
        if path.endswith("/organization/costs"):
            return self._costs(parse_qs(urlsplit(self.path).query))
        return self._json(404, {"error": {"message": f"no route {path}"}})

    def _costs(self, query: dict) -> None:
        page = int(query.get("page", ["0"])[0])
        start = int(query.get("start_time", ["0"])[0])
        amounts = self.cost_pages[page]
        data = [{"object": "bucket", "start_time": start + i * 86400, "end_time": start + (i + 1) * 86400,
                 "results": [{"object": "organization.costs.result",
                              "amount": {"value": v, "currency": "usd"}, "line_item": None,
                              "project_id": None}]}
                for i, v in enumerate(amounts)]
        more = page + 1 < len(self.cost_pages)
        self._json(200, {"object": "page", "data": data, "has_more": more,
                         "next_page": str(page + 1) if more else None})


def make_handler(**knobs) -> type[OpenAILikeHandler]:
    knobs.setdefault("requests", [])
    return type("ConfiguredOpenAILike", (OpenAILikeHandler,), knobs)
