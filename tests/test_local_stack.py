"""``echoes-ops local up|status|env|down`` end to end: real redis-server and PostgreSQL on
free loopback ports, demo data checked in the database, everything stopped afterwards."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis

from echoes_ops.local.postgres_server import PostgresServer
from echoes_ops.local.redis_server import RedisServer, free_port
from tests.cli_helpers import Outcome, cli
from tests.conftest import BUNDLED_GAMEDATA

ENV = {"ECHOES_OPS_GAMEDATA": str(BUNDLED_GAMEDATA)}


@dataclass
class Stack:
    root: Path
    redis_port: int
    pg_port: int

    def run(self, *args: str, env: dict[str, str] | None = None) -> Outcome:
        return cli("local", *args, env={**ENV, **(env or {})})

    def json(self, *args: str) -> dict[str, Any]:
        out = self.run(*args, "--dir", str(self.root), "--json")
        assert out.code == 0, out.stderr
        assert out.stderr == ""
        data: dict[str, Any] = json.loads(out.stdout)
        return data


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """Folder and ports for one stack; whatever the test started is stopped and deleted."""
    root = tmp_path / "local"
    redis_port = free_port()
    pg_port = free_port()
    while pg_port == redis_port:
        pg_port = free_port()
    try:
        yield Stack(root, redis_port, pg_port)
    finally:
        RedisServer(root / "redis", port=redis_port).stop()
        if (root / "postgres").exists():
            PostgresServer(root / "postgres", port=pg_port).destroy()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _port_free(port: int) -> bool:
    """Nothing listens, and a new server could bind the port."""
    if _accepts(port):
        return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pg_counts(url: str) -> tuple[int, int, int]:
    async def query() -> tuple[int, int, int]:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM characters), (SELECT count(*) FROM inventory),"
                " (SELECT max(id) FROM characters)"
            )
        finally:
            await conn.close()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])

    return asyncio.run(query())


def _redis_pings(url: str) -> bool:
    with redis.Redis.from_url(url, socket_timeout=2) as client:
        return bool(client.ping())


@pytest.mark.postgres
def test_up_status_env_down(stack: Stack) -> None:
    root = str(stack.root)
    up = stack.json("up", "--redis-port", str(stack.redis_port), "--pg-port", str(stack.pg_port))
    redis_url = f"redis://127.0.0.1:{stack.redis_port}/0"
    database_url = f"postgresql://echoes@127.0.0.1:{stack.pg_port}/echoes"
    assert up["root"] == root
    assert up["redis_running"] is True
    assert up["redis_port"] == stack.redis_port
    assert up["redis_url"] == redis_url
    assert up["postgres"] is True
    assert up["pg_running"] is True
    assert up["pg_port"] == stack.pg_port
    assert up["database_url"] == database_url
    assert up["demo_characters"] == 300  # the default
    assert up["demo_inventory_rows"] > 300  # at least two items each

    # what the JSON says is what the servers hold
    assert _redis_pings(redis_url)
    characters, inventory, max_id = _pg_counts(database_url)
    assert characters == 300
    assert max_id == 300
    assert inventory == up["demo_inventory_rows"]

    # status finds the ports in the state file, without flags
    status = stack.json("status")
    assert status["redis_running"] is True
    assert status["pg_running"] is True
    assert status["redis_port"] == stack.redis_port
    assert status["pg_port"] == stack.pg_port
    assert status["pg_data_dir"] == up["pg_data_dir"]

    out = stack.run("env", "--dir", root)
    assert out.code == 0, out.stderr
    assert out.stdout.splitlines() == [
        f"export REDIS_URL={redis_url}",
        f"export DATABASE_URL={database_url}",
    ]
    assert stack.json("env") == {"REDIS_URL": redis_url, "DATABASE_URL": database_url}

    # the exported URL is one the rest of the CLI can use
    redis_status = cli("status", "--json", env={"REDIS_URL": redis_url})
    assert redis_status.code == 0, redis_status.stderr
    assert json.loads(redis_status.stdout)["server"]["role"] == "master"

    # up again: nothing restarted, the same demo rows
    again = stack.json("up")
    assert again["demo_characters"] == 300
    assert again["demo_inventory_rows"] == up["demo_inventory_rows"]
    assert _pg_counts(database_url)[:2] == (characters, inventory)

    down = stack.json("down")
    assert down["redis_running"] is False
    assert down["pg_running"] is False
    stopped = stack.json("status")
    assert stopped["redis_running"] is False
    assert stopped["pg_running"] is False
    assert _port_free(stack.redis_port)
    assert _port_free(stack.pg_port)

    human = stack.run("status", "--dir", root)
    assert human.code == 0
    assert "redis      stopped" in human.stdout
    assert "postgresql stopped" in human.stdout

    # down twice is fine
    assert stack.json("down")["redis_running"] is False


def test_no_postgres(stack: Stack) -> None:
    env = {
        "ECHOES_OPS_LOCAL_DIR": str(stack.root),
        "ECHOES_OPS_LOCAL_REDIS_PORT": str(stack.redis_port),
        "ECHOES_OPS_LOCAL_PG_PORT": str(stack.pg_port),
    }
    out = stack.run("up", "--no-postgres", "--json", env=env)
    assert out.code == 0, out.stderr
    up = json.loads(out.stdout)
    redis_url = f"redis://127.0.0.1:{stack.redis_port}/0"
    assert up["root"] == str(stack.root)
    assert up["redis_running"] is True
    assert up["redis_url"] == redis_url
    assert up["postgres"] is False
    assert up["pg_running"] is False
    assert up["database_url"] is None
    assert up["demo_characters"] is None
    assert _redis_pings(redis_url)
    assert not _accepts(stack.pg_port)
    assert not (stack.root / "postgres").exists()

    # the choice is remembered: status and env need no --no-postgres
    status = stack.json("status")
    assert status["redis_running"] is True
    assert status["postgres"] is False
    out = stack.run("env", env={"ECHOES_OPS_LOCAL_DIR": str(stack.root)})
    assert out.code == 0, out.stderr
    assert out.stdout.splitlines() == [f"export REDIS_URL={redis_url}"]

    down = stack.json("down")
    assert down["redis_running"] is False
    assert stack.json("status")["redis_running"] is False
    assert _port_free(stack.redis_port)
