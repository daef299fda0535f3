"""Shared by the doctor tests: running `echoes-ops doctor --json`, a private server the test
configures before starting it, and a live worker as doctor sees one."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from echoes_ops.contract import keys
from echoes_ops.local.redis_server import RedisServer
from tests.cli_helpers import cli
from tests.conftest import BUNDLED_GAMEDATA

EXPOSED_BIND = ["--bind", "127.0.0.1 -192.0.2.1"]
GOOD_CONFIG = ["--maxmemory", "256mb", "--maxmemory-policy", "volatile-lru", "--appendonly", "yes"]


def doctor(url: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    out = cli(
        "doctor", "--json", "--gamedata", str(BUNDLED_GAMEDATA), *args,
        env={"REDIS_URL": url, **(env or {})},
    )  # fmt: skip
    assert out.stderr == "", out.stderr
    data = json.loads(out.stdout)
    assert data["exit_code"] == out.code
    return out.code, {check["id"]: check for check in data["checks"]}


def verdicts(checks: dict[str, Any]) -> dict[str, str]:
    return {name: check["verdict"] for name, check in checks.items()}


@pytest.fixture
def client(private_redis: RedisServer) -> Iterator[Callable[[], redis.Redis]]:
    """A client to the private server, started by the test after configuring it."""
    holder: list[redis.Redis] = []

    def connect() -> redis.Redis:
        private_redis.start()
        holder.append(redis.Redis.from_url(private_redis.url, decode_responses=True))
        return holder[0]

    yield connect
    for c in holder:
        c.close()


def server_now(c: redis.Redis) -> float:
    seconds, micros = c.time()
    return seconds + micros / 1e6


def live_worker(
    url: str, c: redis.Redis, worker_id: str, heartbeat: float, **meta: str
) -> redis.Redis:
    """A worker as doctor sees one: a client named after it and a meta key (15 s TTL)."""
    named = redis.Redis.from_url(url, client_name=worker_id)
    named.ping()
    c.hset(keys.worker_meta_key(worker_id), mapping={"heartbeat": f"{heartbeat:.3f}", **meta})
    c.expire(keys.worker_meta_key(worker_id), keys.WORKER_META_TTL)
    return named


def preload(url: str) -> None:
    out = cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), env={"REDIS_URL": url})
    assert out.code == 0, out.stderr
