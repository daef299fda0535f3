"""Warmup on one server and on Redis Cluster: the same contents, the same guarantees
(fresher wins, unchanged keys untouched, a second run writes nothing), each call's keys in
one slot on the cluster."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import asyncpg

from echoes_ops.client.nodes import primary_clients
from echoes_ops.contract import keys
from echoes_ops.contract.scripts_warmup import WARMUP_PLAYERS
from echoes_ops.local.demo import seed_demo
from echoes_ops.operations.warmup import warmup
from tests.test_warmup_budget import PLAYERS
from tests.warmup_helpers import DATA

CHARACTERS = 600
WRITES = {"hset", "hdel", "rpush", "expire", "del", "lpush", "unlink"}


async def _nodes(r: Any) -> list[Any]:
    return list(await primary_clients(r)) if hasattr(r, "nodes_manager") else [r]


async def _write_commands(r: Any) -> int:
    total = 0
    for node in await _nodes(r):
        stats = await node.info("commandstats")
        total += sum(
            int(v["calls"]) for k, v in stats.items() if k.removeprefix("cmdstat_") in WRITES
        )
    return total


async def _reset_stats(r: Any) -> None:
    for node in await _nodes(r):
        await node.config_resetstat()


async def _expected(database_url: str) -> tuple[dict[int, Any], dict[int, list[dict[str, Any]]]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = {row["id"]: row for row in await conn.fetch("SELECT * FROM characters")}
        items: dict[int, list[dict[str, Any]]] = {}
        for item in await conn.fetch("SELECT * FROM inventory ORDER BY character_id, item_id"):
            items.setdefault(item["character_id"], []).append(dict(item))
    finally:
        await conn.close()
    return rows, items


async def test_warmup_on_each_topology(database_url, tier_r, topology):
    await seed_demo(
        database_url,
        location_ids=sorted(DATA.locations),
        item_ids=sorted(DATA.items),
        characters=CHARACTERS,
    )
    rows, items = await _expected(database_url)
    # a live worker's fresher session (and its inventory), and one with an event-loop clock
    live = {"hp": "3", "worker_id": "worker-1", "last_heartbeat": repr(9e9 / 5)}
    live["last_heartbeat"] = repr(rows[1]["last_active_at"].timestamp() + 30)
    await tier_r.hset(keys.session_key(1), mapping=live)
    await tier_r.rpush(keys.inventory_key(1), '{"item_id":"live"}')
    await tier_r.hset(keys.session_key(2), mapping={"hp": "9", "last_heartbeat": "183422.511"})

    report = await warmup(tier_r, database_url, operator="test", what=PLAYERS, active_within=420)
    assert report.characters == CHARACTERS
    assert report.sessions.written == CHARACTERS - 2
    assert (report.sessions.skipped_fresher, report.sessions.skipped_unknown) == (1, 1)
    assert (report.inventories.skipped_fresher, report.inventories.skipped_unknown) == (1, 1)
    owners = set(items) - {1, 2}
    assert report.inventories.written == len(owners)
    assert await tier_r.hgetall(keys.session_key(1)) == live
    assert await tier_r.lrange(keys.inventory_key(1), 0, -1) == ['{"item_id":"live"}']
    assert await tier_r.hget(keys.session_key(2), "last_heartbeat") == "183422.511"
    for cid in (5, 77, CHARACTERS):
        session = await tier_r.hgetall(keys.session_key(cid))
        assert session["hp"] == str(rows[cid]["hp"])
        assert session["last_heartbeat"] == repr(rows[cid]["last_active_at"].timestamp())
        assert session["websocket_connected"] == "false"
        stored = await tier_r.lrange(keys.inventory_key(cid), 0, -1)
        assert [json.loads(text) for text in stored] == items.get(cid, [])
        assert 0 < await tier_r.ttl(keys.inventory_key(cid)) <= keys.INVENTORY_TTL
    if topology == "cluster":
        # every call named keys of one slot: a cross-slot call would have failed the run
        assert report.script_calls > CHARACTERS

    # a second run over unchanged data writes nothing, on any node
    await _reset_stats(tier_r)
    again = await warmup(tier_r, database_url, operator="test", what=PLAYERS, active_within=420)
    assert again.changed == 0
    assert again.sessions.unchanged == CHARACTERS - 2
    assert again.inventories.unchanged == CHARACTERS - 2
    assert await _write_commands(tier_r) == 1  # the DEL releasing the run's lock


async def test_cluster_calls_stay_in_one_slot(database_url, cluster_r):
    """Each script call the warmup sends names keys of one slot (the server would refuse
    others), and every node served its share."""
    await seed_demo(
        database_url,
        location_ids=sorted(DATA.locations),
        item_ids=sorted(DATA.items),
        characters=300,
    )
    nodes = await _nodes(cluster_r)
    for node in nodes:
        await node.config_set("slowlog-log-slower-than", 0)
        await node.config_set("slowlog-max-len", 10_000)
        await node.slowlog_reset()
    report = await warmup(cluster_r, database_url, operator="test", what=PLAYERS, active_within=420)
    assert report.sessions.written == 300
    sha = hashlib.sha1(WARMUP_PLAYERS.encode()).hexdigest()
    per_node = []
    for node in nodes:
        entries = await node.execute_command("SLOWLOG", "GET", "-1")
        calls = [e for e in entries if len(e[3]) > 1 and e[3][1] == sha]
        per_node.append(len(calls))
        await node.config_set("slowlog-log-slower-than", 10_000)
    assert all(n > 0 for n in per_node), per_node
    assert sum(per_node) == report.script_calls
