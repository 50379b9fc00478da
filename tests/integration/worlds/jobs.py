"""Admin background jobs for the integration world: one clone running, one model download done.

They are rows in the world's dashboard DB, as the admin's JobRunner leaves them, so the
"running jobs" panel has a job in progress and the status panels have both states.
"""
from __future__ import annotations

from datetime import timedelta

from common.store.jobs import Job, utcnow
from tests.support.world import World

MiB = 2**20


def build(world: World) -> None:
    now = utcnow()
    with world.sessions().begin() as s:
        s.add_all([
            Job(kind="clone", target="https://example.org/wordslab/demo-project.git", status="running",
                progress=0.42, bytes_done=42 * MiB, bytes_total=100 * MiB, message="receiving objects",
                created_at=now - timedelta(minutes=2), started_at=now - timedelta(minutes=2)),
            Job(kind="download", target="ollama/qwen3:0.6b", status="done", progress=1.0,
                bytes_done=523 * MiB, bytes_total=523 * MiB, message="pulled",
                created_at=now - timedelta(minutes=10), started_at=now - timedelta(minutes=10),
                finished_at=now - timedelta(minutes=5)),
        ])
