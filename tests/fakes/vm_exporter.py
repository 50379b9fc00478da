"""A remote VM's exporter as Prometheus sees it through the VM's file_sd target: /metrics with
the VM's GPU utilization, which a test sets (busy, idle, one low sample amid busy ones).
The real exporter cannot change its GPU's utilization mid-test (the fake NVML replays one
recording), and the VM's side is a provider's machine we cannot reach."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler


class FakeVmExporter:
    def __init__(self, utilization: float = 0.0, gpus: int = 1):
        self.utilization = utilization
        self.gpus = gpus
        self.scrapes = 0
        self.scraped = threading.Condition()

    def body(self) -> bytes:
        lines = ["# TYPE wordslab_gpu_utilization_ratio gauge"]
        lines += [f'wordslab_gpu_utilization_ratio{{gpu="{i}"}} {self.utilization}' for i in range(self.gpus)]
        return ("\n".join(lines) + "\n").encode()

    def wait_scrapes(self, count: int, timeout: float) -> bool:
        """Until `count` more scrapes happened (each sees the value set before it)."""
        with self.scraped:
            target = self.scrapes + count
            return self.scraped.wait_for(lambda: self.scrapes >= target, timeout)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                data = fake.body()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with fake.scraped:
                    fake.scrapes += 1
                    fake.scraped.notify_all()

        return Handler
