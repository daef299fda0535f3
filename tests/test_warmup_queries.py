"""What warmup reads from PostgreSQL (`operations/warmup/queries.py`): the activity window, a
game's own schema through configured queries, inventory lists in the query's order with any
text, and a query that does not fit; against a real PostgreSQL and a real redis-server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode
from tests.cli_helpers import cli
from tests.warmup_helpers import PLAYERS, env_for, player_keys, seed, sql


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


def test_settings_file_provides_the_queries(tmp_path: Path):
    config = tmp_path / "echoes-ops.yaml"
    config.write_text("warmup_characters_query: |\n  SELECT 1 AS id, now() AS last_active_at\n")
    settings = Settings.load(env={}, config_file=config)
    assert settings.warmup_characters_query == "SELECT 1 AS id, now() AS last_active_at\n"
    assert settings.warmup_inventory_query is None
