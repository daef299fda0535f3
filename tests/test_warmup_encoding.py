"""What warmup writes, field for field (`operations/warmup/encoding.py`): sessions and
inventories as the contract encodes them, with their TTLs, against a real PostgreSQL (reference
schema) and a real redis-server."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from echoes_ops.contract import keys
from echoes_ops.contract.session import Session
from tests.warmup_helpers import CHARACTERS, env_for, migrated, seed, sql, warm

__all__ = ["migrated"]  # the fixture, used by name


def expected_session(row: asyncpg.Record) -> dict[str, str]:
    """The contract's encoding, computed independently of the code under test."""
    out = {
        "location_id": row["location_id"],
        "username": row["name"],
        "hp": str(row["hp"]),
        "max_hp": str(row["max_hp"]),
        "stamina": str(row["stamina"]),
        "max_stamina": str(row["max_stamina"]),
        "level": str(row["level"]),
        "xp": str(row["xp"]),
        "websocket_connected": "false",
        "last_heartbeat": repr(row["last_active_at"].timestamp()),
    }
    if row["last_movement_time"] is not None:
        out["last_movement_time"] = repr(row["last_movement_time"])
    return out


def test_contents_and_ttls_are_exact(migrated, redis_url, sync_r):
    seed(migrated)
    # rows without a value (the field is left out) beside full rows, in the same calls
    sql(migrated, "UPDATE characters SET last_movement_time = NULL WHERE id % 7 = 2")
    code, report, _ = warm(env_for(migrated, redis_url))
    assert code == 0, report
    assert report["ok"] is True
    assert report["partial"] is False
    assert report["characters"] == CHARACTERS
    assert report["sessions"] == {
        "written": CHARACTERS,
        "unchanged": 0,
        "skipped_fresher": 0,
        "skipped_unknown": 0,
    }
    rows = sql(migrated, "SELECT * FROM characters ORDER BY id")
    items = sql(migrated, "SELECT * FROM inventory ORDER BY character_id, item_id")
    assert report["inventories"]["written"] == len({r["character_id"] for r in items})
    assert report["inventories"]["rows"] == len(items)

    pipe = sync_r.pipeline(transaction=False)
    for row in rows:
        pipe.hgetall(keys.session_key(row["id"]))
        pipe.ttl(keys.session_key(row["id"]))
        pipe.lrange(keys.inventory_key(row["id"]), 0, -1)
        pipe.ttl(keys.inventory_key(row["id"]))
    replies = pipe.execute()
    owned: dict[int, list[dict[str, Any]]] = {}
    for item in items:
        owned.setdefault(item["character_id"], []).append(dict(item))
    for index, row in enumerate(rows):
        stored, ttl, inventory, inventory_ttl = replies[4 * index : 4 * index + 4]
        assert stored == expected_session(row)
        assert keys.SESSION_TTL - 10 <= ttl <= keys.SESSION_TTL
        assert [json.loads(text) for text in inventory] == owned.get(row["id"], [])
        assert all(", " not in text and '": ' not in text for text in inventory)  # compact
        if inventory:
            assert keys.INVENTORY_TTL - 10 <= inventory_ttl <= keys.INVENTORY_TTL
    assert sum(row["last_movement_time"] is None for row in rows) >= CHARACTERS // 8
    # decodes under the contract's reader without problems
    session = Session.decode(rows[0]["id"], replies[0])
    assert session.problems == ()
    assert session.websocket_connected is False
    assert session.worker_id is None
