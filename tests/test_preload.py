"""Preload against a real redis-server: contents, diffs, no-ops, atomicity, refusals."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest
import redis

from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.errors import BusyError, PermissionDeniedError, RefusedError
from echoes_ops.gamedata import load_gamedata
from echoes_ops.gamedata.models import GameData
from echoes_ops.operations.preload import PRELOAD_LOCK, preload
from tests.conftest import BUNDLED_GAMEDATA


@pytest.fixture(scope="module")
def world() -> GameData:
    return load_gamedata(BUNDLED_GAMEDATA)


def generation(data: GameData, tag: str) -> GameData:
    """The same world with every description marked ``tag``."""
    return replace(
        data,
        locations={k: replace(v, description=tag) for k, v in data.locations.items()},
        items={k: replace(v, description=tag) for k, v in data.items.items()},
        npcs={k: replace(v, description=tag) for k, v in data.npcs.items()},
    )


async def test_preload_writes_plan_encoding(r, sync_r, world):
    result = await preload(r, world, operator="alice")
    counts = world.counts()
    assert result.keys_written == sum(counts.values())
    assert not result.skipped
    assert not result.dry_run

    overpass = sync_r.hgetall("location:overpass:cache")
    assert overpass["name"] == world.locations["overpass"].name
    exits = json.loads(overpass["exits"])
    assert exits["north"] == "gas_station"
    assert exits["south"] == "ruins"
    assert isinstance(json.loads(overpass["interactables"]), list)
    assert float(overpass["x"]) == world.locations["overpass"].x
    assert sync_r.ttl("location:overpass:cache") == -1  # static data: no TTL

    item_id, item = next(iter(world.items.items()))
    stored = sync_r.hgetall(keys.item_def_key(item_id))
    assert stored["equippable"] in {"true", "false"}
    assert stored["equippable"] == ("true" if item.equippable else "false")
    assert json.loads(stored["stats"]) == dict(item.stats)
    assert "None" not in stored.values()
    assert int(stored["tier"]) == item.tier

    npc_id = next(iter(world.npcs))
    assert sync_r.hget(keys.npc_def_key(npc_id), "name") == world.npcs[npc_id].name

    version = sync_r.hgetall(keys.GAMEDATA_VERSION_KEY)
    assert version["content_hash"] == result.version
    assert version["operator"] == "alice"
    assert int(version["items"]) == counts["items"]
    assert sync_r.smembers(keys.LOCATION_INDEX_KEY) == set(world.locations)
    assert sync_r.dbsize() == sum(counts.values()) + 2  # + version record + location index
    assert sync_r.exists(keys.lock_key(PRELOAD_LOCK)) == 0  # lock released


async def test_unchanged_dataset_is_a_noop_unless_forced(r, sync_r, world):
    await preload(r, world, operator="alice")
    sync_r.hset("location:overpass:cache", "name", "tampered")
    again = await preload(r, world, operator="bob")
    assert again.skipped
    assert sync_r.hget("location:overpass:cache", "name") == "tampered"
    assert sync_r.hget(keys.GAMEDATA_VERSION_KEY, "operator") == "alice"

    forced = await preload(r, world, operator="bob", force=True)
    assert not forced.skipped
    assert forced.diffs["location"].changed == ["overpass"]
    assert sync_r.hget("location:overpass:cache", "name") == world.locations["overpass"].name


async def test_changed_dataset_adds_changes_and_removes(r, sync_r, world):
    await preload(r, world, operator="alice")
    items = dict(world.items)
    removed_id = sorted(items)[0]
    changed_id = sorted(items)[1]
    del items[removed_id]
    items[changed_id] = replace(items[changed_id], name="Renamed Thing")
    template = items[changed_id]
    items["brand_new_item"] = replace(template, id="brand_new_item", name="Brand New")
    changed_world = replace(world, items=items)

    # a field the plan's code once wrote must disappear with the rewrite
    sync_r.hset(keys.item_def_key(changed_id), "legacy_field", "x")

    dry = await preload(r, changed_world, operator="alice", dry_run=True)
    assert dry.diffs["item"].added == ["brand_new_item"]
    assert dry.diffs["item"].changed == [changed_id]
    assert dry.diffs["item"].removed == [removed_id]
    assert sync_r.exists(keys.item_def_key(removed_id)) == 1  # dry run wrote nothing
    assert sync_r.exists(keys.item_def_key("brand_new_item")) == 0

    result = await preload(r, changed_world, operator="alice")
    assert result.keys_removed == 1
    assert sync_r.exists(keys.item_def_key(removed_id)) == 0
    assert sync_r.hget(keys.item_def_key("brand_new_item"), "name") == "Brand New"
    stored = sync_r.hgetall(keys.item_def_key(changed_id))
    assert stored["name"] == "Renamed Thing"
    assert "legacy_field" not in stored
    assert sync_r.hget(keys.GAMEDATA_VERSION_KEY, "content_hash") == result.version


async def test_dry_run_on_empty_redis_writes_nothing(r, sync_r, world):
    result = await preload(r, world, operator="alice", dry_run=True)
    assert result.dry_run
    assert result.diffs["item"].added
    assert result.estimated_bytes > 0
    assert sync_r.dbsize() == 0


async def test_key_of_wrong_type_is_replaced(r, sync_r, world):
    item_id = next(iter(world.items))
    sync_r.set(keys.item_def_key(item_id), "a string, not a hash")
    await preload(r, world, operator="alice")
    assert sync_r.type(keys.item_def_key(item_id)) == "hash"


def _reader(url: str, expected: int, stop: threading.Event, seen: list[str], errors: list[str]):
    """Read every static description in one MULTI, as a consistency probe."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        while not stop.is_set():
            names = sorted(client.scan_iter(match="item:*:def", count=1000))
            pipe = client.pipeline(transaction=True)
            for name in names:
                pipe.hget(name, "description")
            pipe.hget(keys.GAMEDATA_VERSION_KEY, "content_hash")
            values = pipe.execute()
            descriptions = set(values[:-1])
            if not names:
                continue
            if len(descriptions) != 1 or None in descriptions:
                errors.append(f"mixed or missing: {sorted(map(str, descriptions))[:4]}")
            if len(names) != expected:
                errors.append(f"saw {len(names)} item keys, expected {expected}")
            seen.append(next(iter(descriptions)) or "")
    finally:
        client.close()


