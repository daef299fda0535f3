"""Preload under faults (issue #13 items 1-4): eviction right after the swap, memory
pre-flight and OOM, Ctrl-C at a chosen step, redis-server killed mid-transaction."""

from __future__ import annotations

import signal

import pytest
import redis

from benchmarks.worldgen import make_world
from echoes_ops.cli.common import ProgressBar
from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.gamedata import load_gamedata
from echoes_ops.gamedata.models import GameData
from echoes_ops.local.redis_server import RedisServer
from echoes_ops.operations.preload import PRELOAD_LOCK, preload
from tests.cli_helpers import cli
from tests.conftest import BUNDLED_GAMEDATA
from tests.faults.helpers import (
    CliProcess,
    in_big_multi,
    interrupt,
    last_audit,
    wait_until,
)


@pytest.fixture(scope="module")
def world() -> GameData:
    return load_gamedata(BUNDLED_GAMEDATA)


def static_keys(r: redis.Redis) -> int:
    return sum(
        1
        for pattern in ("item:*:def", "location:*:cache", "npc:*:def")
        for _ in r.scan_iter(pattern, count=1000)
    )


def on_progress(monkeypatch: pytest.MonkeyPatch, when, action) -> None:
    """Run ``action`` (a fault) the first time the preload's progress reaches ``when``
    (done, total) -> bool: the progress callback runs between chunks of the transaction."""
    fired = []

    def call(self: ProgressBar, done: int, total: int) -> None:
        if not fired and when(done, total):
            fired.append(done)
            action()

    monkeypatch.setattr(ProgressBar, "__call__", call)


# -- 1. eviction right after the swap ----------------------------------------------------


def test_keys_evicted_after_exec_are_a_named_loss(private_redis: RedisServer, monkeypatch):
    """allkeys-random and memory cut right after EXEC: the very next command evicts static
    keys. preload must say which are gone (exit 11), not 'wrote N keys'."""
    private_redis.extra_args = ["--maxmemory-policy", "allkeys-random"]
    private_redis.start()
    r = redis.Redis.from_url(private_redis.url, decode_responses=True)
    r.set("filler", "x" * 1000)

    def squeeze() -> None:
        """A burst of memory pressure: the limit drops, the next command evicts, the limit
        comes back (so the audit record written next is not evicted in turn)."""
        used = int(r.info("memory")["used_memory"])
        r.config_set("maxmemory", str(used - 150_000))
        r.ping()  # any command runs the eviction first
        r.config_set("maxmemory", "0")

    on_progress(monkeypatch, lambda done, total: done == total, squeeze)
    out = cli("--redis-url", private_redis.url, "preload")

    assert "maxmemory-policy is allkeys-random: static keys carry no TTL" in out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("echoes-ops: error: preload committed version "), out.stderr
    assert "key(s) are already gone: missing " in line
    assert "evicted_keys rose by " in line
    assert out.code == 11
    record = last_audit(r, "preload")
    assert record["result"] == "failed"
    missing = record["detail"]["missing"]
    assert missing
    assert all(n > 0 for n in missing.values())
    assert record["detail"]["evicted_keys_during"] > 0
    # what is said is what is left
    total = sum(load_gamedata(BUNDLED_GAMEDATA).counts().values())
    assert static_keys(r) <= total - sum(missing.values())
    r.close()


def test_allkeys_policy_is_warned_before_anything_is_written(private_redis: RedisServer):
    private_redis.extra_args = ["--maxmemory-policy", "allkeys-lru"]
    private_redis.start()
    out = cli("--redis-url", private_redis.url, "preload", "--dry-run")
    assert out.code == 0
    assert out.stderr.startswith("echoes-ops: warning: maxmemory-policy is allkeys-lru")


# -- 2. memory pre-flight -----------------------------------------------------------------


@pytest.mark.parametrize("generated", [False, True], ids=["bundled", "generated"])
async def test_memory_estimate_is_within_15_percent(
    private_redis: RedisServer, world: GameData, generated: bool
):
    """Measured: used_memory before and after a preload into db 0 of a server that ran
    one into db 1 first, so one-time allocations (the script cache, client buffers) are
    not counted as the data's."""
    data = make_world(items=3000, locations=300) if generated else world
    private_redis.start()
    r = redis.Redis.from_url(private_redis.url, decode_responses=True)
    for db in (1, 0):
        if db == 0:
            before = int(r.info("memory")["used_memory"])
        target = Settings.from_dsn(f"{private_redis.url[:-2]}/{db}").redis_target()
        async with open_redis(target) as ar:
            result = await preload(ar, data, operator="alice")
    after = int(r.info("memory")["used_memory"])
    measured = after - before
    assert abs(result.estimated_bytes - measured) <= 0.15 * measured, (
        f"estimated {result.estimated_bytes:,} B, measured {measured:,} B"
    )
    r.close()


