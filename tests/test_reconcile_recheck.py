"""Reconcile's one-instant re-read of suspects (``PRESENCE_RECHECK``) in steps of the walk's
budget (issue #16): sized by what each call cost the server, never a fixed 100 suspects a
call sent back to back (1.6-2.4 ms a call seen on a 200,000-session tier)."""

from __future__ import annotations

import hashlib
import math

import redis
from redis.asyncio import Redis

from echoes_ops.client.budget import GROWTH
from echoes_ops.contract import keys, scripts
from echoes_ops.operations.drift_report import RECHECK_BATCH, RECHECK_FIRST
from echoes_ops.operations.reconcile import find_drift

SUSPECTS = 3000


def _misplace(sync_r: redis.Redis) -> None:
    """SUSPECTS players whose session names one location while they are in another's set."""
    pipe = sync_r.pipeline(transaction=False)
    for cid in range(1, SUSPECTS + 1):
        pipe.hset(keys.session_key(cid), mapping={"location_id": "ruins", "worker_id": "w1"})
        pipe.expire(keys.session_key(cid), 600)
        pipe.sadd(keys.presence_key("overpass"), cid)
    pipe.execute()


def _recheck_calls(sync_r: redis.Redis) -> list[int]:
    """Suspects per PRESENCE_RECHECK call, in the order the calls ran (from SLOWLOG: KEYS
    is each suspect's session and its one set)."""
    sha = hashlib.sha1(scripts.PRESENCE_RECHECK.encode()).hexdigest()
    entries = sorted(sync_r.slowlog_get(100_000), key=lambda e: e["id"])
    sizes = []
    for entry in entries:
        words = entry["command"].split()
        if words[0].upper() == b"EVALSHA" and words[1].decode() == sha:
            sizes.append(int(words[2]) // 2)
    return sizes


async def test_recheck_calls_are_sized_by_the_budget(r: Redis, sync_r: redis.Redis) -> None:
    _misplace(sync_r)
    sync_r.config_set("slowlog-log-slower-than", 0)
    sync_r.config_set("slowlog-max-len", 100_000)
    sync_r.slowlog_reset()
    plan = await find_drift(r, grace=0)
    sizes = _recheck_calls(sync_r)
    assert plan.report.scanned["rechecked_players"] == SUSPECTS
    assert sum(sizes) == SUSPECTS
    # the first call small, and none grown past the budget's factor over the largest before
    # it (a call shrunk after a spike may return to its size before it at once), never over
    # the cap: sized by what the calls before it cost, not a fixed count
    assert sizes[0] <= RECHECK_FIRST
    for i in range(1, len(sizes)):
        assert sizes[i] <= min(RECHECK_BATCH, math.ceil(max(sizes[:i]) * GROWTH) + 1), sizes
    # the drift found is the same: every player misplaced, confirmed at one instant
    assert plan.report.kinds["location_mismatch"].found == SUSPECTS


async def test_without_time_the_calls_keep_their_first_size(
    sync_r: redis.Redis, redis_url: str
) -> None:
    """A user refused TIME: each call's clock reads -1, and the calls stay at
    RECHECK_FIRST suspects (a round trip standing in for the server time read its fixed part
    as the suspects' cost, and the calls shrank to one suspect each)."""
    _misplace(sync_r)
    sync_r.execute_command("ACL", "SETUSER", "notime", "on", ">pw", "~*", "&*", "+@all", "-time")
    try:
        url = redis_url.replace("redis://", "redis://notime:pw@", 1)
        limited = Redis.from_url(url, decode_responses=True)
        try:
            sync_r.config_set("slowlog-log-slower-than", 0)
            sync_r.config_set("slowlog-max-len", 100_000)
            sync_r.slowlog_reset()
            plan = await find_drift(limited, grace=0)
        finally:
            await limited.aclose()
    finally:
        sync_r.execute_command("ACL", "DELUSER", "notime")
    sizes = _recheck_calls(sync_r)
    assert sum(sizes) == SUSPECTS
    assert sizes[:-1] == [RECHECK_FIRST] * (len(sizes) - 1), sizes
    assert plan.report.kinds["location_mismatch"].found == SUSPECTS