async def test_concurrent_reader_never_sees_a_mix(r, redis_url, world):
    """A reader polling in transactions sees all-old or all-new, never a mix or a gap."""
    first = generation(world, "generation-a")
    await preload(r, first, operator="alice")
    stop = threading.Event()
    seen: list[str] = []
    errors: list[str] = []
    thread = threading.Thread(
        target=_reader, args=(redis_url, len(world.items), stop, seen, errors), daemon=True
    )
    thread.start()
    try:
        for index in range(8):
            tag = "generation-b" if index % 2 == 0 else "generation-a"
            await preload(r, generation(world, tag), operator="alice")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not errors, errors[:5]
    assert len(seen) > 5
    assert {"generation-a", "generation-b"} <= set(seen)


async def test_refuses_without_memory_headroom(private_redis, world):
    private_redis.extra_args = ["--maxmemory", "1200000", "--maxmemory-policy", "noeviction"]
    private_redis.start()
    async with open_redis(Settings.from_dsn(private_redis.url).redis_target()) as r:
        with pytest.raises(RefusedError, match="memory headroom"):
            await preload(r, world, operator="alice")
        assert await r.dbsize() == 0


async def test_busy_when_another_preload_holds_the_lock(r, sync_r, world):
    sync_r.set(keys.lock_key(PRELOAD_LOCK), "operator.bob#abc", ex=60)
    with pytest.raises(BusyError):
        await preload(r, world, operator="alice")
    assert sync_r.exists(keys.GAMEDATA_VERSION_KEY) == 0
    assert sync_r.get(keys.lock_key(PRELOAD_LOCK)) == "operator.bob#abc"


async def test_acl_denial_mid_transaction_applies_nothing(r, sync_r, redis_url, world):
    """A user that may not HSET: the queued transaction aborts as a whole."""
    await preload(r, generation(world, "old"), operator="alice")
    sync_r.execute_command("ACL", "SETUSER", "nohset", "on", ">pw", "~*", "+@all", "-hset")
    try:
        settings = Settings.from_dsn(redis_url.replace("redis://", "redis://nohset:pw@"))
        with pytest.raises(PermissionDeniedError, match="hset"):
            async with open_redis(settings.redis_target()) as limited:
                await preload(limited, generation(world, "new"), operator="alice")
        descriptions = {
            sync_r.hget(keys.item_def_key(i), "description") for i in list(world.items)[:50]
        }
        assert descriptions == {"old"}
        assert sync_r.exists(keys.lock_key(PRELOAD_LOCK)) == 0
    finally:
        sync_r.execute_command("ACL", "DELUSER", "nohset")


async def test_unchanged_version_with_missing_keys_is_repaired(r, sync_r, world):
    """An eviction or a manual DEL leaves the version record intact; preload notices."""
    await preload(r, world, operator="alice")
    victim = keys.location_cache_key("ruins")
    sync_r.delete(victim)
    result = await preload(r, world, operator="alice")
    assert not result.skipped
    assert result.diffs["location"].added == ["ruins"]
    assert result.keys_written == 1
    assert sync_r.exists(victim) == 1


