"""Loopback HTTP servers speaking the parts of Runpod's, Vast.ai's and Jarvislabs' APIs our
clients use, with each provider's instance state machine and failure knobs.

    fake = FakeRunpod()
    with serve(fake) as base_url: ...           # or world.serve(fake.handler())
    fake.fail = "timeout" | "401" | "500" | "malformed" | "echo_key" | "echo_key_late"
                | "echo_key_escaped" | None
                                   # echo_key: a 400 whose body quotes the Authorization header;
                                   # _late: the bare key after 145 characters (a cut at 160 halves it);
                                   # _escaped: as PHP's json_encode writes it (a slash as backslash-slash) and URL-quoted (%2B)
    fake.delay_seconds = 14        # a slow provider: every call answers after this long
    fake.hidden = {"pod1"}         # list answers leave these instances out (a provider that lies)
    fake.lose_create_answer = 502  # rent the next create, then answer this status instead (a
                                   # create the provider accepted but whose answer was lost)
    fake.on_call = fn              # fn(method, path) called after the call was done, before answering
    fake.watch_db = path           # at each call, check nobody holds this SQLite file's write lock:
                                   # fake.calls_under_db_lock lists the calls made inside a write
                                   # transaction (there must be none)

State machines (one status read moves a booting instance on):
    Runpod:     create -> RUNNING (no runtime, then runtime) -> podStop EXITED -> podResume RUNNING;
                podTerminate drops the pod from myself.pods.
    Vast.ai:    asks/ -> actual_status loading -> running -> {"state":"stopped"} exited
                -> {"state":"running"} running; DELETE drops it.
    Jarvislabs: create -> Creating -> Running -> misc/pause Paused -> resume Running;
                misc/destroy drops it.
"""
from __future__ import annotations

import itertools
import json
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, quote, urlsplit

from tests.fakes.loopback import send_json, serving

FAILURES = ("timeout", "401", "500", "malformed", "echo_key", "echo_key_late", "echo_key_escaped")
API_KEY = "fake-provider-key-0123456789"


