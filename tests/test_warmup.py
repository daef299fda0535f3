"""`echoes-ops warmup` against a real PostgreSQL (reference schema) and a real redis-server."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis

from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.contract.session import Session
from echoes_ops.errors import ExitCode
from echoes_ops.gamedata import load_gamedata
from echoes_ops.local.demo import seed_demo
from echoes_ops.local.redis_server import free_port
from echoes_ops.operations.warmup import WARMUP_LOCK
from echoes_ops.runtime.tier import Tier
from tests.cli_helpers import cli
from tests.conftest import BUNDLED_GAMEDATA

CHARACTERS = 3000
WINDOW = "420"  # minutes: the demo spreads activity over the six hours before "now"
PLAYERS = "sessions,inventories"
DATA = load_gamedata(BUNDLED_GAMEDATA)


def seed(dsn: str, characters: int = CHARACTERS, *, now: datetime | None = None) -> None:
    asyncio.run(
        seed_demo(
            dsn,
            location_ids=sorted(DATA.locations),
            item_ids=sorted(DATA.items),
            characters=characters,
            now=now,
        )
    )


def sql(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def env_for(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_url, **extra}


def warm(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    out = cli("warmup", "--json", "--active-within", WINDOW, "--what", PLAYERS, *args, env=env)
    assert "Traceback" not in out.stderr
    return out.code, json.loads(out.stdout), out.stderr


def player_keys(sync_r: redis.Redis) -> list[str]:
    return sorted(sync_r.scan_iter(match="player:*", count=1000))


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


@pytest.fixture
def migrated(database_url: str) -> str:
    """The database with echoes-ops's own tables (so audit records have a home)."""
    assert cli("db", "migrate", env={"DATABASE_URL": database_url}).code == 0
    return database_url


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


def test_active_within_selects_recent_characters(database_url, redis_url, sync_r):
    seed(database_url)
    recent = sql(
        database_url,
        "SELECT id FROM characters WHERE last_active_at >= now() - interval '30 minutes'",
    )
    out = cli("warmup", "--json", "--active-within", "30", "--what", "sessions",
              env=env_for(database_url, redis_url))  # fmt: skip
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)["sessions"]["written"] == len(recent) > 0
    assert player_keys(sync_r) == sorted(keys.session_key(r["id"]) for r in recent)


def test_second_run_changes_nothing(database_url, redis_url, sync_r):
    seed(database_url)
    env = env_for(database_url, redis_url)
    assert warm(env)[0] == 0
    sync_r.config_resetstat()
    code, report, _ = warm(env)
    assert code == 0
    assert report["sessions"]["written"] == 0
    assert report["sessions"]["unchanged"] == CHARACTERS
    assert report["inventories"]["written"] == report["inventories"]["removed"] == 0
    assert report["inventories"]["unchanged"] == CHARACTERS
    # nothing was written: no write command ran at all (commands run by Lua are counted)
    stats = sync_r.info("commandstats")
    writes = {"hset", "hdel", "rpush", "expire", "lpush", "lset", "hsetnx"}
    assert not [name for name in stats if name.removeprefix("cmdstat_") in writes]
    assert stats["cmdstat_del"]["calls"] == 1  # releasing the run's lock

    # a change in the database is picked up by the next run, and only that change
    sql(database_url, "UPDATE characters SET hp = 1, last_movement_time = NULL WHERE id = 7")
    sql(database_url, "DELETE FROM inventory WHERE character_id = 8")
    code, report, _ = warm(env)
    assert report["sessions"]["written"] == 1
    assert report["inventories"]["removed"] == 1
    assert report["sessions"]["unchanged"] == CHARACTERS - 1
    assert sync_r.hget(keys.session_key(7), "hp") == "1"
    assert not sync_r.hexists(keys.session_key(7), "last_movement_time")
    assert not sync_r.exists(keys.inventory_key(8))


