"""Building workers against a real server for the runtime tests."""

from __future__ import annotations

from echoes_ops.client.connect import make_client
from echoes_ops.config import Settings
from echoes_ops.contract.session import Session
from echoes_ops.runtime.worker import Worker, WorkerOptions
from tests.waiting import eventually

__all__ = ["LOCATIONS", "eventually", "make_worker", "session"]  # eventually: tests/waiting.py

LOCATIONS = ["overpass", "gas_station", "ruins", "bunker"]


def make_worker(url: str, worker_id: str, **options) -> Worker:
    target = Settings.from_dsn(url).redis_target()
    client = make_client(target, client_name=worker_id, socket_timeout=5)
    options.setdefault("location_ids", LOCATIONS)
    options.setdefault("run_spawn_task", False)
    return Worker(client, WorkerOptions(worker_id=worker_id, **options))


def session(cid: int, location: str, worker: str = "") -> Session:
    return Session(
        character_id=cid,
        username=f"player{cid}",
        location_id=location,
        hp=100,
        max_hp=100,
        stamina=50,
        max_stamina=50,
        level=1,
        xp=0,
        websocket_connected=True,
        in_combat=False,
    )