def test_limit_between_a_low_estimate_and_the_real_need_is_refused(
    private_redis: RedisServer, world: GameData
):
    """maxmemory set so that the data fits only under an estimate ~30% low: the pre-flight
    refuses (exit 7, nothing written) instead of the transaction failing with raw OOM."""
    private_redis.extra_args = ["--maxmemory-policy", "noeviction"]
    private_redis.start()
    r = redis.Redis.from_url(private_redis.url, decode_responses=True)
    before = int(r.info("memory")["used_memory"])
    assert cli("--redis-url", private_redis.url, "preload").code == 0
    need = int(r.info("memory")["used_memory"]) - before
    r.flushall()
    used = int(r.info("memory")["used_memory"])
    r.config_set("maxmemory", str(int((used + 0.7 * need) / 0.9)))
    out = cli("--redis-url", private_redis.url, "preload")
    r.config_set("maxmemory", "0")
    assert out.code == 7, out.stderr
    assert "not enough memory headroom" in out.one_error_line()
    assert static_keys(r) == 0
    assert not r.exists(keys.GAMEDATA_VERSION_KEY)
    r.close()


def test_oom_during_the_swap_is_the_documented_refusal(private_redis: RedisServer, proxy):
    """Memory cut while the transaction is queued (after the pre-flight passed): Redis
    refuses the queued writes and discards the transaction. One line, exit 7, nothing
    written, and the audit record says so."""
    private_redis.extra_args = ["--maxmemory-policy", "noeviction"]
    private_redis.start()
    r = redis.Redis.from_url(private_redis.url, decode_responses=True)
    stall = proxy(private_redis)
    run = CliProcess("preload", env={"REDIS_URL": stall.url})
    try:
        wait_until(stall.held.is_set, what="the transaction to be held")
        r.config_set("maxmemory", str(int(r.info("memory")["used_memory"]) - 10_000))
        # the queue runs into the limit; the client hears of it once the limit is lifted,
        # so its own next writes (lock release, audit record) are not refused in turn
        stall.release(hold_replies=True)
        wait_until(lambda: r.info("stats")["total_error_replies"] > 0, what="the refusal")
        wait_until(lambda: not in_big_multi(r, pending=0), what="the transaction to end")
        r.config_set("maxmemory", "0")
        stall.release_replies()
        done = run.finish()
    finally:
        run.kill()
    line = done.line("echoes-ops: error: ")
    assert done.code == 7, done.stderr
    assert "not enough memory: Redis refused the transaction" in line
    assert "nothing written" in line
    assert "maxmemory'" not in line
    assert static_keys(r) == 0
    assert not r.exists(keys.GAMEDATA_VERSION_KEY)
    assert last_audit(r, "preload")["result"] == "failed"
    r.close()


# -- 3. a stop at a chosen step -----------------------------------------------------------


@pytest.mark.parametrize("at", ["mid-stream", "after-exec"])
async def test_stop_token_reports_the_true_outcome(r, sync_r, world: GameData, at: str):
    from echoes_ops.errors import Interrupted
    from echoes_ops.operations.stop import StopToken

    token = StopToken()

    def progress(done: int, total: int) -> None:
        if (at == "after-exec" and done == total) or (at == "mid-stream" and 0 < done < total):
            token.request("SIGINT")

    with pytest.raises(Interrupted) as caught:
        await preload(r, world, operator="alice", progress=progress, stop=token, batch=100)
    version = sync_r.hget(keys.GAMEDATA_VERSION_KEY, "content_hash")
    if at == "mid-stream":
        assert "nothing written" in str(caught.value)
        assert version is None
        assert static_keys(sync_r) == 0
    else:
        assert f"committed version {version[:12]}" in str(caught.value)
        assert static_keys(sync_r) == sum(world.counts().values())
    assert not sync_r.exists(keys.lock_key(PRELOAD_LOCK))


@pytest.mark.parametrize("step", ["taking the lock", "inside the transaction"])
def test_sigint_at_a_step_tells_the_truth(redis_server, redis_url, sync_r, proxy, step):
    """SIGINT while the preload waits on a chosen step: its lock (writes paused with
    CLIENT PAUSE), or its transaction (held mid-way by a stalling proxy, EXEC already
    sent). Exit 130, and the line and the audit record say what the data shows."""
    stall = proxy(redis_server)
    if step == "taking the lock":
        sync_r.client_pause(20_000, all=False)
    run = CliProcess("preload", env={"REDIS_URL": stall.url})
    try:
        if step == "taking the lock":
            wait_until(
                lambda: any(c.get("cmd") == "set" for c in sync_r.client_list()),
                what="the lock's SET to be blocked",
            )
        else:
            wait_until(stall.held.is_set, what="the transaction to be held")
        done = interrupt(run, signal.SIGINT, lambda: (sync_r.client_unpause(), stall.release()))
    finally:
        sync_r.client_unpause()
        run.kill()
    assert done.code == 130, done.stderr
    line = done.line("echoes-ops: interrupted: ")
    version = sync_r.hget(keys.GAMEDATA_VERSION_KEY, "content_hash")
    record = last_audit(sync_r, "preload")
    assert record["result"] == "interrupted"
    if step == "taking the lock":
        assert "nothing written" in line
        assert version is None
        assert static_keys(sync_r) == 0
    else:  # the whole transaction, EXEC included, was already sent: it committed
        assert f"committed version {version[:12]}" in line
        assert record["detail"]["committed"] is True
        assert static_keys(sync_r) == sum(load_gamedata(BUNDLED_GAMEDATA).counts().values())
    assert record["detail"]["outcome"] in line
    assert not sync_r.exists(keys.lock_key(PRELOAD_LOCK))


