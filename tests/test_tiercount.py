"""The dashboard's tier count (judged in Lua) against the census it replaces (judged in
Python): the same counts on a keyspace full of edge cases, at several step sizes."""

from __future__ import annotations

import time

import pytest
import redis

from echoes_ops.contract import keys
from echoes_ops.operations.overview import tier_summary
from echoes_ops.operations.tiercount import TierCount, count_tier
from echoes_ops.operations.tiermap import census


def heartbeats(now: float) -> dict[int, str | None]:
    return {
        1: f"{now:.3f}",  # fresh
        2: f"{now - 500:.3f}",  # stale
        3: None,  # no heartbeat: unknown
        4: "abc",  # not a number: unknown
        5: "1.7e9",  # exponent: the codec's call (stale)
        6: " 1700000000 ",  # spaces: the codec's call (stale)
        7: "12345.6",  # a monotonic clock's value: unknown
        8: f"{now + 2 * 86_400:.0f}",  # too far in the future: unknown
        9: f"{now + 100:.0f}",  # a little ahead (clock skew): fresh
        10: "-5",  # unknown
        11: "nan",  # unknown
        12: "1_700_000_000",  # Python reads underscores: stale
        13: "1700000000.",  # a trailing dot: stale in both
        14: f"{now - 100:.0f}",  # not yet stale
    }


@pytest.fixture
def tier(sync_r: redis.Redis) -> float:
    now = time.time()
    for cid, beat in heartbeats(now).items():
        fields = {"worker_id": "w1", "location_id": "a"}
        if beat is not None:
            fields["last_heartbeat"] = beat
        sync_r.hset(keys.session_key(cid), mapping=fields)
    sync_r.hset("player:015:session", "last_heartbeat", f"{now:.0f}")  # not canonical
    sync_r.hset("player:0:session", "last_heartbeat", f"{now:.0f}")  # no player 0
    sync_r.set(keys.session_key(20), "not a hash")
    sync_r.rpush(keys.inventory_key(1), "{}")
    sync_r.sadd(keys.presence_key("a"), 1, 2, 3)
    sync_r.sadd(keys.presence_key("b"), 4)
    sync_r.set("location:c:players", "not a set")
    sync_r.set(keys.lock_key("x"), "w1#1", px=60_000)
    sync_r.set(keys.lock_key("y"), "w2#1", px=60_000)
    sync_r.hset(keys.worker_meta_key("w1"), "worker_id", "w1")
    sync_r.hset(keys.worker_connections_key("w2"), "5", "connected")
    for n in range(40):  # keys of no interest, so steps see a mix
        sync_r.set(f"other:{n}", "x")
    return now


@pytest.mark.parametrize("step", [1, 7, 200])
async def test_counts_match_the_census(r, tier: float, step: int) -> None:
    reference = await census(r, count=50)
    beats = [s.heartbeat for s in reference.sessions.values()]
    members = [n for _, n in reference.presence.values()]

    got = await tier_summary(r, step=step)

    assert got.sessions == len(reference.sessions) == len(heartbeats(tier))
    assert got.stale_sessions == sum(1 for b in beats if b is not None and tier - b > 120) == 5
    assert got.unknown_heartbeat == sum(1 for b in beats if b is None) == 6
    assert got.players_in_locations == sum(members) == 4
    assert got.locations_with_players == 2
    assert got.locks == len(reference.locks) == 2
    assert got.lock_names == ("x", "y")
    assert got.worker_ids == ("w1", "w2")
    assert got.scanned == reference.scanned == await r.dbsize()


async def test_sessions_by_kind(r, tier: float) -> None:
    found = await count_tier(r, stale_after=120.0, step=5, now=tier)
    assert found.stale == {"2", "5", "6", "12", "13"}
    assert found.unknown == {"3", "4", "7", "8", "10", "11"}
    assert found.sessions - found.stale - found.unknown == {"1", "9", "14"}
    assert found.presence == {"a": 3, "b": 1}


def test_a_session_seen_twice_counts_once_with_its_last_reading() -> None:
    out = TierCount()
    out.add_sessions(["1"], ["2"], ["3"])
    out.add_sessions(["2"], ["3"], [])  # SCAN returned 2 and 3 again, read anew
    assert out.sessions == {"1", "2", "3"}
    assert out.stale == {"3"}
    assert out.unknown == set()
