"""``sessions list --stale``'s walk step (contract/walk_scripts.SCAN_HASH_FIELDS, stale mode):
it reads a session's heartbeat first and the whole row only for the stale ones. Every kind of
heartbeat is judged as before, and a stale row comes back whole, on both topologies."""

from __future__ import annotations

import time

from echoes_ops.client.bulk import bulk
from echoes_ops.contract import keys
from echoes_ops.operations.sessions import list_sessions


async def test_stale_walk_judges_every_heartbeat_and_returns_whole_rows(tier_r) -> None:
    now = time.time()
    beats: dict[int, str | None] = {
        1: f"{now - 5:.3f}",  # fresh
        2: f"{now - 900:.3f}",  # stale
        3: "5234.5",  # the plan's loop clock: not an epoch, never stale
        4: "soon",  # not a number: unknown
        5: None,  # no heartbeat field: unknown
        6: f"{now - 4000:.3f}",  # stale, no TTL
    }
    commands: list[tuple[object, ...]] = []
    for cid, beat in beats.items():
        fields = ["worker_id", "w1", "location_id", "ruins", "username", f"p{cid}", "level", "7"]
        if beat is not None:
            fields += ["last_heartbeat", beat]
        commands.append(("HSET", keys.session_key(cid), *fields))
        if cid != 6:
            commands.append(("EXPIRE", keys.session_key(cid), 1800))
    commands.append(("SADD", keys.session_key(7), "not", "a", "hash"))  # another type: skipped
    commands += [("SET", f"filler:{n}", "x") for n in range(300)]
    await bulk(tier_r, commands)

    listing = await list_sessions(tier_r, stale_after=300)

    assert [row.character_id for row in listing.rows] == [2, 6]
    assert listing.scanned == 7  # every key under the pattern, the set included
    by_id = {row.character_id: row for row in listing.rows}
    for cid in (2, 6):
        assert by_id[cid].username == f"p{cid}"  # the whole row, not just the heartbeat
        assert by_id[cid].location_id == "ruins"
        assert by_id[cid].worker_id == "w1"
        assert by_id[cid].stale
        assert by_id[cid].level == 7
    assert 1700 < by_id[2].ttl <= 1800
    assert by_id[6].ttl == -1

    everyone = await list_sessions(tier_r)
    assert [row.character_id for row in everyone.rows] == [1, 2, 3, 4, 5, 6]