class FakeProvider:
    def __init__(self, api_key: str = API_KEY, hang_seconds: float = 2.0):
        self.api_key = api_key
        self.hang_seconds = hang_seconds
        self.instances: dict[str, dict] = {}
        self.fail: str | None = None
        self.delay_seconds = 0.0
        self.hidden: set[str] = set()
        self.lose_create_answer: int | None = None
        self.on_call = None
        self.watch_db: str | None = None
        self.calls_under_db_lock: list[str] = []
        # (method, path-with-query, authorization header) of every request, for assertions.
        self.requests: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()
        self._ids = itertools.count(1)

    def check_db_lock(self, what: str) -> None:
        """Record `what` when another connection holds the watched DB's write lock right now."""
        conn = sqlite3.connect(self.watch_db, timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.OperationalError:
            self.calls_under_db_lock.append(what)
        finally:
            conn.close()

    def next_id(self) -> str:
        return str(next(self._ids))

    def listed(self) -> list[tuple[str, dict]]:
        """(id, instance) pairs a list answer shows: all but the hidden ones."""
        return [(k, v) for k, v in self.instances.items() if k not in self.hidden]

    def route(self, method: str, path: str, query: dict, body) -> tuple[int, object]:
        raise NotImplementedError

    def is_create(self, method: str, path: str, body) -> bool:
        raise NotImplementedError

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                auth = self.headers.get("Authorization", "")
                fake.requests.append((self.command, self.path, auth))
                if fake.watch_db:
                    fake.check_db_lock(f"{self.command} {self.path}")
                if fake.fail == "timeout":
                    time.sleep(fake.hang_seconds)
                if fake.fail == "401" or auth != f"Bearer {fake.api_key}":
                    return self._send(401, {"error": "Unauthorized"})
                if fake.fail == "500":
                    return self._send(500, {"error": "internal error"})
                if fake.fail == "malformed":
                    return self._send(200, b'{"instances": [ {"id": 1,')
                if fake.fail == "echo_key":
                    return self._send(400, {"error": f"invalid request (sent with {auth})"})
                if fake.fail == "echo_key_late":
                    return self._send(400, ("invalid request: " + "x" * 119 + " unknown "
                                           + auth.removeprefix("Bearer ")).encode())
                if fake.fail == "echo_key_escaped":
                    return self._send(400, ('{"error": "invalid request", "sent": "%s", "retry": "/v1?key=%s"}' % (
                        auth.replace("/", "\\/"), quote(auth.removeprefix("Bearer ")))).encode())
                split = urlsplit(self.path)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    return self._send(400, {"error": "bad json"})
                if fake.delay_seconds:
                    time.sleep(fake.delay_seconds)
                with fake.lock:
                    status, payload = fake.route(self.command, split.path, parse_qs(split.query), body)
                    broken = None
                    if fake.lose_create_answer and fake.is_create(self.command, split.path, body):
                        broken, fake.lose_create_answer = fake.lose_create_answer, None
                if fake.on_call is not None:
                    fake.on_call(self.command, split.path)
                if broken:
                    return self._send(broken, {"error": "upstream connection lost"})
                self._send(status, payload)

            _send = send_json

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        return Handler


class FakeRunpod(FakeProvider):
    provider = "runpod.io"

    def is_create(self, method, path, body):
        return path == "/graphql" and "podFindAndDeployOnDemand" in (body or {}).get("query", "")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # pod id -> billing record amounts (totalAmount, gpuAmount, diskAmount, cpuAmount)
        self.billing: dict[str, dict] = {}

    def route(self, method, path, query, body):
        if path == "/v2/billing/pods" and method == "GET":
            return 200, self._billing(query)
        if path != "/graphql" or method != "POST":
            return 404, {"error": "not found"}
        q, variables = body.get("query", ""), body.get("variables") or {}
        data_input = variables.get("input") or {}
        if "podFindAndDeployOnDemand" in q:
            pod_id = f"pod{self.next_id()}"
            self.instances[pod_id] = {"id": pod_id, "name": data_input.get("name"), "desiredStatus": "RUNNING",
                                      "runtime": None, "input": data_input}
            return 200, {"data": {"podFindAndDeployOnDemand": {"id": pod_id, "desiredStatus": "RUNNING"}}}
        if "myself" in q:
            pods = [dict(p) for _, p in self.listed()]
            for pod in self.instances.values():  # booted by the time anyone looks again
                if pod["desiredStatus"] == "RUNNING":
                    pod["runtime"] = {"uptimeInSeconds": 1}
            return 200, {"data": {"myself": {"pods": [{k: v for k, v in p.items() if k != "input"}
                                                      for p in pods]}}}
        for mutation, desired in (("podResume", "RUNNING"), ("podStop", "EXITED"), ("podTerminate", None)):
            if mutation in q:
                pod = self.instances.get(data_input.get("podId"))
                if pod is None:
                    return 200, {"errors": [{"message": "pod not found"}], "data": None}
                if desired is None:
                    del self.instances[pod["id"]]
                    return 200, {"data": {"podTerminate": None}}
                pod["desiredStatus"] = desired
                pod["runtime"] = None
                return 200, {"data": {mutation: {"id": pod["id"], "desiredStatus": desired}}}
        return 200, {"errors": [{"message": "unsupported operation"}]}


    def _billing(self, query: dict) -> dict:
        # GET /v2/billing/pods: records per pod per bucket, metadata with the resolved query and totals.
        start, end = (query.get(k, [""])[0] for k in ("startTime", "endTime"))
        records = [{"podId": pid, "startTime": start, "endTime": end, **amounts}
                   for pid, amounts in self.billing.items()]
        totals = {k: sum(r.get(k, 0) for r in records) for k in ("totalAmount", "gpuAmount", "diskAmount")}
        return {"records": records, "metadata": {
            "query": {"startTime": start, "endTime": end, "bucketSize": query.get("bucketSize", ["day"])[0]},
            "recordCount": len(records), "uniquePodCount": len(self.billing), "totals": totals}}


class FakeVast(FakeProvider):
    provider = "vast.ai"

    def is_create(self, method, path, body):
        return method == "PUT" and path.startswith("/asks/")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.offers = [{"id": 9001, "gpu_name": "RTX 4090", "num_gpus": 1, "dph_total": 0.4}]
        # invoice items: {"type": "charge", "instance_id": ..., "amount": ..., "timestamp": ...}
        self.charges: list[dict] = []

    def route(self, method, path, query, body):
        parts = [p for p in path.split("/") if p]
        if parts == ["bundles"] and method == "POST":
            wanted = ((body or {}).get("gpu_name") or {}).get("eq")
            return 200, {"offers": [o for o in self.offers if o["gpu_name"] == wanted]}
        if len(parts) == 2 and parts[0] == "asks" and method == "PUT":
            inst_id = self.next_id()
            self.instances[inst_id] = {"id": int(inst_id), "label": body.get("label"), "actual_status": None,
                                       "intended_status": "running", "public_ipaddr": "127.0.0.1",
                                       "ports": {}, "disk_space": body.get("disk")}
            return 200, {"success": True, "new_contract": int(inst_id)}
        if parts == ["instances"] and method == "GET":
            listed = [dict(i) for _, i in self.listed()]
            for inst in self.instances.values():
                if inst["intended_status"] == "running":
                    inst["actual_status"] = "loading" if inst["actual_status"] is None else "running"
            return 200, {"instances": listed}
        if len(parts) == 2 and parts[0] == "instances":
            inst = self.instances.get(parts[1])
            if inst is None:
                return 404, {"success": False, "msg": "no such instance"}
            if method == "DELETE":
                del self.instances[parts[1]]
                return 200, {"success": True}
            if method == "PUT":
                state = (body or {}).get("state")
                inst["intended_status"] = state
                inst["actual_status"] = "running" if state == "running" else "exited"
                return 200, {"success": True}
        if parts == ["users", "me", "invoices"] and method == "GET":
            return 200, {"invoices": self.charges}
        return 404, {"success": False, "msg": "not found"}


class FakeJarvislabs(FakeProvider):
    provider = "jarvislabs.ai"

    def is_create(self, method, path, body):
        return method == "POST" and path.startswith("/templates/") and path.endswith("/create")

    def route(self, method, path, query, body):
        if path == "/users/fetch" and method == "GET":
            listed = [dict(i) for _, i in self.listed()]
            for inst in self.instances.values():
                if inst["status"] in ("Creating", "Resuming"):
                    inst["status"] = "Running"
            return 200, {"success": True, "instances": listed}
        if path.startswith("/users/fetch/") and method == "GET":
            inst = self.instances.get(path.rsplit("/", 1)[-1])
            return (200, {"success": True, "instance": dict(inst)}) if inst else \
                (404, {"detail": "Instance not found"})
        if method != "POST":
            return 404, {"success": False, "error": "not found"}
        if path.startswith("/templates/") and path.endswith("/create"):
            machine_id = self.next_id()
            ports = [p for p in (body.get("http_ports") or "").split(",") if p]
            self.instances[machine_id] = {
                "machine_id": int(machine_id), "name": body.get("name"), "status": "Creating",
                "gpu_type": body.get("gpu_type"), "num_gpus": body.get("num_gpus"), "hdd": body.get("hdd"),
                "template": path.split("/")[2], "is_reserved": body.get("is_reserved"),
                "url": f"https://{machine_id}.notebooks.jarvislabs.net/lab?token=secret-jupyter-token",
                "endpoints": [f"https://{machine_id}-{p}.notebooks.jarvislabs.net" for p in ports]}
            return 200, {"success": True, "machine_id": int(machine_id)}
        # pause/destroy take machine_id as a query parameter, resume in its JSON body.
        target = (query.get("machine_id") or [None])[0] if path.startswith("/misc/") else (body or {}).get("machine_id")
        inst = self.instances.get(str(target))
        if inst is None:
            return 200, {"success": False, "error": "Invalid Machine ID"}
        if path == f"/templates/{inst['template']}/resume":
            if (body or {}).get("gpu_type") != inst["gpu_type"] or not (body or {}).get("num_gpus"):
                return 422, {"detail": [{"loc": ["body", "gpu_type"], "msg": "field required"}]}
            # The real service may resume a paused instance on another machine, with a new id.
            del self.instances[str(inst["machine_id"])]
            new_id = self.next_id()
            inst.update(machine_id=int(new_id), status="Resuming")
            self.instances[new_id] = inst
        elif path == "/misc/pause":
            inst["status"] = "Paused"
        elif path == "/misc/destroy":
            del self.instances[str(inst["machine_id"])]
        else:
            return 404, {"success": False, "error": "not found"}
        return 200, {"success": True, "machine_id": inst["machine_id"]}


FAKES = {"runpod.io": FakeRunpod, "vast.ai": FakeVast, "jarvislabs.ai": FakeJarvislabs}


def serve(fake: FakeProvider):
    """Run the fake on a free loopback port: `with serve(fake) as base_url: ...`."""
    return serving(fake.handler())
