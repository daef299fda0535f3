"""sessions / locations / workers views and their repairs, through the CLI (real Redis)."""

from __future__ import annotations

import json
import time

import pytest
import redis

from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode
from tests.cli_helpers import cli


@pytest.fixture
def tier(sync_r, redis_url):
    """Two workers: 'live' (a connected client with its name) and 'dead' (leftovers only)."""
    now = time.time()
    sync_r.hset(keys.location_cache_key("overpass"), mapping={"id": "overpass", "name": "Overpass"})
    sync_r.hset(keys.location_cache_key("ruins"), mapping={"id": "ruins", "name": "Ruins"})
    players = {
        1: ("live", "overpass", now - 2, "Ash"),
        2: ("live", "overpass", now - 400, "Rook"),
        3: ("live", "ruins", None, "Vale"),  # unknown heartbeat: never stale
        4: ("dead", "ruins", now - 900, "Moss"),
    }
    for cid, (worker, loc, beat, name) in players.items():
        fields = {
            "worker_id": worker,
            "location_id": loc,
            "username": name,
            "hp": "80",
            "max_hp": "100",
            "stamina": "40",
            "max_stamina": "50",
            "level": str(cid),
        }
        fields["last_heartbeat"] = str(beat) if beat else "5234.5"  # the plan's loop clock
        sync_r.hset(keys.session_key(cid), mapping=fields)
        sync_r.expire(keys.session_key(cid), 1800)
        sync_r.sadd(keys.presence_key(loc), cid)
        sync_r.hset(keys.worker_connections_key(worker), str(cid), "connected")
    sync_r.rpush(keys.inventory_key(1), json.dumps({"item_id": "knife"}))
    sync_r.expire(keys.inventory_key(1), 600)
    sync_r.hset(
        keys.worker_meta_key("live"),
        mapping={
            "worker_id": "live",
            "heartbeat": str(now),
            "mode": "redis",
            "version": "0.1.0",
        },
    )
    sync_r.expire(keys.worker_meta_key("live"), 15)
    live_client = redis.Redis.from_url(redis_url, client_name="live")
    live_client.ping()
    yield {"REDIS_URL": redis_url}
    live_client.close()


def test_sessions_list_filters_and_sorts(tier):
    out = cli("sessions", "list", "--json", env=tier)
    listing = json.loads(out.stdout)
    assert [s["id"] for s in listing["sessions"]] == [1, 2, 3, 4]
    assert listing["sessions"][0]["location_name"] == "Overpass"
    assert listing["sessions"][2]["heartbeat_age"] is None  # unknown, shown as such

    stale = json.loads(cli("sessions", "list", "--stale", "300", "--json", env=tier).stdout)
    assert [s["id"] for s in stale["sessions"]] == [2, 4]  # 3's heartbeat is unknown
    assert all(s["stale"] for s in stale["sessions"])

    ruins = json.loads(cli("sessions", "list", "--location", "ruins", "--json", env=tier).stdout)
    assert [s["id"] for s in ruins["sessions"]] == [3, 4]
    live = json.loads(cli("sessions", "list", "--worker", "live", "--json", env=tier).stdout)
    assert [s["id"] for s in live["sessions"]] == [1, 2, 3]
    top = json.loads(
        cli(
            "sessions", "list", "--sort", "level", "--desc", "--limit", "2", "--json", env=tier
        ).stdout
    )
    assert [s["id"] for s in top["sessions"]] == [4, 3]
    assert top["total"] == 4

    human = cli("sessions", "list", env=tier)
    assert "unknown" in human.stdout
    assert cli("sessions", "list", "--sort", "bogus", env=tier).code == ExitCode.USAGE


def test_sessions_show_detail(tier, sync_r):
    detail = json.loads(cli("sessions", "show", "1", "--json", env=tier).stdout)
    assert detail["in_locations"] == ["overpass"]
    assert detail["inventory"]["items"] == 1
    assert 0 < detail["inventory"]["ttl"] <= 600
    assert detail["worker_alive"] is True
    dead = json.loads(cli("sessions", "show", "4", "--json", env=tier).stdout)
    assert dead["worker_alive"] is False
    unknown = json.loads(cli("sessions", "show", "3", "--json", env=tier).stdout)
    assert any("last_heartbeat" in p for p in unknown["problems"])
    missing = cli("sessions", "show", "999", env=tier)
    assert missing.code == ExitCode.REFUSED
    assert "no session" in missing.one_error_line()


