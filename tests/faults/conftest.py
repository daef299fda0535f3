"""Fixtures of the fault suite: private servers it may kill, freeze and reconfigure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from echoes_ops.local.redis_server import RedisServer
from tests.faults.proxy import StallProxy


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own with the AOF on (fsync always), to kill -9 and
    restart with its data."""
    server = RedisServer(
        tmp_path / "aof-redis", extra_args=["--appendonly", "yes", "--appendfsync", "always"]
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def aof_r(aof_redis: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(aof_redis.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def proxy() -> Iterator[Callable[[RedisServer], StallProxy]]:
    """A stalling TCP proxy in front of a server (see ``proxy.py``)."""
    made: list[StallProxy] = []

    def make(server: RedisServer) -> StallProxy:
        made.append(StallProxy(server.port))
        return made[-1]

    yield make
    for one in made:
        one.close()