def test_fresher_live_sessions_survive(database_url, redis_url, sync_r):
    now = datetime.now(UTC)
    seed(database_url, 50, now=now - timedelta(minutes=1))
    rows = {r["id"]: r for r in sql(database_url, "SELECT * FROM characters")}

    async def reference_worker() -> None:
        async with open_redis(Settings.from_dsn(redis_url).redis_target()) as r:
            tier = Tier(r, "worker-1")  # stamps last_heartbeat with the wall clock: now
            for cid in (1, 2):
                await tier.connect_player(
                    Session(character_id=cid, location_id="overpass", username="live", hp=3)
                )
                await tier.replace_inventory(cid, [{"item_id": "live-item"}])

    asyncio.run(reference_worker())
    live_before = {cid: sync_r.hgetall(keys.session_key(cid)) for cid in (1, 2)}
    # by hand: a heartbeat from an event-loop clock (the plan's), and a key of another type
    sync_r.hset(keys.session_key(3), mapping={"hp": "9", "last_heartbeat": "183422.511"})
    sync_r.set(keys.session_key(4), "not a hash")
    # an older session of a worker: the row is newer, its fields are merged in
    older = rows[5]["last_active_at"].timestamp() - 60
    sync_r.hset(
        keys.session_key(5),
        mapping={"worker_id": "worker-2", "websocket_connected": "true", "hp": "1",
                 "last_heartbeat": repr(older)},
    )  # fmt: skip
    sync_r.rpush(keys.inventory_key(5), "stale")

    code, report, _ = warm(env_for(database_url, redis_url))
    assert code == 0
    assert report["sessions"] == {
        "written": 46,
        "unchanged": 0,
        "skipped_fresher": 2,
        "skipped_unknown": 2,
    }
    assert report["inventories"]["skipped_fresher"] == 2
    assert report["inventories"]["skipped_unknown"] == 2
    assert {e["id"] for e in report["examples"]["skipped_unknown"]} == {3, 4}
    for cid in (1, 2):
        assert sync_r.hgetall(keys.session_key(cid)) == live_before[cid]
        assert sync_r.lrange(keys.inventory_key(cid), 0, -1) == ['{"item_id":"live-item"}']
    assert sync_r.hgetall(keys.session_key(3)) == {"hp": "9", "last_heartbeat": "183422.511"}
    assert sync_r.get(keys.session_key(4)) == "not a hash"
    merged = sync_r.hgetall(keys.session_key(5))
    assert merged["worker_id"] == "worker-2"
    assert merged["websocket_connected"] == "true"
    assert merged["hp"] == str(rows[5]["hp"])
    assert merged["last_heartbeat"] == repr(rows[5]["last_active_at"].timestamp())
    assert "stale" not in sync_r.lrange(keys.inventory_key(5), 0, -1)


def test_overlapping_run_skips_with_exit_8(database_url, redis_url, sync_r):
    seed(database_url, 20)
    sync_r.set(keys.lock_key(WARMUP_LOCK), "operator.cron#0123abcd", px=60_000)
    out = cli("warmup", "--what", PLAYERS, env=env_for(database_url, redis_url))
    assert out.code == ExitCode.BUSY
    line = out.one_error_line()
    assert "another warmup is running" in line
    assert "operator.cron" in line
    assert out.stdout == ""
    assert player_keys(sync_r) == []
    assert sync_r.get(keys.lock_key(WARMUP_LOCK)) == "operator.cron#0123abcd"


def test_postgres_unreachable_is_one_line_and_writes_nothing(redis_url, sync_r, tmp_path):
    report = tmp_path / "warmup.json"
    bogus = f"postgresql://echoes@127.0.0.1:{free_port()}/echoes"
    out = cli("warmup", "--report", str(report), "--gamedata", str(BUNDLED_GAMEDATA),
              env=env_for(bogus, redis_url))  # fmt: skip
    assert out.code == ExitCode.POSTGRES
    assert "cannot connect to PostgreSQL" in out.one_error_line()
    assert out.stdout == ""
    assert player_keys(sync_r) == []
    assert not list(sync_r.scan_iter(match="lock:*"))
    assert not list(sync_r.scan_iter(match="location:*"))  # static not loaded either
    failed = json.loads(report.read_text())
    assert failed["ok"] is False
    assert failed["exit_code"] == ExitCode.POSTGRES