def test_sessions_kick_is_confirmed_atomic_and_tells_the_player(tier, sync_r):
    listener = sync_r.pubsub()
    listener.subscribe(keys.player_channel(2))
    assert listener.get_message(timeout=5)["type"] == "subscribe"
    refused = cli("sessions", "kick", "2", env=tier)
    assert refused.code == ExitCode.USAGE  # no terminal, no --yes
    assert sync_r.exists(keys.session_key(2)) == 1
    dry = json.loads(cli("sessions", "kick", "2", "--dry-run", "--json", env=tier).stdout)
    assert dry["removed_from"] == ["overpass"]
    assert sync_r.exists(keys.session_key(2)) == 1

    out = cli("sessions", "kick", "2", "--reason", "stuck", "--yes", "--json", env=tier)
    assert out.code == 0
    assert json.loads(out.stdout)["notified"] == 1
    assert sync_r.exists(keys.session_key(2)) == 0
    assert not sync_r.sismember(keys.presence_key("overpass"), 2)
    assert not sync_r.hexists(keys.worker_connections_key("live"), "2")
    message = listener.get_message(timeout=2)
    body = json.loads(message["data"])
    assert body["type"] == "personal_message"
    assert body["payload"]["data"]["reason"] == "stuck"
    listener.close()
    (record,) = sync_r.xrevrange("echoes:audit", count=1)
    assert record[1]["action"] == "sessions.kick"


def test_locations_list_and_show(tier, sync_r):
    listing = json.loads(cli("locations", "list", "--json", env=tier).stdout)
    assert listing["locations"] == [
        {"id": "overpass", "name": "Overpass", "players": 2},
        {"id": "ruins", "name": "Ruins", "players": 2},
    ]
    assert json.loads(cli("locations", "list", "--top", "1", "--json", env=tier).stdout)[
        "locations"
    ] == [{"id": "overpass", "name": "Overpass", "players": 2}]
    sync_r.sadd(keys.presence_key("ruins"), 77)  # a member without a session
    detail = json.loads(cli("locations", "show", "ruins", "--json", env=tier).stdout)
    assert [m["id"] for m in detail["members"]] == [3, 4, 77]
    assert detail["drifted"] == [77]
    assert "drift" in cli("locations", "show", "ruins", env=tier).stdout
    assert cli("locations", "show", "bad id", env=tier).code == ExitCode.CONFIG


def test_workers_list_and_cleanup(tier, sync_r):
    workers = json.loads(cli("workers", "list", "--json", env=tier).stdout)["workers"]
    by_id = {w["id"]: w for w in workers}
    assert by_id["live"]["alive"] is True
    assert by_id["live"]["players"] == 3
    assert by_id["live"]["mode"] == "redis"
    assert by_id["dead"]["alive"] is False
    assert by_id["dead"]["connections"] == 1

    refused = cli("workers", "cleanup", "live", "--yes", env=tier)
    assert refused.code == ExitCode.REFUSED
    assert "alive" in refused.one_error_line()
    assert sync_r.exists(keys.session_key(1)) == 1

    out = cli("workers", "cleanup", "dead", "--yes", "--json", env=tier)
    assert out.code == 0
    result = json.loads(out.stdout)
    assert (result["sessions_removed"], result["presence_removed"]) == (1, 1)
    assert sync_r.exists(keys.session_key(4)) == 0
    assert sync_r.smembers(keys.presence_key("ruins")) == {"3"}
    assert sync_r.exists(keys.worker_connections_key("dead")) == 0
    # a player who reconnected elsewhere is not touched by a cleanup of the old worker
    sync_r.hset(keys.worker_connections_key("ghost"), "1", "connected")
    cli("workers", "cleanup", "ghost", "--yes", env=tier)
    assert sync_r.hget(keys.session_key(1), "worker_id") == "live"
