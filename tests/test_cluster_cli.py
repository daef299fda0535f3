"""The read commands of docs/cli.md, run through the CLI on one server and on the 3-primary /
3-replica cluster with the same data: the same answers on both (#14 item 5: "the whole CLI
reference run against the cluster"). ``reconcile``, ``doctor``, ``flags`` and ``audit`` run on
both tiers in one test, and their answers are compared field by field (less what differs by
run: times, ages, ports, tokens). Writers have their own cluster tests (preload,
reconcile --fix, kick, warmup, broadcast, locks hold; tests/faults for failover)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from echoes_ops.client.bulk import bulk
from echoes_ops.contract import keys
from tests.cli_helpers import cli

PLAYERS = 240


def _tier_commands() -> list[tuple[Any, ...]]:
    # heartbeats relative to when the tier is written, not to when this module was imported
    # (the suite can take longer than the staleness threshold to reach these tests)
    now = time.time()
    commands: list[tuple[Any, ...]] = []
    for loc, name in (("overpass", "Overpass"), ("ruins", "Ruins")):
        commands.append(("HSET", keys.location_cache_key(loc), "id", loc, "name", name))
    for cid in range(1, PLAYERS + 1):
        worker = "w-live" if cid % 2 else "w-dead"
        loc = "overpass" if cid % 3 else "ruins"
        beat = now - 900 if cid % 5 == 0 else now - 3
        key = keys.session_key(cid)
        commands += [
            ("HSET", key, "worker_id", worker, "location_id", loc, "username", f"p{cid}"),
            ("HSET", key, "hp", "80", "max_hp", "100", "level", str(cid % 7 + 1)),
            ("HSET", key, "last_heartbeat", repr(beat)),
            ("EXPIRE", key, 1800),
            ("SADD", keys.presence_key(loc), cid),
            ("HSET", keys.worker_connections_key(worker), str(cid), "connected"),
        ]
    commands.append(("HSET", keys.worker_meta_key("w-live"), "heartbeat", repr(now)))
    commands.append(("HSET", keys.worker_meta_key("w-live"), "mode", "redis"))
    commands.append(("EXPIRE", keys.worker_meta_key("w-live"), 60))
    for i in range(12):
        commands.append(("SET", keys.lock_key(f"job{i}"), f"ops#{i}", "PX", 600_000))
    return commands


@pytest.fixture
async def tier_env(tier_r, tier_url) -> dict[str, str]:
    await bulk(tier_r, _tier_commands())
    return {"REDIS_URL": tier_url}


def _json(env: dict[str, str], *args: str, codes: tuple[int, ...] = (0,)) -> Any:
    out = cli(*args, "--json", env=env)
    assert out.code in codes, (args, out.code, out.stderr)
    assert "Traceback" not in out.stderr
    return json.loads(out.stdout)


def test_status_counts_the_whole_tier(tier_env, topology) -> None:
    status = _json(tier_env, "status")
    assert status["counts"] == {
        "sessions": PLAYERS,
        "locations_with_players": 2,
        "players_in_locations": PLAYERS,
        "workers": 2,
        "workers_alive": 0,  # no client named w-live is connected
        "locks": 12,
    }
    assert status["server"]["keys"] >= PLAYERS + 2 + 2 + 2 + 12
    expected = "cluster 3 primaries / 3 replicas" if topology == "cluster" else "standalone"
    assert status["target"]["topology"] == expected


def test_sessions_list_and_show(tier_env) -> None:
    listing = _json(tier_env, "sessions", "list")
    assert [s["id"] for s in listing["sessions"]] == list(range(1, PLAYERS + 1))
    stale = _json(tier_env, "sessions", "list", "--stale", "300")
    assert [s["id"] for s in stale["sessions"]] == list(range(5, PLAYERS + 1, 5))
    ruins = _json(tier_env, "sessions", "list", "--location", "ruins")
    assert len(ruins["sessions"]) == PLAYERS // 3
    shown = _json(tier_env, "sessions", "show", "7")
    assert shown["in_locations"] == ["overpass"]
    assert shown["fields"]["username"] == "p7"


def test_locations_list_and_show(tier_env) -> None:
    listing = _json(tier_env, "locations", "list")
    assert listing["locations"] == [
        {"id": "overpass", "name": "Overpass", "players": PLAYERS - PLAYERS // 3},
        {"id": "ruins", "name": "Ruins", "players": PLAYERS // 3},
    ]
    detail = _json(tier_env, "locations", "show", "ruins")
    assert [m["id"] for m in detail["members"]] == list(range(3, PLAYERS + 1, 3))
    assert detail["drifted"] == []


def test_workers_and_locks(tier_env) -> None:
    workers = {w["id"]: w for w in _json(tier_env, "workers", "list")["workers"]}
    assert set(workers) == {"w-live", "w-dead"}
    assert workers["w-live"]["connections"] == PLAYERS // 2
    assert workers["w-live"]["mode"] == "redis"
    locks = _json(tier_env, "locks", "list")
    assert sorted(lock["name"] for lock in locks["locks"]) == sorted(f"job{i}" for i in range(12))
    one = _json(tier_env, "locks", "show", "job3")
    assert one["value"] == "ops#3"


def test_stats_and_latency(tier_env) -> None:
    stats = _json(tier_env, "stats")
    families = stats["families"]
    assert families["sessions"]["keys"] == PLAYERS
    assert families["presence"]["keys"] == 2
    assert families["locks"]["keys"] == 12
    assert 0 < families["sessions"]["sampled_keys"] <= 64  # MEMORY USAGE sample, all nodes
    assert families["sessions"]["estimated_bytes"] > 0
    latency = _json(tier_env, "latency")
    assert latency["round_trip"]["samples"] > 0
    # doctor and reconcile: compared answer for answer below (test_*_on_both_topologies)


def test_cache_status_and_preload_dry_run(tier_env) -> None:
    cache = _json(tier_env, "cache", "status", codes=(0, 1))
    assert cache["in_sync"] is False  # nothing preloaded
    plan = _json(tier_env, "preload", "--dry-run")
    assert plan["dry_run"] is True
    # flags and audit: compared answer for answer below (test_*_on_both_topologies)


# -- the same data on both topologies at once, the answers compared ------------------------


@pytest.fixture
async def both(r, redis_url, cluster_r, cluster_url) -> dict[str, dict[str, str]]:
    """The same tier written to the session's server and to its cluster: the environment
    of each, by topology."""
    for client in (r, cluster_r):
        await bulk(client, _tier_commands())
    return {"standalone": {"REDIS_URL": redis_url}, "cluster": {"REDIS_URL": cluster_url}}


def _on_both(both: dict[str, dict[str, str]], *args: str, codes=(0,), **extra: str) -> list[Any]:
    """``echoes-ops ARGS --json`` on one server, then on the cluster: the two answers."""
    return [_json({**env, **extra}, *args, codes=codes) for env in both.values()]


def _without(data: Any, *names: str) -> Any:
    """``data`` with the fields ``names`` (at any depth) left out: what differs by run."""
    if isinstance(data, dict):
        return {k: _without(v, *names) for k, v in data.items() if k not in names}
    if isinstance(data, list):
        return [_without(v, *names) for v in data]
    return data


def test_reconcile_finds_the_same_on_both_topologies(both) -> None:
    one, many = _on_both(both, "reconcile", codes=(1,))  # 1: drift found
    assert many["note"].startswith("Redis Cluster: repairs across slots")
    assert one["note"] is None
    # heartbeat ages and the grace left move with the clock; the cluster's note is above
    volatile = ("elapsed_s", "heartbeat_age", "pending_ready_in_s", "note", "rechecked_players")
    assert _without(one, *volatile) == _without(many, *volatile)
    # and what they agree on is the tier as written: every worker dead (w-live's meta has
    # no connected client), 48 sessions past the grace (heartbeat 900 s old), 192 within it
    assert one["scanned"] | {"rechecked_players": 0} == {
        "keys": PLAYERS + 2 + 2 + 2 + 1 + 12,
        "sessions": PLAYERS,
        "location_sets": 2,
        "presence_members": PLAYERS,
        "workers": 2,
        "rechecked_players": 0,
    }
    found = {kind: k["found"] for kind, k in one["kinds"].items() if k["found"]}
    assert found == {"dead_worker": PLAYERS // 5}
    assert one["kinds"]["dead_worker"]["pending"] == PLAYERS - PLAYERS // 5
    examples = [(e["id"], e["worker_id"]) for e in many["kinds"]["dead_worker"]["examples"]]
    assert examples == [(cid, "w-live" if cid % 2 else "w-dead") for cid in range(5, 51, 5)]
    assert (one["drift"], one["fixed"], one["dry_run"]) == (PLAYERS // 5, 0, True)


def test_doctor_finds_the_same_on_both_topologies(both) -> None:
    one, many = _on_both(both, "doctor", codes=(1,))  # 1: static data not loaded
    verdicts = [{c["id"]: c["verdict"] for c in answer["checks"]} for answer in (one, many)]
    assert verdicts[0] == verdicts[1]
    assert verdicts[0]["static_data"] == "fail"
    assert verdicts[0]["dead_workers"] == "warn"
    assert one["counts"] == many["counts"]
    # the same findings, word for word, but where the topology itself is the subject
    per_topology = {"cluster", "memory_headroom"}
    for a, b in zip(one["checks"], many["checks"], strict=True):
        if a["id"] not in per_topology:
            assert (a["id"], a["summary"]) == (b["id"], b["summary"])
            where = ("heartbeat_age", "port", "connected_via")  # ages, and which server
            assert _without(a["details"], *where) == _without(b["details"], *where)
    dead = next(c for c in many["checks"] if c["id"] == "dead_workers")
    assert "w-dead" in json.dumps(dead)
    assert "w-live" in json.dumps(dead)
    memory = [{c["id"]: c for c in a["checks"]}["memory_headroom"] for a in (one, many)]
    # the same host: its memory once, not once per primary
    assert memory[0]["details"]["system_bytes"] == memory[1]["details"]["system_bytes"] > 0
    cluster = {c["id"]: c for c in many["checks"]}["cluster"]
    assert cluster["summary"].startswith("cluster 3 primaries / 3 replicas, state ok, all 16384")
    assert {c["id"]: c for c in one["checks"]}["cluster"]["summary"].startswith("one server")


def test_flags_set_and_status_agree_on_both_topologies(both, database_url) -> None:
    import asyncio

    from echoes_ops.operations.migrations import migrate

    asyncio.run(migrate(database_url))
    volatile = ("version", "detail")  # the change's time, in its version and its lines
    before = _on_both(both, "flags", "status", "REDIS_ENABLED", DATABASE_URL=database_url)
    assert _without(before[0], *volatile) == _without(before[1], *volatile)
    assert before[0]["headline"]["value"] == "true"  # never set: the default
    sets = []
    for env in both.values():  # the one PostgreSQL: each topology gets its own change
        sets.append(
            _json(
                {**env, "DATABASE_URL": database_url},
                *("flags", "set", "REDIS_ENABLED", "false", "--reason", "compare", "--yes"),
            )
        )
        after = _json({**env, "DATABASE_URL": database_url}, "flags", "status", "REDIS_ENABLED")
        redis = {s["source"]: s for s in after["sources"]}["redis"]
        assert (redis["state"], redis["value"]) == ("set", "false")  # the mirror on this tier
        assert redis["version"] == sets[-1]["version"]
        assert after["agree"] is True
        assert after["headline"]["value"] == "false"
    assert sets[0]["targets"]["redis"] == sets[1]["targets"]["redis"] | {
        "detail": sets[0]["targets"]["redis"]["detail"]
    }
    assert sets[1]["targets"]["redis"]["status"] == "ok"
    assert sets[1]["targets"]["redis"]["detail"] == (
        "echoes:flags REDIS_ENABLED=false; config_changed sent to 0 subscriber(s) of game:workers"
    )
    # the first set changed it; on the second tier PostgreSQL already held false
    assert (sets[0]["changed"], sets[0]["previous"]) == (True, "true")


def _records(answer: dict[str, Any]) -> list[Any]:
    """The audit records read, without what differs by run (times, stream ids, tokens)."""
    kept = [
        {k: v for k, v in r.items() if k not in ("at", "id", "record_id")}
        for r in answer["records"]
    ]
    return _without(kept, "value", "token", "msg_id")


def test_audit_reads_the_same_trail_on_both_topologies(both) -> None:
    """Writes audited to each tier's Redis stream (no PostgreSQL): the same records read back."""
    for env in both.values():
        for args in (
            ("locks", "hold", "job99", "--ttl", "60", "--reason", "compare"),
            ("locks", "release", "job99"),
            ("broadcast", "global", "compare", "--yes"),
            ("sessions", "kick", "7", "--reason", "compare", "--yes"),
        ):
            _json(env, *args)
    one, many = _on_both(both, "audit", "--limit", "10")
    assert one["source"] == many["source"] == "redis"
    assert _records(one) == _records(many)
    actions = [(r["action"], r["result"]) for r in many["records"]]
    assert actions == [
        ("sessions.kick", "ok"),
        ("broadcast.global", "ok"),
        ("locks.release", "ok"),
        ("locks.hold", "ok"),
    ]
    kick = many["records"][0]
    assert kick["args"] == {"id": 7, "reason": "compare", "via": "cli"}
    narrowed = _on_both(both, "audit", "--action", "locks")
    assert [[r["action"] for r in a["records"]] for a in narrowed] == [
        ["locks.release", "locks.hold"]
    ] * 2


