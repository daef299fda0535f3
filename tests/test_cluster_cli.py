"""The read commands of docs/cli.md, run through the CLI on one server and on the 3-primary /
3-replica cluster with the same data: the same answers on both (#14 item 5: "the whole CLI
reference run against the cluster"). Writers have their own cluster tests (preload,
reconcile --fix, kick, warmup, broadcast, locks hold; tests/faults for failover)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from echoes_ops.client.bulk import bulk
from echoes_ops.contract import keys
from tests.cli_helpers import cli

NOW = time.time()
PLAYERS = 240


def _tier_commands() -> list[tuple[Any, ...]]:
    commands: list[tuple[Any, ...]] = []
    for loc, name in (("overpass", "Overpass"), ("ruins", "Ruins")):
        commands.append(("HSET", keys.location_cache_key(loc), "id", loc, "name", name))
    for cid in range(1, PLAYERS + 1):
        worker = "w-live" if cid % 2 else "w-dead"
        loc = "overpass" if cid % 3 else "ruins"
        beat = NOW - 900 if cid % 5 == 0 else NOW - 3
        key = keys.session_key(cid)
        commands += [
            ("HSET", key, "worker_id", worker, "location_id", loc, "username", f"p{cid}"),
            ("HSET", key, "hp", "80", "max_hp", "100", "level", str(cid % 7 + 1)),
            ("HSET", key, "last_heartbeat", repr(beat)),
            ("EXPIRE", key, 1800),
            ("SADD", keys.presence_key(loc), cid),
            ("HSET", keys.worker_connections_key(worker), str(cid), "connected"),
        ]
    commands.append(("HSET", keys.worker_meta_key("w-live"), "heartbeat", repr(NOW)))
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


def test_stats_doctor_latency_and_reconcile(tier_env) -> None:
    stats = _json(tier_env, "stats")
    families = stats["families"]
    assert families["sessions"]["keys"] == PLAYERS
    assert families["presence"]["keys"] == 2
    assert families["locks"]["keys"] == 12
    assert 0 < families["sessions"]["sampled_keys"] <= 64  # MEMORY USAGE sample, all nodes
    assert families["sessions"]["estimated_bytes"] > 0
    doctor = _json(tier_env, "doctor", codes=(0, 1))
    assert {c["id"] for c in doctor["checks"]} >= {"cluster", "eviction_policy", "dead_workers"}
    latency = _json(tier_env, "latency")
    assert latency["round_trip"]["samples"] > 0
    reconcile = _json(tier_env, "reconcile", codes=(0, 1))
    assert reconcile["dry_run"] is True


def test_cache_status_preload_dry_run_flags_and_audit(tier_env) -> None:
    cache = _json(tier_env, "cache", "status", codes=(0, 1))
    assert cache["in_sync"] is False  # nothing preloaded
    plan = _json(tier_env, "preload", "--dry-run")
    assert plan["dry_run"] is True
    flags = _json(tier_env, "flags", "status", codes=(0, 1))
    assert flags is not None
    audit = cli("audit", "--json", env=tier_env)
    assert audit.code == 0, audit.stderr
