"""Preload of a world from the gamedata cache: an unchanged world is recognised without
reading it, and anything that makes the note stale falls back to the full preload."""

from __future__ import annotations

from pathlib import Path

import pytest

from echoes_ops.contract import keys
from echoes_ops.gamedata import World, WorldCache, load_world
from echoes_ops.gamedata.models import GameData
from echoes_ops.operations.preload import preload
from tests.conftest import BUNDLED_GAMEDATA


def _world(tmp_path: Path) -> World:
    return load_world(BUNDLED_GAMEDATA, cache=WorldCache(tmp_path / "cache"))


def _unreadable(world: World) -> World:
    """The same world, whose data must not be needed."""

    def refuse() -> GameData:
        raise AssertionError("the world was read")

    return World(world.root, world.files, world.counts, world.key, world.cache, _fetch=refuse)


async def test_an_unchanged_cached_world_is_skipped_without_reading_it(r, sync_r, tmp_path):
    first = await preload(r, _world(tmp_path), operator="alice")
    assert not first.skipped
    assert first.keys_written == sum(first.counts.values())
    again = _world(tmp_path)
    result = await preload(r, _unreadable(again), operator="alice")
    assert result.skipped
    assert result.version == first.version
    assert result.previous_version == first.version
    assert result.counts == first.counts


async def test_the_note_and_a_full_preload_agree(r, tmp_path):
    data = _world(tmp_path).data()
    plain = await preload(r, data, operator="alice")
    noted = await preload(r, _world(tmp_path), operator="alice")
    assert noted.skipped
    assert noted.version == plain.version


async def test_a_missing_key_is_repaired_despite_the_note(r, sync_r, tmp_path):
    await preload(r, _world(tmp_path), operator="alice")
    sync_r.delete(keys.location_cache_key("overpass"))
    result = await preload(r, _world(tmp_path), operator="alice")
    assert not result.skipped
    assert result.keys_written == 1
    assert sync_r.exists(keys.location_cache_key("overpass"))


async def test_another_redis_gets_the_world_despite_the_note(r, sync_r, tmp_path):
    await preload(r, _world(tmp_path), operator="alice")
    sync_r.flushall()
    result = await preload(r, _world(tmp_path), operator="alice")
    assert not result.skipped
    assert result.keys_written == sum(result.counts.values())


@pytest.mark.parametrize("payload", [b"not json", b"{}", b'{"sha256": "x", "keys": 5}'])
async def test_a_damaged_note_is_computed_again(r, sync_r, tmp_path, payload):
    first = await preload(r, _world(tmp_path), operator="alice")
    world = _world(tmp_path)
    [name] = [
        p.suffix[1:] for p in (tmp_path / "cache").iterdir() if p.suffix not in {".world", ".stat"}
    ]
    world.save_annex(name, payload)
    result = await preload(r, world, operator="alice")
    assert result.skipped  # unchanged all the same, found the long way
    assert result.version == first.version
    assert world.annex(name) != payload  # and noted again


async def test_force_rewrites_a_noted_world(r, tmp_path):
    await preload(r, _world(tmp_path), operator="alice")
    result = await preload(r, _world(tmp_path), operator="alice", force=True)
    assert not result.skipped
    assert result.keys_written == sum(result.counts.values())


def test_the_cli_reads_and_encodes_the_world_once(redis_url, tmp_path, monkeypatch):
    """``preload`` previews what it would remove, then preloads: both steps use one reading
    of the files and one encoding of the world (the preview's)."""
    from echoes_ops.gamedata import loader
    from echoes_ops.operations import preload_memo
    from tests.cli_helpers import cli

    counts = {"read": 0, "encoded": 0}
    validate, encode = loader.validate_gamedata, preload_memo.encode_gamedata

    def counted_validate(*args, **kwargs):
        counts["read"] += 1
        return validate(*args, **kwargs)

    def counted_encode(data):
        counts["encoded"] += 1
        return encode(data)

    monkeypatch.setattr(loader, "validate_gamedata", counted_validate)
    monkeypatch.setattr(preload_memo, "encode_gamedata", counted_encode)
    env = {"REDIS_URL": redis_url, "ECHOES_OPS_CACHE_DIR": str(tmp_path / "cache")}
    out = cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), "--yes", env=env)
    assert out.code == 0, out.stderr
    assert "wrote" in out.stdout
    assert counts == {"read": 1, "encoded": 1}


def test_the_cli_checks_an_unchanged_world_once(redis_url, tmp_path, monkeypatch):
    """An unchanged world: the removal preview finds every key in place, and the run
    reports it (audited, not a dry run) without checking every key a second time."""
    import json

    from echoes_ops.operations import preload_send
    from tests.cli_helpers import cli

    env = {"REDIS_URL": redis_url, "ECHOES_OPS_CACHE_DIR": str(tmp_path / "cache")}
    assert cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), "--yes", env=env).code == 0
    checks = []
    all_present = preload_send.all_present

    async def counted(r, static_keys):
        checks.append(len(static_keys))
        return await all_present(r, static_keys)

    monkeypatch.setattr(preload_send, "all_present", counted)
    out = cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), "--json", env=env)
    assert out.code == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["skipped"] is True
    assert shown["dry_run"] is False
    assert len(checks) == 1
    audit = cli("audit", "--json", "--limit", "1", env=env)
    assert audit.code == 0, audit.stderr
    assert '"preload"' in audit.stdout