async def test_lock_lost_after_the_commit_is_reported_not_hidden(r, sync_r, world, monkeypatch):
    """The swap committed, then another owner took the preload lock (its TTL ran out while the
    verify pass ran, say): the result keeps the committed version and says the lock was lost,
    instead of reporting a clean run."""
    from echoes_ops.operations import preload_checks

    real_verify = preload_checks.verify

    async def verify_then_lose_the_lock(*args, **kwargs):
        checked = await real_verify(*args, **kwargs)
        sync_r.set(keys.lock_key(PRELOAD_LOCK), "operator.bob#other", ex=60)
        return checked

    monkeypatch.setattr(preload_checks, "verify", verify_then_lose_the_lock)
    result = await preload(r, world, operator="alice")
    assert sync_r.hget(keys.GAMEDATA_VERSION_KEY, "content_hash") == result.version
    assert result.verified["verified_keys"] > 0
    assert "lost lock:" in result.verified["lock_lost_after_commit"]
    assert sync_r.get(keys.lock_key(PRELOAD_LOCK)) == "operator.bob#other"  # not released


def test_render_says_not_verified_when_the_lock_was_lost_before_the_check(capsys):
    from echoes_ops.cli import render
    from echoes_ops.operations.preload import PreloadResult

    result = PreloadResult("a" * 64, None, dry_run=False, skipped=False, keys_written=3)
    result.verified = {"verify": "not run", "lock_lost_after_commit": "lost lock:preload"}
    render.preload(result)
    out = capsys.readouterr().out
    assert "not verified (the preload lock was lost before the check)" in out
    assert "verified 0 keys" not in out


async def test_the_diff_walks_the_keyspace_once_for_all_three_families(r, sync_r, world):
    """A routine preload's server time is its SCAN walk of the whole keyspace (#16: 96% of
    a 10-entry change on 1M keys, docs/benchmarks/impact.md), so the diff finds locations, items and
    NPCs in one walk, not one walk each; look-alike keys are not taken for entries."""
    await preload(r, world, operator="alice")
    pipe = sync_r.pipeline(transaction=False)
    for n in range(3000):
        pipe.set(f"filler:{n}", "x")
    pipe.hset("location:a:b:cache", "x", "1")  # matches the glob, is no location
    pipe.hset("item:x:defs", "x", "1")
    pipe.hset("lock:x:cache", "x", "1")
    pipe.execute()
    sync_r.config_set("slowlog-log-slower-than", 0)
    sync_r.config_set("slowlog-max-len", 1_000_000)
    sync_r.slowlog_reset()
    try:
        dry = await preload(r, world, operator="alice", dry_run=True, force=True)
        entries = sync_r.slowlog_get(1_000_000)
    finally:
        sync_r.config_set("slowlog-log-slower-than", 10_000)
        sync_r.config_set("slowlog-max-len", 128)
    starts = [
        e["command"]
        for e in entries
        if e["command"].split()[:2] in (["SCAN", "0"], [b"SCAN", b"0"])
    ]
    assert len(starts) == 1, starts  # one walk (each walk starts once at cursor 0)
    assert all(d.removed == [] for d in dry.diffs.values())
    assert all(d.changed == [] and d.added == [] for d in dry.diffs.values())
    assert sum(d.unchanged for d in dry.diffs.values()) == len(world.locations) + len(
        world.items
    ) + len(world.npcs)


def test_preload_yes_walks_the_keyspace_once_and_still_warns_of_a_long_swap(
    redis_url, sync_r, tmp_path
):
    """With --yes nothing is asked, so the preview stops at the unchanged check and the
    run's diff under the lock is the only keyspace walk (it was two: preview and run); the
    warning that the atomic swap holds the server past the budget comes from that diff,
    before the swap."""
    from benchmarks.worldgen import make_world, write_yaml
    from tests.cli_helpers import cli

    world = make_world(800, 100)
    write_yaml(world, tmp_path / "world")
    items = {k: replace(v, name=v.name + " mk2") for k, v in world.items.items()}
    write_yaml(replace(world, items=items), tmp_path / "changed")  # 800 entries changed
    env = {"REDIS_URL": redis_url, "ECHOES_OPS_CACHE_DIR": str(tmp_path / "cache")}
    assert cli("preload", "--gamedata", str(tmp_path / "world"), "-y", env=env).code == 0
    sync_r.config_set("slowlog-log-slower-than", 0)
    sync_r.config_set("slowlog-max-len", 1_000_000)
    sync_r.slowlog_reset()
    try:
        out = cli("preload", "--gamedata", str(tmp_path / "changed"), "-y", env=env)
        entries = sync_r.slowlog_get(1_000_000)
    finally:
        sync_r.config_set("slowlog-log-slower-than", 10_000)
        sync_r.config_set("slowlog-max-len", 128)
    assert out.code == 0, out.stderr
    commands = [e["command"] for e in entries]
    texts = [c.decode() if isinstance(c, bytes) else c for c in commands]
    assert sum(t.split()[:2] == ["SCAN", "0"] for t in texts) == 1, texts[:20]
    assert "the atomic swap writes 800 keys" in out.stderr  # ~3 ms: past the 2 ms max