def test_stopped_postgres_is_one_line_and_writes_nothing(
    database_url, pg_server, redis_url, sync_r
):
    seed(database_url, 20)
    pg_server.stop()
    try:
        out = cli("warmup", "--what", PLAYERS, env=env_for(database_url, redis_url))
    finally:
        pg_server.start()
    assert out.code == ExitCode.POSTGRES
    out.one_error_line()
    assert player_keys(sync_r) == []


def test_redis_unreachable_is_one_line(database_url):
    seed(database_url, 20)
    out = cli("warmup", env=env_for(database_url, f"redis://127.0.0.1:{free_port()}/0"))
    assert out.code == ExitCode.UNREACHABLE
    assert "Redis" in out.one_error_line()


def test_max_seconds_stops_after_a_batch_and_reports_partial(migrated, redis_url, sync_r):
    seed(migrated, 5000)  # three batches of 2000
    code, report, stderr = warm(env_for(migrated, redis_url), "--max-seconds", "0")
    assert code == ExitCode.PROBLEMS_FOUND
    assert report["partial"] is True
    assert report["ok"] is False
    assert report["stopped_because"] == "max_seconds"
    assert report["characters"] == report["sessions"]["written"] == 2000
    assert len([k for k in player_keys(sync_r) if k.endswith(":session")]) == 2000
    lines = stderr.strip().splitlines()
    assert len(lines) == 1
    assert "partial" in lines[0]
    assert "--max-seconds 0" in lines[0]
    assert not sync_r.exists(keys.lock_key(WARMUP_LOCK))  # released


def test_cron_style_run_prints_nothing_on_success(migrated, redis_url, sync_r, tmp_path):
    seed(migrated, 200)
    report = tmp_path / "reports" / "warmup.json"
    report.parent.mkdir()
    env = env_for(migrated, redis_url)
    args = ("warmup", "--active-within", WINDOW, "--gamedata", str(BUNDLED_GAMEDATA))
    out = cli(*args, "--report", str(report), env=env)  # no terminal, no --json/--verbose
    assert (out.code, out.stdout, out.stderr) == (0, "", "")
    written = json.loads(report.read_text())
    assert written["ok"] is True
    assert written["sessions"]["written"] == 200
    assert written["static"]["result"] == "loaded"
    assert sync_r.exists(keys.location_cache_key("overpass"))
    assert [p.name for p in report.parent.iterdir()] == ["warmup.json"]  # no temp files left

    again = cli(*args, "--verbose", env=env)
    assert again.code == 0
    assert again.stdout == ""
    summary = again.stderr.strip().splitlines()
    assert len(summary) == 1
    assert "200 unchanged" in summary[0]
    assert "static unchanged" in summary[0]
    audit = sql(migrated, "SELECT action, result, detail FROM echoes_ops.audit ORDER BY id")
    runs = [row for row in audit if row["action"] == "warmup"]
    assert len(runs) == 2
    assert all(row["result"] == "ok" for row in runs)
    assert json.loads(runs[0]["detail"])["sessions"]["written"] == 200


def test_dry_run_reads_and_writes_nothing(database_url, redis_url, sync_r):
    seed(database_url, 300)
    code, report, _ = warm(env_for(database_url, redis_url), "--dry-run")
    assert code == 0
    assert report["dry_run"] is True
    assert report["sessions"]["written"] == 300  # would write
    assert player_keys(sync_r) == []
    assert not list(sync_r.scan_iter(match="lock:*"))


