"""The private PostgreSQL server and the demo seeder, against a real cluster."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from echoes_ops.errors import ConfigError, PostgresError
from echoes_ops.local.demo import DemoSummary, load_schema_sql, seed_demo
from echoes_ops.local.postgres_server import PostgresServer
from echoes_ops.local.redis_server import free_port

pytestmark = pytest.mark.postgres

LOCATIONS = ("ruins", "bunker_gate", "river_crossing", "old_highway", "farmhouse")
ITEMS = (
    "rusty_pipe",
    "kitchen_knife",
    "tire_iron",
    "baseball_bat",
    "canned_beans",
    "clean_water",
    "bandage",
    "scrap_metal",
    "duct_tape",
    "leather_jacket",
)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One cluster for the module: initdb'd and started once, deleted at the end."""
    server = PostgresServer(tmp_path_factory.mktemp("postgres"))
    server.start()
    yield server
    server.destroy()


@pytest.fixture
async def pg_url(pg_server: PostgresServer) -> str:
    """The module's server, running, with the reference tables dropped before each test."""
    if not pg_server.running():
        pg_server.start()
    conn = await asyncpg.connect(pg_server.url)
    try:
        await conn.execute("DROP TABLE IF EXISTS inventory, characters")
    finally:
        await conn.close()
    return pg_server.url


async def _fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(query, *args)
        return rows
    finally:
        await conn.close()


async def _counts(url: str) -> tuple[int, int]:
    rows = await _fetch(
        url, "SELECT (SELECT count(*) FROM characters), (SELECT count(*) FROM inventory)"
    )
    return rows[0][0], rows[0][1]


