"""A whole fake-but-real VM for integration tests: directories, env, DB, loopback servers.

World builders live in tests/integration/worlds/<area>.py, each with `build(world)`:
they create what their area needs (git repos, model caches, DB rows, fake servers on
loopback) and set env vars before the real exporter process starts with `world.env`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Callable

from sqlalchemy.orm import sessionmaker

from tests.fakes.loopback import serving

from tests.support.env import wordslab_env

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"


@dataclass
class World:
    root: Path
    env: dict[str, str] = field(default_factory=dict)
    # Extra entries for the exporter's PYTHONPATH (e.g. the fake pynvml module dir).
    pythonpath: list[str] = field(default_factory=list)
    _cleanups: list[Callable[[], None]] = field(default_factory=list)
    _sessions: sessionmaker | None = None

    @classmethod
    def create(cls, root: Path) -> "World":
        return cls(root=root, env=wordslab_env(root))

    @property
    def workspace(self) -> Path:
        return Path(self.env["WORDSLAB_WORKSPACE"])

    @property
    def models(self) -> Path:
        return Path(self.env["WORDSLAB_MODELS"])

    @property
    def db_path(self) -> Path:
        return Path(self.env["WORDSLAB_DASHBOARD_DB"])

    def sessions(self) -> sessionmaker:
        """Sessions over the world's dashboard DB, schema created."""
        if self._sessions is None:
            from common.store import connect, init_db, session_factory
            engine = connect(self.db_path)
            init_db(engine)
            self._sessions = session_factory(engine)
            self.add_cleanup(engine.dispose)
        return self._sessions

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> str:
        """Run an HTTP handler on a loopback port for the world's lifetime; returns its base URL."""
        stack = contextlib.ExitStack()
        base_url = stack.enter_context(serving(handler))
        self.add_cleanup(stack.close)
        return base_url

    def add_cleanup(self, fn: Callable[[], None]) -> None:
        self._cleanups.append(fn)

    def close(self) -> None:
        while self._cleanups:
            try:
                self._cleanups.pop()()
            except Exception:
                pass