def test_workers_cleanup_removes_the_same_on_both_topologies(both) -> None:
    """A dead worker's players span every slot: the same plan, the same removals, and the
    same tier left behind on both."""
    import redis
    from redis.cluster import RedisCluster

    for topology, env in both.items():  # player 2 reconnected to w-live: w-dead's entry stays
        url = env["REDIS_URL"].split("?")[0]
        client = RedisCluster.from_url(url) if topology == "cluster" else redis.Redis.from_url(url)
        try:
            client.hset(keys.session_key(2), "worker_id", "w-live")
        finally:
            client.close()
    plans = _on_both(both, "workers", "cleanup", "w-dead", "--dry-run")
    assert _without(plans[0], "elapsed_s") == _without(plans[1], "elapsed_s")
    done = _on_both(both, "workers", "cleanup", "w-dead", "--yes")
    assert _without(done[0], "elapsed_s") == _without(done[1], "elapsed_s")
    assert done[1]["dry_run"] is False
    after = _on_both(both, "status")
    assert after[0]["counts"] == after[1]["counts"]
    assert done[1]["sessions_removed"] == done[1]["presence_removed"] == PLAYERS // 2 - 1
    assert after[1]["counts"]["sessions"] == PLAYERS // 2 + 1  # w-live's players stay
    assert after[1]["counts"]["players_in_locations"] == PLAYERS // 2 + 1
    assert after[1]["counts"]["workers"] == 1
    sessions = _on_both(both, "sessions", "list")
    assert [s["id"] for s in sessions[1]["sessions"]] == [1, 2, *range(3, PLAYERS + 1, 2)]
    assert _without(sessions[0], "heartbeat_age", "ttl") == _without(
        sessions[1], "heartbeat_age", "ttl"
    )
