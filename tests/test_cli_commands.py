"""The issue's walk-through against a real Redis: validate, preload (twice, then with a
changed file), cache status, cache invalidate, status — human and --json output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import redis

from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode
from tests.cli_helpers import cli
from tests.conftest import BUNDLED_GAMEDATA


@pytest.fixture
def world_copy(tmp_path: Path) -> Path:
    target = tmp_path / "gamedata"
    shutil.copytree(BUNDLED_GAMEDATA, target)
    return target


def test_validate_bundled_world():
    out = cli("validate", "--gamedata", str(BUNDLED_GAMEDATA), "--json")
    assert out.code == 0
    report = json.loads(out.stdout)
    assert report["ok"] is True
    assert report["problems"] == []
    assert report["counts"]["locations"] >= 40
    assert report["counts"]["items"] >= 150
    assert report["counts"]["npcs"] >= 20


def test_preload_twice_then_changed_file(world_copy, redis_url, sync_r):
    env = {"REDIS_URL": redis_url, "ECHOES_OPS_OPERATOR": "carol"}
    first = cli("preload", "--gamedata", str(world_copy), "--json", env=env)
    assert first.code == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["skipped"] is False
    static = [
        k
        for p in ("location:*:cache", "item:*:def", "npc:*:def")
        for k in sync_r.scan_iter(match=p)
    ]
    assert report["keys_written"] == len(static)
    audit = sync_r.xrevrange(keys.AUDIT_STREAM_KEY, count=1)
    assert audit[0][1]["action"] == "preload"
    assert audit[0][1]["result"] == "ok"
    assert audit[0][1]["operator"] == "carol"

    second = cli("preload", "--gamedata", str(world_copy), "--json", env=env)
    assert json.loads(second.stdout)["skipped"] is True

    human = cli("preload", "--gamedata", str(world_copy), env=env)
    assert "unchanged" in human.stdout

    # change one location's name in its YAML file
    path = next(p for p in world_copy.glob("*.yaml") if "id: overpass" in p.read_text())
    text = path.read_text()
    overpass = text.index("id: overpass")
    name_at = text.index("name:", overpass)
    line_end = text.index("\n", name_at)
    path.write_text(text[:name_at] + "name: Broken Overpass" + text[line_end:])

    dry = cli("preload", "--gamedata", str(world_copy), "--dry-run", env=env)
    assert dry.code == 0
    assert "dry run" in dry.stdout
    assert "~ location: overpass" in dry.stdout
    assert sync_r.hget("location:overpass:cache", "name") != "Broken Overpass"

    third = cli("preload", "--gamedata", str(world_copy), "--json", env=env)
    report = json.loads(third.stdout)
    assert report["diff"]["location"]["changed_ids"] == ["overpass"]
    assert report["keys_written"] == 1
    assert sync_r.hget("location:overpass:cache", "name") == "Broken Overpass"
    assert sync_r.hget(keys.GAMEDATA_VERSION_KEY, "operator") == "carol"


def test_preload_that_removes_entries_asks_and_refuses_without_a_terminal(
    world_copy, redis_url, sync_r
):
    env = {"REDIS_URL": redis_url}
    assert cli("preload", "--gamedata", str(world_copy), env=env).code == 0
    sync_r.hset(keys.location_cache_key("atlantis"), mapping={"id": "atlantis", "name": "A"})
    sync_r.sadd(keys.LOCATION_INDEX_KEY, "atlantis")
    refused = cli("preload", "--gamedata", str(world_copy), "--force", env=env)
    assert refused.code == ExitCode.USAGE
    line = refused.one_error_line()
    assert "removes entries gone from gamedata: 1 location (atlantis)" in line
    assert "refusing without --yes" in line
    assert sync_r.exists(keys.location_cache_key("atlantis")) == 1
    done = cli("preload", "--gamedata", str(world_copy), "--force", "--yes", env=env)
    assert done.code == 0, done.stderr
    assert sync_r.exists(keys.location_cache_key("atlantis")) == 0


def test_cache_status_in_sync_then_drift(redis_url, sync_r):
    env = {"REDIS_URL": redis_url}
    empty = cli("cache", "status", "--gamedata", str(BUNDLED_GAMEDATA), "--json", env=env)
    assert empty.code == ExitCode.PROBLEMS_FOUND
    assert json.loads(empty.stdout)["kinds"]["item"]["missing"] > 0

    assert cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), env=env).code == 0
    ok = cli("cache", "status", "--gamedata", str(BUNDLED_GAMEDATA), "--json", env=env)
    assert ok.code == 0
    status = json.loads(ok.stdout)
    assert status["in_sync"] is True
    assert status["loaded_version"] == status["gamedata_version"]

    sync_r.hset("location:overpass:cache", "name", "edited by hand")
    sync_r.hset("item:not_in_gamedata:def", mapping={"id": "x", "name": "Ghost"})
    sync_r.set("npc:broken:def", "not a hash")
    drift = cli("cache", "status", "--gamedata", str(BUNDLED_GAMEDATA), "--json", env=env)
    assert drift.code == ExitCode.PROBLEMS_FOUND
    kinds = json.loads(drift.stdout)["kinds"]
    assert kinds["location"]["stale_ids"] == ["overpass"]
    assert kinds["item"]["extra_ids"] == ["not_in_gamedata"]
    assert "npc:broken:def" in kinds["npc"]["malformed_keys"]

    human = cli("cache", "status", "--gamedata", str(BUNDLED_GAMEDATA), env=env)
    assert "DRIFT" in human.stdout


def test_cache_invalidate_confirms_and_reloads(redis_url, sync_r):
    env = {"REDIS_URL": redis_url}
    cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), env=env)
    item_id = sorted(k.split(":")[1] for k in sync_r.scan_iter(match="item:*:def", count=1000))[0]

    dry = cli("cache", "invalidate", "item", item_id, "--dry-run", "--json", env=env)
    assert json.loads(dry.stdout) == {
        "dry_run": True,
        "keys": [keys.item_def_key(item_id)],
        "deleted": 0,
    }
    assert sync_r.exists(keys.item_def_key(item_id)) == 1

    no_tty = cli("cache", "invalidate", "item", item_id, env=env)
    assert no_tty.code == ExitCode.USAGE
    assert "--yes" in no_tty.one_error_line()
    assert sync_r.exists(keys.item_def_key(item_id)) == 1

    done = cli("cache", "invalidate", "item", item_id, "--yes", "--json", env=env)
    assert json.loads(done.stdout)["deleted"] == 1
    assert sync_r.exists(keys.item_def_key(item_id)) == 0
    assert sync_r.hexists(keys.GAMEDATA_VERSION_KEY, "content_hash") is False

    # the next preload is not a no-op and restores the key
    again = cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), "--json", env=env)
    assert json.loads(again.stdout)["diff"]["item"]["added_ids"] == [item_id]
    assert sync_r.exists(keys.item_def_key(item_id)) == 1


def test_cache_invalidate_rejects_bad_ids_before_deleting(redis_url, sync_r):
    env = {"REDIS_URL": redis_url}
    cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), env=env)
    before = sync_r.dbsize()
    out = cli("cache", "invalidate", "location", "overpass", "bad*id", "--yes", env=env)
    assert out.code == ExitCode.CONFIG
    assert "'*'" in out.one_error_line()
    assert sync_r.dbsize() == before


def test_cache_invalidate_all_static(redis_url, sync_r):
    env = {"REDIS_URL": redis_url}
    cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), env=env)
    sync_r.set("player:1:session", "unrelated")
    out = cli("cache", "invalidate", "--all-static", "--yes", "--json", env=env)
    assert out.code == 0
    assert sync_r.exists("player:1:session") == 1
    assert list(sync_r.scan_iter(match="item:*:def")) == []
    assert list(sync_r.scan_iter(match="location:*:cache")) == []


def test_status_counts_the_tier(redis_url, sync_r):
    env = {"REDIS_URL": redis_url}
    cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), env=env)
    for pid in (1, 2, 3):
        sync_r.hset(keys.session_key(pid), mapping={"worker_id": "w1", "location_id": "ruins"})
    sync_r.sadd(keys.presence_key("ruins"), 1, 2)
    sync_r.sadd(keys.presence_key("overpass"), 3)
    sync_r.hset(keys.worker_meta_key("w1"), "pid", "1")
    w1 = redis.Redis.from_url(redis_url, client_name="w1")  # worker w1 is connected
    w1.ping()
    sync_r.hset(keys.worker_connections_key("w2"), "9", "connected")
    sync_r.set(keys.lock_key("spawn_manager"), "w1#abc", ex=60)
    out = cli("status", "--json", env=env)
    assert out.code == 0
    status = json.loads(out.stdout)
    assert status["counts"] == {
        "sessions": 3,
        "locations_with_players": 2,
        "players_in_locations": 3,
        "workers": 2,
        "workers_alive": 1,
        "locks": 1,
    }
    assert status["server"]["version"].startswith(("6.", "7.", "8."))
    assert status["gamedata"]["locations"] == len(list(sync_r.scan_iter("location:*:cache")))
    human = cli("status", env=env)
    assert "3 players in 2 locations" in human.stdout
    w1.close()
