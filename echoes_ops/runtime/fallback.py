"""Reads a worker makes from PostgreSQL in fallback mode (``REDIS_ENABLED=false``).

In fallback mode a worker stops reading Redis and reads the game's tables instead. The
queries are configurable (the game owns its schema); the defaults match the reference
schema in ``echoes_ops/local/schema.sql``. A player query must return the columns ``id``,
``name``, ``location_id``, ``hp``, ``max_hp``, ``stamina``, ``max_stamina``, ``level``,
``xp``, ``last_movement_time`` for ``$1`` = character id; an inventory query the rows of
character ``$1``, each turned into a dict of its columns.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import asyncpg

from echoes_ops.client.postgres import CONNECT_TIMEOUT, connect_postgres, target_of
from echoes_ops.contract.ids import check_character_id
from echoes_ops.contract.session import Session
from echoes_ops.errors import PostgresError

PLAYER_QUERY: Final = (
    "SELECT id, name, location_id, hp, max_hp, stamina, max_stamina, level, xp, "
    "last_movement_time FROM characters WHERE id = $1"
)
INVENTORY_QUERY: Final = (
    "SELECT item_id, quantity, durability, is_equipped FROM inventory "
    "WHERE character_id = $1 ORDER BY item_id"
)
QUERY_TIMEOUT: Final = 5.0


class PostgresReader:
    """One lazily opened connection, used one query at a time (a worker's reads are few
    in fallback mode and asyncpg runs one query per connection at once). A dropped
    connection is reopened on the next read."""

    def __init__(
        self,
        dsn: str,
        *,
        player_query: str = PLAYER_QUERY,
        inventory_query: str = INVENTORY_QUERY,
    ) -> None:
        self.dsn = dsn
        self.player_query = player_query
        self.inventory_query = inventory_query
        self._conn: Any = None
        self._lock = asyncio.Lock()

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        async with self._lock:
            if self._conn is None or self._conn.is_closed():
                self._conn = await connect_postgres(self.dsn)
            try:
                rows: list[Any] = await self._conn.fetch(query, *args, timeout=QUERY_TIMEOUT)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                await self._drop()
                where = target_of(self.dsn) or "?"
                raise PostgresError(
                    f"PostgreSQL at {where} failed a fallback read: {exc}".splitlines()[0]
                ) from exc
            return rows

    async def player(self, character_id: int) -> Session | None:
        cid = check_character_id(character_id)
        rows = await self._fetch(self.player_query, cid)
        if not rows:
            return None
        row = rows[0]
        return Session(
            character_id=cid,
            username=row["name"],
            location_id=row["location_id"],
            hp=row["hp"],
            max_hp=row["max_hp"],
            stamina=row["stamina"],
            max_stamina=row["max_stamina"],
            level=row["level"],
            xp=row["xp"],
            last_movement_time=row["last_movement_time"],
        )

    async def inventory(self, character_id: int) -> list[dict[str, Any]]:
        rows = await self._fetch(self.inventory_query, check_character_id(character_id))
        return [dict(row) for row in rows]

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=CONNECT_TIMEOUT)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
                conn.terminate()

    async def aclose(self) -> None:
        async with self._lock:
            await self._drop()
