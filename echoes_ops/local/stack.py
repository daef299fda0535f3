"""The local services a newcomer runs on: a private Redis and PostgreSQL with demo data.

State (ports, folders) is kept in ``<root>/state.json`` so ``down``, ``status`` and ``env``
find what ``up`` started without being told again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from echoes_ops.errors import ConfigError
from echoes_ops.local.demo import DemoSummary, seed_demo
from echoes_ops.local.postgres_server import PostgresServer
from echoes_ops.local.redis_server import RedisServer
from echoes_ops.operations.migrations import migrate

DEFAULT_ROOT = ".echoes-local"
DEFAULT_REDIS_PORT = 6390
DEFAULT_PG_PORT = 5490
STATE_FILE = "state.json"


@dataclass
class LocalState:
    root: str
    redis_port: int
    redis_running: bool
    redis_url: str
    postgres: bool
    pg_port: int | None = None
    pg_running: bool = False
    database_url: str | None = None
    pg_data_dir: str | None = None
    demo_characters: int | None = None
    demo_inventory_rows: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def env(self) -> dict[str, str]:
        values = {"REDIS_URL": self.redis_url}
        if self.database_url:
            values["DATABASE_URL"] = self.database_url
        return values

    def env_lines(self) -> list[str]:
        return [f"export {name}={value}" for name, value in self.env().items()]


@dataclass
class LocalStack:
    root: Path
    redis_port: int = DEFAULT_REDIS_PORT
    pg_port: int = DEFAULT_PG_PORT
    postgres: bool = True

    @classmethod
    def load(
        cls,
        root: Path,
        *,
        redis_port: int | None = None,
        pg_port: int | None = None,
        postgres: bool | None = None,
    ) -> LocalStack:
        """The stack in ``root``: ports from flags, else from its state file, else defaults."""
        saved: dict[str, Any] = {}
        state = root / STATE_FILE
        if state.exists():
            try:
                saved = json.loads(state.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise ConfigError(f"{state} is unreadable; remove it and run 'local up'") from None
        return cls(
            root=root,
            redis_port=redis_port or int(saved.get("redis_port", DEFAULT_REDIS_PORT)),
            pg_port=pg_port or int(saved.get("pg_port") or DEFAULT_PG_PORT),
            postgres=postgres if postgres is not None else bool(saved.get("postgres", True)),
        )

    def redis(self) -> RedisServer:
        return RedisServer(self.root / "redis", port=self.redis_port)

    def pg(self) -> PostgresServer:
        return PostgresServer(self.root / "postgres", port=self.pg_port)

    def _save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        data = {"redis_port": self.redis_port, "pg_port": self.pg_port, "postgres": self.postgres}
        tmp = self.root / f"{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(self.root / STATE_FILE)

    async def up(
        self, *, location_ids: list[str], item_ids: list[str], characters: int = 300
    ) -> LocalState:
        """Start what is not running, seed the demo characters, and report."""
        self._save()
        redis = self.redis()
        redis.start()
        summary: DemoSummary | None = None
        if self.postgres:
            pg = self.pg()
            pg.start()
            summary = await seed_demo(
                pg.url, location_ids=location_ids, item_ids=item_ids, characters=characters
            )
            await migrate(pg.url)  # our own tables (flags, audit)
        state = self.status()
        if summary is not None:
            state.demo_characters = summary.characters
            state.demo_inventory_rows = summary.inventory_rows
        return state

    def down(self) -> LocalState:
        self.redis().stop()
        if self.postgres:
            self.pg().stop()
        return self.status()

    def status(self) -> LocalState:
        redis = self.redis()
        state = LocalState(
            root=str(self.root),
            redis_port=self.redis_port,
            redis_running=redis.running(),
            redis_url=redis.url,
            postgres=self.postgres,
        )
        if self.postgres:
            pg = self.pg()
            state.pg_port = self.pg_port
            state.pg_running = pg.running()
            state.database_url = pg.url
            state.pg_data_dir = str(pg.actual_data_dir)
        return state
