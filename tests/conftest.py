"""Shared fixtures: real servers on free loopback ports, started and stopped by the suite."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from echoes_ops.client.connect import Redis, open_redis
from echoes_ops.config import Settings
from echoes_ops.local.redis_server import RedisServer

REPO = Path(__file__).resolve().parent.parent
BUNDLED_GAMEDATA = REPO / "gamedata"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never pick up the developer's own Redis/PostgreSQL settings, and each test has
    its own (empty) gamedata cache."""
    for name in list(os.environ):
        if name.startswith(("REDIS_", "ECHOES_OPS_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ECHOES_OPS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session; tests get a flushed database each."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    if not redis_server.running():
        redis_server.start()
    sync = redis.Redis.from_url(redis_server.url)
    sync.flushall()
    sync.close()
    return redis_server.url


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings.from_dsn(redis_url)


@pytest.fixture
async def r(settings: Settings) -> AsyncIterator[Redis]:
    async with open_redis(settings.redis_target()) as client:
        yield client


@pytest.fixture
def sync_r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, for tests that stop, restart or reconfigure it."""
    server = RedisServer(tmp_path / "private-redis")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory):
    """One real PostgreSQL for the session (run as the postgres user when root)."""
    from echoes_ops.local.postgres_server import PostgresServer

    server = PostgresServer(tmp_path_factory.mktemp("pg"))
    server.start()
    yield server
    server.destroy()


@pytest.fixture
async def database_url(pg_server) -> str:
    """The session's PostgreSQL, emptied of our schema and the reference tables."""
    import asyncpg

    if not pg_server.running():
        pg_server.start()
    conn = await asyncpg.connect(pg_server.url)
    try:
        await conn.execute(
            "DROP SCHEMA IF EXISTS echoes_ops CASCADE; "
            "DROP TABLE IF EXISTS inventory, characters CASCADE"
        )
    finally:
        await conn.close()
    return pg_server.url


@pytest.fixture
async def workers(redis_url):
    """``await workers(id, **options)`` starts a reference worker on the session's server;
    every one still running is stopped at the end."""
    from tests.runtime_helpers import make_worker

    started = []

    async def start(worker_id: str, **options):
        worker = make_worker(redis_url, worker_id, **options)
        await worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if not worker._stopping.is_set():
            await worker.stop()
        await worker.r.aclose()
