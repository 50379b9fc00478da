"""The real admin (`python -m admin`) as a subprocess on a free loopback port, for browser/HTTP tests."""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.env import free_port, wordslab_env
from tests.support.world import REPO_ROOT

ADMIN_PASSWORD = "browser-test-password"
START_DEADLINE_S = 60


@dataclass
class AdminServer:
    url: str
    env: dict[str, str]
    db_path: Path
    root: Path
    password: str
    process: subprocess.Popen
    log_path: Path
    _engines: list = field(default_factory=list)

    def sessions(self):
        """Sessions over the admin's DB (WAL: safe while the admin writes too)."""
        from common.store import connect, session_factory
        engine = connect(self.db_path)
        self._engines.append(engine)
        return session_factory(engine)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        for engine in self._engines:
            engine.dispose()


def _wait_until_serving(server: AdminServer) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"admin exited with {server.process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"admin did not answer on {server.url} within {START_DEADLINE_S}s:\n{server.log()}")


def start_admin(root: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = (),
                password: str = ADMIN_PASSWORD) -> AdminServer:
    """Start `python -m admin` for a VM laid out under `root`; returns once it answers /health."""
    vm_env = wordslab_env(root)
    vm_env.update({"PYTHONPATH": str(REPO_ROOT), "WORDSLAB_DASHBOARD_ADMIN_PASSWORD": password,
                   "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"})
    vm_env.update(env or {})
    db_path = Path(vm_env["WORDSLAB_DASHBOARD_DB"])
    port = free_port()
    log_path = root / "admin.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "admin", "--listen-address", f"127.0.0.1:{port}", "--db", str(db_path), *args],
            cwd=REPO_ROOT, env=vm_env, stdout=log, stderr=subprocess.STDOUT)
    server = AdminServer(url=f"http://127.0.0.1:{port}", env=vm_env, db_path=db_path, root=root,
                         password=password, process=process, log_path=log_path)
    try:
        _wait_until_serving(server)
    except Exception:
        server.stop()
        raise
    return server


def login(page, server: AdminServer, password: str | None = None) -> None:
    """Log in through the real login form (a Playwright page); ends on the admin index."""
    page.goto(server.url + "/admin/login")
    page.fill("#password", server.password if password is None else password)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(server.url + "/admin/")