async def _snapshot(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    chars = await _fetch(url, "SELECT * FROM characters ORDER BY id")
    inv = await _fetch(url, "SELECT * FROM inventory ORDER BY character_id, item_id")
    return [tuple(r) for r in chars], [tuple(r) for r in inv]


# -- the server ---------------------------------------------------------------------------


def test_server_runs_on_loopback_with_trusted_role(pg_server: PostgresServer) -> None:
    assert pg_server.running()
    assert pg_server.url == f"postgresql://echoes@127.0.0.1:{pg_server.port}/echoes"
    assert (pg_server.pgdata / "PG_VERSION").exists()
    assert pg_server.logfile.parent == pg_server.actual_data_dir
    conf = (pg_server.pgdata / "echoes-ops.conf").read_text()
    assert "listen_addresses = '127.0.0.1'" in conf
    assert f"port = {pg_server.port}" in conf


def test_root_runs_the_cluster_as_postgres(pg_server: PostgresServer) -> None:
    if os.geteuid() != 0:
        assert pg_server.actual_data_dir == pg_server.data_dir
        pytest.skip("only meaningful as root")
    import pwd

    postgres_uid = pwd.getpwnam("postgres").pw_uid
    assert pg_server.pgdata.stat().st_uid == postgres_uid
    assert pg_server.actual_data_dir.stat().st_uid == postgres_uid
    if pg_server.actual_data_dir != pg_server.data_dir:
        # pytest's tmp dirs are private to root; the cluster moved to the shared fallback.
        assert str(pg_server.actual_data_dir).startswith("/var/tmp/echoes-ops-pg/")
        pointer = pg_server.data_dir / "POSTGRES_DATA_DIR"
        assert pointer.read_text().strip() == str(pg_server.actual_data_dir)


async def test_role_and_database_exist(pg_url: str) -> None:
    rows = await _fetch(
        pg_url,
        "SELECT current_user, current_database(), "
        "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
    )
    assert tuple(rows[0]) == ("echoes", "echoes", False)


def test_second_handle_adopts_the_running_port(pg_server: PostgresServer) -> None:
    other = PostgresServer(pg_server.data_dir)
    assert other.actual_data_dir == pg_server.actual_data_dir
    assert other.port == pg_server.port
    assert other.running()
    other.start()  # already running: a no-op
    assert pg_server.running()


async def test_kill_then_start_recovers_the_data(pg_server: PostgresServer, pg_url: str) -> None:
    await seed_demo(pg_url, location_ids=LOCATIONS, item_ids=ITEMS, characters=20, now=NOW)
    pg_server.kill()
    assert not pg_server.running()
    pg_server.start()
    assert pg_server.running()
    assert (await _counts(pg_url))[0] == 20
    pg_server.stop()
    assert not pg_server.running()
    pg_server.stop()  # stopping a stopped server is a no-op
    pg_server.start()
    assert (await _counts(pg_url))[0] == 20


def test_taken_port_fails_with_one_line_naming_the_log(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = PostgresServer(tmp_path / "pg", port=port)
        try:
            with pytest.raises(ConfigError) as caught:
                server.start()
        finally:
            server.destroy()
    message = str(caught.value)
    assert f"port {port} is already in use" in message
    assert str(server.logfile) in message
    assert "\n" not in message


def test_non_loopback_host_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        PostgresServer(tmp_path / "pg", host="0.0.0.0")


# -- the schema and the demo data -----------------------------------------------------------


def test_schema_is_reference_tables_only() -> None:
    sql = load_schema_sql()
    assert "CREATE TABLE IF NOT EXISTS characters" in sql
    assert "CREATE TABLE IF NOT EXISTS inventory" in sql
    assert "echoes_ops." not in sql
    assert "CREATE SCHEMA" not in sql.upper()


async def test_seed_demo_writes_characters_and_inventories(pg_url: str) -> None:
    summary = await seed_demo(pg_url, location_ids=LOCATIONS, item_ids=ITEMS, now=NOW)

    assert summary == DemoSummary(characters=300, inventory_rows=summary.inventory_rows)
    assert await _counts(pg_url) == (300, summary.inventory_rows)
    chars = await _fetch(pg_url, "SELECT * FROM characters ORDER BY id")
    assert [c["id"] for c in chars] == list(range(1, 301))
    assert {c["location_id"] for c in chars} == set(LOCATIONS)
    assert len({c["name"] for c in chars}) == 300
    for c in chars:
        assert 1 <= c["hp"] <= c["max_hp"]
        assert 0 <= c["stamina"] <= c["max_stamina"]
        assert 1 <= c["level"] <= 30
        assert c["xp"] >= 0
        assert NOW - timedelta(hours=6) <= c["last_active_at"] <= NOW
        assert c["last_movement_time"] <= c["last_active_at"].timestamp()

    per_char = await _fetch(
        pg_url,
        "SELECT character_id, count(*) AS n, count(*) FILTER (WHERE is_equipped) AS eq "
        "FROM inventory GROUP BY character_id",
    )
    assert len(per_char) == 300
    assert all(2 <= r["n"] <= 8 and r["eq"] <= 2 for r in per_char)
    items = await _fetch(pg_url, "SELECT DISTINCT item_id FROM inventory")
    assert {r["item_id"] for r in items} <= set(ITEMS)


async def test_seed_demo_twice_leaves_the_same_rows(pg_url: str) -> None:
    first = await seed_demo(pg_url, location_ids=LOCATIONS, item_ids=ITEMS, now=NOW)
    before = await _snapshot(pg_url)
    second = await seed_demo(pg_url, location_ids=LOCATIONS, item_ids=ITEMS, now=NOW)
    assert second == first
    assert await _counts(pg_url) == (first.characters, first.inventory_rows)
    assert await _snapshot(pg_url) == before


async def test_seed_demo_without_now_is_stable_apart_from_times(pg_url: str) -> None:
    await seed_demo(pg_url, location_ids=LOCATIONS, item_ids=ITEMS, characters=50)
    first = await _fetch(pg_url, "SELECT id, name, location_id, level FROM characters")
    await seed_demo(pg_url, location_ids=LOCATIONS, item_ids=ITEMS, characters=50)
    second = await _fetch(pg_url, "SELECT id, name, location_id, level FROM characters")
    assert sorted(map(tuple, first)) == sorted(map(tuple, second))
    rows = await _fetch(pg_url, "SELECT max(last_active_at) FROM characters")
    assert datetime.now(UTC) - rows[0][0] < timedelta(hours=6, minutes=1)


async def test_seed_demo_keeps_other_characters(pg_url: str) -> None:
    await seed_demo(pg_url, location_ids=LOCATIONS, item_ids=ITEMS, characters=5, now=NOW)
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            "INSERT INTO characters VALUES "
            "(9999, 'Real Player', 'ruins', 10, 100, 10, 50, 3, 120, NULL, now())"
        )
        await conn.execute("INSERT INTO inventory VALUES (9999, 'bandage', 3, NULL, false)")
    finally:
        await conn.close()
    await seed_demo(pg_url, location_ids=LOCATIONS, item_ids=ITEMS, characters=5, now=NOW)
    rows = await _fetch(pg_url, "SELECT name FROM characters WHERE id = 9999")
    assert rows[0]["name"] == "Real Player"
    inv = await _fetch(pg_url, "SELECT quantity FROM inventory WHERE character_id = 9999")
    assert [r["quantity"] for r in inv] == [3]


async def test_seed_demo_needs_ids(pg_url: str) -> None:
    with pytest.raises(ConfigError, match="location"):
        await seed_demo(pg_url, location_ids=[], item_ids=ITEMS)
    with pytest.raises(ConfigError, match="item"):
        await seed_demo(pg_url, location_ids=LOCATIONS, item_ids=[])


async def test_unreachable_dsn_is_a_postgres_error() -> None:
    port = free_port()
    dsn = f"postgresql://echoes:hunter2@127.0.0.1:{port}/echoes"
    with pytest.raises(PostgresError) as caught:
        await seed_demo(dsn, location_ids=LOCATIONS, item_ids=ITEMS)
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "connection refused" in message
    assert "hunter2" not in message
    assert "***" in message
    assert "\n" not in message


async def test_dsn_that_is_not_a_url_is_not_echoed() -> None:
    with pytest.raises(PostgresError, match="not a postgresql:// URL") as caught:
        await seed_demo(
            "postgresql//echoes:hunter2@host/db", location_ids=LOCATIONS, item_ids=ITEMS
        )
    assert "hunter2" not in str(caught.value)


async def test_unknown_database_is_a_postgres_error(pg_server: PostgresServer) -> None:
    dsn = f"postgresql://echoes@127.0.0.1:{pg_server.port}/no_such_db"
    with pytest.raises(PostgresError, match="no_such_db"):
        await seed_demo(dsn, location_ids=LOCATIONS, item_ids=ITEMS)
