"""Shared fixtures: real servers on free loopback ports, started and stopped by the suite."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis

from echoes_ops.client.connect import AnyRedis, Redis, open_redis
from echoes_ops.config import Settings
from echoes_ops.local.redis_cluster import RedisCluster
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
    # the CLI lowers its own CPU priority (cli/running.yield_cpu): run in-process by the tests,
    # it would lower the test runner's for the rest of the session (tested in a subprocess)
    monkeypatch.setenv("ECHOES_OPS_NICE", "0")


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
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One Redis Cluster (3 primaries, 3 replicas) for the session, started by the code of
    ``local up --cluster``; tests get it flushed (``cluster_url``). Tests that kill nodes
    start a private one (``private_cluster``)."""
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


def flush_cluster(cluster: RedisCluster) -> None:
    """FLUSHALL on every primary, and wait until the replicas have it too."""
    for node in cluster.nodes:
        sync = redis.Redis(host=cluster.host, port=node.port, password=cluster.password)
        try:
            if sync.execute_command("ROLE")[0] in (b"master", "master"):
                sync.flushall()
                sync.execute_command("WAIT", 1, 2000)
        finally:
            sync.close()


@pytest.fixture
def cluster_url(redis_cluster: RedisCluster) -> str:
    """The session's cluster, every node running and settled, emptied: its URL (the first
    node as seed, ``?cluster=true``)."""
    if not all(redis_cluster.running()):
        redis_cluster.start()
    redis_cluster.wait_ok()
    flush_cluster(redis_cluster)
    return redis_cluster.url


@pytest.fixture
def cluster_settings(cluster_url: str, redis_cluster: RedisCluster) -> Settings:
    """Settings for the session's cluster: REDIS_CLUSTER=true and every node as a seed."""
    return Settings.load(
        env={
            "REDIS_URL": cluster_url.replace("?cluster=true", ""),
            "REDIS_CLUSTER": "true",
            "REDIS_CLUSTER_NODES": ",".join(redis_cluster.seeds),
        }
    )


@pytest.fixture
async def cluster_r(cluster_settings: Settings) -> AsyncIterator[AnyRedis]:
    async with open_redis(cluster_settings.redis_target()) as client:
        yield client


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A cluster of the test's own, for tests that kill, stop or reshard nodes."""
    cluster = RedisCluster(tmp_path / "private-cluster")
    yield cluster
    cluster.stop()


TOPOLOGIES = ("standalone", "cluster")


@pytest.fixture(params=TOPOLOGIES)
def topology(request: pytest.FixtureRequest) -> str:
    """The topology a test parametrized over both runs on (``tier_url`` follows it)."""
    return str(request.param)


@pytest.fixture
def tier_url(topology: str, request: pytest.FixtureRequest) -> str:
    """A flushed tier of each topology in turn: one server, then the cluster (REDIS_URL
    with ?cluster=true)."""
    return str(request.getfixturevalue("redis_url" if topology == "standalone" else "cluster_url"))


@pytest.fixture
def tier_settings(topology: str, request: pytest.FixtureRequest) -> Settings:
    if topology == "standalone":
        return Settings.from_dsn(request.getfixturevalue("redis_url"))
    settings: Settings = request.getfixturevalue("cluster_settings")
    return settings


@pytest.fixture
async def tier_r(tier_settings: Settings) -> AsyncIterator[AnyRedis]:
    async with open_redis(tier_settings.redis_target()) as client:
        yield client


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


@asynccontextmanager
async def started_workers(url: str):
    """``await start(id, **options)`` starts a reference worker on ``url``; every one still
    running is stopped on the way out."""
    from tests.runtime_helpers import make_worker

    started = []

    async def start(worker_id: str, **options):
        worker = make_worker(url, worker_id, **options)
        await worker.start()
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            if not worker._stopping.is_set():
                await worker.stop()
            await worker.r.aclose()


@pytest.fixture
async def workers(redis_url):
    """Reference workers on the session's server (see :func:`started_workers`)."""
    async with started_workers(redis_url) as start:
        yield start


@pytest.fixture
async def cluster_workers(cluster_url):
    """Reference workers on the session's cluster (see :func:`started_workers`)."""
    async with started_workers(cluster_url) as start:
        yield start


@pytest.fixture(autouse=True)
def _cli_runs(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[None]:
    """Record the CLI runs of each test with their topology (tests/cluster_coverage.py)."""
    from echoes_ops.client import connect
    from tests.cluster_coverage import RECORDER, problems_of

    options = connect._options

    def recorded(target, client_name, extra):  # type: ignore[no-untyped-def]
        RECORDER.saw_client(bool(target.cluster))
        return options(target, client_name, extra)

    RECORDER.reset()
    monkeypatch.setattr(connect, "_options", recorded)
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.passed:
        problems = problems_of(request.node.nodeid)
        assert not problems, "\n".join(problems)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Each phase's report on the item (``rep_call``), for fixtures' teardown to see."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