# -- 4. redis-server killed -9 mid-transaction (AOF on) -----------------------------------


def test_killed_server_mid_transaction_version_record_tells(aof_redis, proxy):
    """kill -9 while the transaction is queued (held with CLIENT PAUSE, the preload frozen
    with SIGSTOP), restart from the AOF, SIGCONT: the preload says it was cut off and, from
    the version record, that nothing changed; it releases its own lock."""
    stall = proxy(aof_redis)
    run = CliProcess("preload", env={"REDIS_URL": stall.url})
    try:
        wait_until(stall.held.is_set, what="the transaction to be held")
        run.proc.send_signal(signal.SIGSTOP)
        aof_redis.kill()
        aof_redis.start()  # from its AOF
        run.proc.send_signal(signal.SIGCONT)
        done = run.finish()
    finally:
        run.kill()
    fresh = redis.Redis.from_url(aof_redis.url, decode_responses=True)
    assert done.code == 4, done.stderr
    line = done.line("echoes-ops: error: ")
    assert "preload cut off: the connection to Redis was lost during the transaction" in line
    assert "nothing changed (the version record still says none)" in line
    assert "lock:echoes-ops.preload was released" in line
    assert static_keys(fresh) == 0
    assert not fresh.exists(keys.GAMEDATA_VERSION_KEY, keys.lock_key(PRELOAD_LOCK))
    record = last_audit(fresh, "preload")
    assert record["result"] == "failed"
    assert record["detail"]["cut_off"] is True
    fresh.close()


def test_crashed_preload_lock_names_its_gone_owner_and_the_fix(aof_redis, proxy):
    """kill -9 mid-transaction and the server stays down while the preload exits: its lock
    survives the restart (AOF), for its short TTL only. The next preload names the owner,
    says its process is gone and gives the exact command that clears it."""
    stall = proxy(aof_redis)
    run = CliProcess("preload", env={"REDIS_URL": stall.url})
    try:
        wait_until(stall.held.is_set, what="the transaction to be held")
        aof_redis.kill()
        done = run.finish()
    finally:
        run.kill()
    assert done.code == 4, done.stderr
    line = done.line("echoes-ops: error: ")
    assert "preload cut off: the connection to Redis was lost during the transaction" in line
    assert "whether it ran is unknown until Redis is back" in line
    assert "lock:echoes-ops.preload (owner operator.fault-test, this process) stays" in line

    aof_redis.start()  # from its AOF
    fresh = redis.Redis.from_url(aof_redis.url, decode_responses=True)
    assert not fresh.exists(keys.GAMEDATA_VERSION_KEY)  # EXEC never ran
    assert 0 < fresh.pttl(keys.lock_key(PRELOAD_LOCK)) <= 30_000
    blocked = cli("--redis-url", aof_redis.url, "preload")
    assert blocked.code == 8
    line = blocked.one_error_line()
    assert "held by operator.fault-test, but its process" in line
    assert f"{run.proc.pid} on " in line
    assert "is gone: an earlier preload was cut off" in line
    assert "to clear it now: echoes-ops locks release echoes-ops.preload --force" in line
    shown = cli("--redis-url", aof_redis.url, "locks", "show", "echoes-ops.preload")
    assert f"not alive: its process {run.proc.pid} on " in shown.stdout
    cleared = cli(
        "--redis-url", aof_redis.url, "locks", "release", "echoes-ops.preload", "--force", "--yes"
    )
    assert cleared.code == 0, cleared.stderr
    again = cli("--redis-url", aof_redis.url, "preload")
    assert again.code == 0, again.stderr
    assert fresh.hget(keys.GAMEDATA_VERSION_KEY, "content_hash")
    fresh.close()


async def test_preload_lock_is_short_and_renewed(r, sync_r, monkeypatch):
    import asyncio

    from echoes_ops.operations import lockowner

    ttl = 1.5  # renewed every 0.5 s: a stall of ~1 s on a loaded machine is tolerated
    monkeypatch.setattr(lockowner, "PROCESS_LOCK_TTL", ttl)
    lease = await lockowner.take(r, PRELOAD_LOCK, operator="alice", reason="preload", ttl=ttl)
    assert lease is not None
    async with lease:
        # time, not an event, is the property: a run that outlives the lock's short TTL
        # (here 2.5 times over) keeps the lock, renewed
        await asyncio.sleep(ttl * 2.5)
        assert sync_r.exists(keys.lock_key(PRELOAD_LOCK))
        assert lease.renewals >= 2
        info = sync_r.hgetall(keys.lock_info_key(PRELOAD_LOCK))
        assert info["pid"].isdigit()
        assert info["host"]
    assert not sync_r.exists(keys.lock_key(PRELOAD_LOCK), keys.lock_info_key(PRELOAD_LOCK))