def test_static_needs_configured_gamedata(database_url, redis_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./gamedata here
    out = cli("warmup", env=env_for(database_url, redis_url))
    assert out.code == ExitCode.CONFIG
    assert "gamedata" in out.one_error_line()


def test_queries_adapt_to_another_schema(database_url, redis_url, sync_r):
    sql(
        database_url,
        "CREATE TABLE characters (pid bigint PRIMARY KEY, nick text, zone text, health int, "
        "seen double precision)",
    )
    sql(database_url, "CREATE TABLE inventory (owner bigint, item text, n int)")
    seen = datetime.now(UTC).timestamp() - 5
    sql(database_url, "INSERT INTO characters VALUES (1, 'Ash', 'overpass', 50, $1), "
        "(2, 'Bad', 'two words', 50, $1), (3, 'Old', 'ruins', 50, $1 - 86400)", seen)  # fmt: skip
    sql(database_url, "INSERT INTO inventory VALUES (1, 'b', 2), (1, 'a', 1)")
    env = env_for(
        database_url,
        redis_url,
        ECHOES_OPS_WARMUP_CHARACTERS_QUERY=(
            "SELECT pid AS id, nick AS username, zone AS location_id, health AS hp, "
            "seen AS last_active_at FROM characters "
            "WHERE seen >= extract(epoch FROM now()) - $1 * 60;"
        ),
        ECHOES_OPS_WARMUP_INVENTORY_QUERY=(
            "SELECT owner AS character_id, item, n FROM inventory "
            "WHERE owner = ANY($1::bigint[]) ORDER BY item"
        ),
    )
    out = cli("warmup", "--json", "--what", PLAYERS, env=env)
    assert out.code == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["characters"] == 2
    assert report["invalid"] == 1
    assert report["examples"]["invalid"][0]["id"] == "2"
    assert "location_id" in report["examples"]["invalid"][0]["why"]
    assert "1 character row(s) could not be stored" in out.stderr
    assert sync_r.hgetall(keys.session_key(1)) == {
        "username": "Ash",
        "location_id": "overpass",
        "hp": "50",
        "websocket_connected": "false",
        "last_heartbeat": repr(seen),
    }
    assert sync_r.lrange(keys.inventory_key(1), 0, -1) == [
        '{"character_id":1,"item":"a","n":1}',
        '{"character_id":1,"item":"b","n":2}',
    ]
    assert player_keys(sync_r) == [keys.inventory_key(1), keys.session_key(1)]


def test_inventory_lists_keep_the_query_order_and_any_text(database_url, redis_url, sync_r):
    """Items come back from PostgreSQL grouped per character, joined by a control
    character: the order is the query's (here not by owner first) and no item text, even
    one holding that control character, is split or altered."""
    sql(database_url, "CREATE TABLE characters (id int PRIMARY KEY, last_active_at timestamptz)")
    sql(database_url, "CREATE TABLE inventory (owner int, item text, rank int)")
    sql(database_url, "INSERT INTO characters SELECT g, now() FROM generate_series(1, 400) g")
    tricky = ["plain", "sep\x1einside", "line\nbreak", 'quote " and \\', "ünïcødé ✓"]
    sql(
        database_url,
        "INSERT INTO inventory SELECT c, ($1::text[])[1 + (c * 7 + k) % 5] || '#' || k, "
        "(c * 31 + k * 17) % 11 FROM generate_series(1, 400) c, generate_series(1, 6) k "
        "WHERE (c + k) % 9 <> 0",
        tricky,
    )
    order = "ORDER BY rank DESC, item"
    env = env_for(
        database_url,
        redis_url,
        ECHOES_OPS_WARMUP_CHARACTERS_QUERY="SELECT id, last_active_at FROM characters",
        ECHOES_OPS_WARMUP_INVENTORY_QUERY=(
            f"SELECT owner AS character_id, item, rank FROM inventory "
            f"WHERE owner = ANY($1::int[]) {order}"
        ),
    )
    # a sorted grouping re-sorts by owner with an unstable sort: only an explicit order keeps
    # each list in the query's order then
    database = sql(database_url, "SELECT current_database()")[0][0]
    sql(database_url, f'ALTER DATABASE "{database}" SET enable_hashagg = off')
    try:
        out = cli("warmup", "--json", "--what", "inventories", env=env)
    finally:
        sql(database_url, f'ALTER DATABASE "{database}" RESET enable_hashagg')
    assert out.code == 0, out.stderr
    rows = sql(database_url, f"SELECT owner, item, rank FROM inventory {order}")
    expected: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        expected.setdefault(row["owner"], []).append(
            {"character_id": row["owner"], "item": row["item"], "rank": row["rank"]}
        )
    report = json.loads(out.stdout)
    assert report["inventories"]["rows"] == len(rows)
    assert report["inventories"]["written"] == len(expected)
    for owner, items in expected.items():
        stored = sync_r.lrange(keys.inventory_key(owner), 0, -1)
        assert [json.loads(text) for text in stored] == items, owner
    assert any("\x1e" in item["item"] for items in expected.values() for item in items)


def test_a_query_that_does_not_fit_is_a_config_error(database_url, redis_url, sync_r):
    seed(database_url, 20)
    env = env_for(
        database_url,
        redis_url,
        ECHOES_OPS_WARMUP_CHARACTERS_QUERY="SELECT id, name FROM characters",
    )
    out = cli("warmup", "--what", PLAYERS, env=env)
    assert out.code == ExitCode.CONFIG
    assert "last_active_at" in out.one_error_line()
    env["ECHOES_OPS_WARMUP_CHARACTERS_QUERY"] = "SELECT * FROM no_such_table"
    out = cli("warmup", "--what", PLAYERS, env=env)
    assert out.code == ExitCode.CONFIG
    assert "no_such_table" in out.one_error_line()
    assert player_keys(sync_r) == []


def test_bad_what_is_a_usage_error(redis_url):
    out = cli("warmup", "--what", "sessions,npcs", env={"REDIS_URL": redis_url})
    assert out.code == ExitCode.USAGE
    assert "npcs" in out.stderr


def test_settings_file_provides_the_queries(tmp_path: Path):
    config = tmp_path / "echoes-ops.yaml"
    config.write_text("warmup_characters_query: |\n  SELECT 1 AS id, now() AS last_active_at\n")
    settings = Settings.load(env={}, config_file=config)
    assert settings.warmup_characters_query == "SELECT 1 AS id, now() AS last_active_at\n"
    assert settings.warmup_inventory_query is None


# -- the operation directly (edge cases of the Lua compare-and-write) ----------------------


async def test_edge_cases_of_the_compare_and_write(database_url, r, monkeypatch):
    from echoes_ops.operations.warmup import run as warmup_run

    await seed_demo(
        database_url,
        location_ids=sorted(DATA.locations),
        item_ids=sorted(DATA.items),
        characters=6,
    )

    async def run(**kw: Any) -> Any:
        return await warmup_run.warmup(
            r, database_url, operator="test", what=["sessions", "inventories"],
            active_within=420, **kw,
        )  # fmt: skip

    first = await run()
    assert first.sessions.written == 6
    # a warmed session that lost its TTL is rewritten (and gets one); a list of the wrong
    # type is left alone
    await r.persist(keys.session_key(1))
    await r.delete(keys.inventory_key(2))
    await r.set(keys.inventory_key(2), "someone else's")
    dry = await run(dry_run=True)
    assert (dry.sessions.written, dry.sessions.unchanged) == (1, 5)
    assert dry.inventories.skipped_unknown == 1
    assert await r.ttl(keys.session_key(1)) == -1  # the dry run wrote nothing

    # the server lost its scripts (restart, SCRIPT FLUSH) between loading and running
    calls = 0

    class FlushingLine(warmup_run.StepConnection):
        async def packed(self, commands: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                await r.script_flush()
            return await super().packed(commands)

    monkeypatch.setattr(warmup_run, "StepConnection", FlushingLine)
    again = await run()
    assert calls == 2  # NOSCRIPT, reloaded, sent again (6 players fit one call)
    assert (again.sessions.written, again.sessions.unchanged) == (1, 5)
    assert again.inventories.skipped_unknown == 1
    assert 0 < await r.ttl(keys.session_key(1)) <= keys.SESSION_TTL
    assert await r.get(keys.inventory_key(2)) == "someone else's"
