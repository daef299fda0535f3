"""Shared by the warmup tests: the demo characters seeded in PostgreSQL, `echoes-ops warmup`
run through the CLI, and what it left in Redis."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import asyncpg
import pytest
import redis

from echoes_ops.gamedata import load_gamedata
from echoes_ops.local.demo import seed_demo
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


@pytest.fixture
def migrated(database_url: str) -> str:
    """The database with echoes-ops's own tables (so audit records have a home)."""
    assert cli("db", "migrate", env={"DATABASE_URL": database_url}).code == 0
    return database_url
