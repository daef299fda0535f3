"""Cases that held when issue #13 was filed, kept so by a fault test each where no
existing test already proves them (docs/reliability.md maps every case to its test)."""

from __future__ import annotations

import json
import threading

import redis

from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode
from echoes_ops.local.redis_server import RedisServer
from tests.cli_helpers import cli
from tests.conftest import BUNDLED_GAMEDATA

READERS = [
    ["status", "--json"],
    ["cache", "status", "--json"],
    ["sessions", "list", "--json"],
    ["locations", "list", "--json"],
    ["workers", "list", "--json"],
    ["locks", "list", "--json"],
    ["reconcile", "--json"],
    ["stats", "--json"],
    ["doctor", "--json"],
]


def _tier(r: redis.Redis, players: int = 300) -> None:
    pipe = r.pipeline(transaction=False)
    for cid in range(1, players + 1):
        loc = ("ruins", "overpass", "bunker")[cid % 3]
        pipe.hset(
            keys.session_key(cid),
            mapping={"location_id": loc, "worker_id": "w-1", "last_heartbeat": "1.0"},
        )
        pipe.expire(keys.session_key(cid), 1800)
        pipe.sadd(keys.presence_key(loc), cid)
    pipe.set(keys.lock_key("spawn_manager"), "w-1#ab", ex=60)
    pipe.execute()


def test_no_reader_sends_keys(redis_url, sync_r):
    """Every reader walks the keyspace with SCAN: after all of them, KEYS was never run."""
    _tier(sync_r)
    assert cli("preload", env={"REDIS_URL": redis_url}).code == 0
    sync_r.config_resetstat()
    for args in READERS:
        out = cli(*args, env={"REDIS_URL": redis_url})
        assert out.code in (0, 1), (args, out.stderr)
    stats = sync_r.info("commandstats")
    assert "cmdstat_keys" not in stats
    assert stats["cmdstat_scan"]["calls"] > 0


def test_session_count_is_exact_under_a_concurrent_writer(redis_url, sync_r):
    """A writer churns the keyspace (rehashing it) and moves players while status counts:
    the session count is exact every time (SCAN returns every key present throughout)."""
    _tier(sync_r, players=3000)
    stop = threading.Event()

    def churn() -> None:
        writer = redis.Redis.from_url(redis_url)
        n = 0
        while not stop.is_set():
            pipe = writer.pipeline(transaction=True)
            for i in range(200):
                pipe.set(f"churn:{n}:{i}", "x")
            pipe.delete(*(f"churn:{n - 1}:{i}" for i in range(200)))
            cid = n % 3000 + 1
            pipe.hset(keys.session_key(cid), "last_heartbeat", str(n))
            pipe.execute()
            n += 1
        writer.close()

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    try:
        for _ in range(3):
            out = cli("status", "--json", env={"REDIS_URL": redis_url})
            assert out.code == 0, out.stderr
            assert json.loads(out.stdout)["counts"]["sessions"] == 3000
    finally:
        stop.set()
        thread.join()


def test_readers_work_and_writers_refuse_under_a_read_only_acl(redis_url, sync_r):
    """A read-only ACL user (reads, and scripts whose writes the ACL refuses): readers
    answer; a writer is refused with one line naming the
    command (exit 6) and writes nothing."""
    _tier(sync_r)
    sync_r.execute_command(
        "ACL", "SETUSER", "ro", "on", ">ropw", "~*", "&*", "+@read", "+@connection", "+info",
        "+client|list", "+memory|usage", "+config|get", "+@scripting",
    )  # fmt: skip
    try:
        url = redis_url.replace("redis://", "redis://ro:ropw@")
        for args in (["status", "--json"], ["locks", "list", "--json"], ["reconcile", "--json"]):
            out = cli(*args, env={"REDIS_URL": url})
            assert out.code in (0, 1), (args, out.stderr)
        before = sync_r.dbsize()
        out = cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), env={"REDIS_URL": url})
        assert out.code == ExitCode.PERMISSION
        assert "may not run" in out.stderr.strip().splitlines()[-1]
        assert sync_r.dbsize() == before
        assert not sync_r.exists(keys.GAMEDATA_VERSION_KEY)
    finally:
        sync_r.execute_command("ACL", "DELUSER", "ro")


def test_preloaded_data_survives_kill_9_and_an_aof_restart(aof_redis: RedisServer, aof_r):
    env = {"REDIS_URL": aof_redis.url}
    assert cli("preload", env=env).code == 0
    version = aof_r.hget(keys.GAMEDATA_VERSION_KEY, "content_hash")
    aof_redis.kill()
    aof_redis.start()
    fresh = redis.Redis.from_url(aof_redis.url, decode_responses=True)
    assert fresh.hget(keys.GAMEDATA_VERSION_KEY, "content_hash") == version
    status = cli("cache", "status", "--json", env=env)
    assert status.code == 0, status.stdout
    assert json.loads(status.stdout)["in_sync"] is True
    again = cli("preload", env=env)
    assert again.code == 0
    assert "unchanged" in again.stdout
    fresh.close()
