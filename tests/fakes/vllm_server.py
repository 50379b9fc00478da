"""A tiny HTTP server speaking the parts of vLLM's OpenAI server the dashboard reads.

`/health` (200, or 503 once the engine is dead), `/version` (always 200: vLLM answers it
even with a dead engine, which is why it must not be used for health), `/v1/models` and
`/metrics` (Prometheus text with vllm: metrics). Runnable as a script so the admin's
subprocess path starts it for real:

    python tests/fakes/vllm_server.py --port 8000 --model my/model [--dead-file F] [--startup-delay S]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

METRICS = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{model_name="{model}"}} 0.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{{model_name="{model}"}} 0.0
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{{finished_reason="stop",model_name="{model}"}} {requests}
vllm:request_success_total{{finished_reason="length",model_name="{model}"}} 0.0
# HELP vllm:time_per_output_token_seconds Histogram of time per output token in seconds.
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_bucket{{le="+Inf",model_name="{model}"}} {tokens}
vllm:time_per_output_token_seconds_count{{model_name="{model}"}} {tokens}
vllm:time_per_output_token_seconds_sum{{model_name="{model}"}} {decode_seconds}
"""


class VllmHandler(BaseHTTPRequestHandler):
    model = "fake-org/fake-model"
    engine_dead = False
    dead_file: str | None = None  # the engine dies when this file appears
    # A steady load since the server started: one request a second decoding this many tokens
    # per second (0: idle, the counters stay at 0).
    load_tokens_per_second = 0.0
    started = time.time()

    def _counters(self) -> dict:
        busy = max(0.0, time.time() - self.started) if self.load_tokens_per_second else 0.0
        return {"requests": float(int(busy)), "tokens": float(int(busy * self.load_tokens_per_second)),
                "decode_seconds": float(int(busy * self.load_tokens_per_second)) / self.load_tokens_per_second
                if self.load_tokens_per_second else 0.0}

    def log_message(self, format, *args):
        pass

    def _dead(self) -> bool:
        return self.engine_dead or bool(self.dead_file and os.path.exists(self.dead_file))

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            self._send(503 if self._dead() else 200)
        elif self.path == "/version":
            self._send(200, json.dumps({"version": "0.0.0-fake"}).encode())
        elif self.path == "/v1/models":
            body = {"object": "list", "data": [{
                "id": self.model, "object": "model", "created": 1700000000, "owned_by": "vllm",
                "root": self.model, "parent": None, "max_model_len": 4096}]}
            self._send(200, json.dumps(body).encode())
        elif self.path == "/metrics":
            self._send(200, METRICS.format(model=self.model, **self._counters()).encode(),
                       "text/plain; version=0.0.4")
        else:
            self._send(404, json.dumps({"detail": "Not Found"}).encode())


def make_handler(model: str = VllmHandler.model, engine_dead: bool = False,
                 dead_file: str | None = None, load_tokens_per_second: float = 0.0) -> type[VllmHandler]:
    return type("ConfiguredVllmHandler", (VllmHandler,),
                {"model": model, "engine_dead": engine_dead, "dead_file": dead_file,
                 "load_tokens_per_second": load_tokens_per_second, "started": time.time()})


def _interrupt(*_):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", default=VllmHandler.model)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    parser.add_argument("--dead-file", default=None)
    parser.add_argument("--startup-delay", type=float, default=0.0, help="seconds before listening")
    args = parser.parse_args(argv)
    print(f"fake vllm: loading {args.model} (gpu share {args.gpu_memory_utilization})", flush=True)
    time.sleep(args.startup_delay)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.model, dead_file=args.dead_file))
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"fake vllm: serving on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    server.server_close()
    print("fake vllm: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
