"""``local up`` on a shared machine: a configured port another process holds is replaced by a
free one (and recorded), an explicit one is refused naming the holder, and ``local status``
says "port in use by another process" rather than "stopped". Real redis-server and
PostgreSQL processes; the "other checkout" is a second stack in another folder."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from echoes_ops.local.ports import port_in_use, who_listens
from echoes_ops.local.postgres_server import PostgresServer
from echoes_ops.local.redis_server import RedisServer, free_port
from tests.cli_helpers import Outcome, cli
from tests.conftest import BUNDLED_GAMEDATA

ENV = {"ECHOES_OPS_GAMEDATA": str(BUNDLED_GAMEDATA)}


def local(*args: str, env: dict[str, str] | None = None) -> Outcome:
    return cli("local", *args, env={**ENV, **(env or {})})


def local_json(*args: str) -> dict[str, Any]:
    out = local(*args, "--json")
    assert out.code == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


@pytest.fixture
def roots(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Two checkouts' local folders; whatever ran in them is stopped afterwards."""
    a, b = tmp_path / "checkout-a" / ".echoes-local", tmp_path / "checkout-b" / ".echoes-local"
    try:
        yield a, b
    finally:
        for root in (a, b):
            local("down", "--dir", str(root))
            if (root / "postgres").exists():
                PostgresServer(root / "postgres").destroy()


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port this test process listens on (a stranger's server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def record(root: Path, **ports: int | bool) -> None:
    """A state file as an earlier 'up' would have left it: the configured ports."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "state.json").write_text(json.dumps(ports))


def test_who_listens_names_the_process(held_port: int) -> None:
    assert port_in_use(held_port)
    user = who_listens(held_port)
    assert user is not None
    assert user.pid == os.getpid()
    assert f"(pid {os.getpid()}, in {os.getcwd()})" in user.describe()
    assert who_listens(free_port()) is None


def test_a_taken_configured_port_is_replaced_and_recorded(roots: tuple[Path, Path]) -> None:
    a, b = roots
    taken = free_port()
    first = local_json("up", "--no-postgres", "--dir", str(a), "--redis-port", str(taken))
    assert first["redis_status"] == "running"
    record(b, redis_port=taken, postgres=False)  # b is configured for the same port

    # b, not running, sees its port held by a's redis-server
    seen = local_json("status", "--dir", str(b))
    assert seen["redis_running"] is False
    assert seen["redis_status"] == "port in use by another process"
    assert seen["redis_port_user"]["name"] == "redis-server"
    assert seen["redis_port_user"]["cwd"] == str((a / "redis").resolve())
    human = local("status", "--dir", str(b))
    assert "redis      port in use by another process: redis-server (pid" in human.stdout
    assert "stopped" not in human.stdout

    up = local_json("up", "--no-postgres", "--dir", str(b))
    chosen = up["redis_port"]
    assert chosen != taken
    assert up["redis_status"] == "running"
    assert up["redis_url"] == f"redis://127.0.0.1:{chosen}/0"
    assert up["notes"] == [
        f"Redis port {taken} is in use by redis-server (pid {seen['redis_port_user']['pid']}, "
        f"in {(a / 'redis').resolve()}): took {chosen}"
    ]
    assert json.loads((b / "state.json").read_text())["redis_port"] == chosen
    with redis.Redis(port=chosen) as client:
        assert client.ping()

    # status and env print what was chosen, without being told
    assert local_json("status", "--dir", str(b))["redis_status"] == "running"
    env = local("env", "--dir", str(b))
    assert env.stdout.splitlines() == [f"export REDIS_URL=redis://127.0.0.1:{chosen}/0"]
    # both checkouts run, each on its own port
    assert local_json("status", "--dir", str(a))["redis_port"] == taken
    # up again keeps the recorded port
    assert local_json("up", "--no-postgres", "--dir", str(b))["redis_port"] == chosen


def test_an_explicit_taken_port_fails_naming_the_process(
    roots: tuple[Path, Path], held_port: int
) -> None:
    a, _ = roots
    out = local("up", "--no-postgres", "--dir", str(a), "--redis-port", str(held_port))
    assert out.code == 3
    line = out.one_error_line()
    assert f"Redis port {held_port} (--redis-port / ECHOES_OPS_LOCAL_REDIS_PORT)" in line
    assert "is in use by python" in line or "is in use by pytest" in line
    assert f"(pid {os.getpid()}," in line
    assert "unset ECHOES_OPS_LOCAL_REDIS_PORT and leave out --redis-port" in line
    assert not RedisServer(a / "redis", port=held_port).running()

    # the environment variable is explicit too
    env_out = local(
        "up", "--no-postgres", "--dir", str(a), env={"ECHOES_OPS_LOCAL_REDIS_PORT": str(held_port)}
    )
    assert env_out.code == 3
    assert f"Redis port {held_port}" in env_out.one_error_line()


def test_moving_a_running_service_is_refused(roots: tuple[Path, Path]) -> None:
    a, _ = roots
    port = free_port()
    local_json("up", "--no-postgres", "--dir", str(a), "--redis-port", str(port))
    other = free_port()
    out = local("up", "--no-postgres", "--dir", str(a), "--redis-port", str(other))
    assert out.code == 3
    assert f"the local Redis already runs on port {port}, not {other}" in out.one_error_line()
    assert not port_in_use(other)


@pytest.mark.postgres
def test_a_taken_configured_postgres_port_is_replaced(
    roots: tuple[Path, Path], held_port: int
) -> None:
    a, _ = roots
    record(a, redis_port=free_port(), pg_port=held_port, postgres=True)
    seen = local_json("status", "--dir", str(a))
    assert seen["pg_status"] == "port in use by another process"
    assert seen["pg_port_user"]["pid"] == os.getpid()

    up = local_json("up", "--dir", str(a), "--characters", "5")
    assert up["pg_status"] == "running"
    assert up["pg_port"] != held_port
    assert up["database_url"] == f"postgresql://echoes@127.0.0.1:{up['pg_port']}/echoes"
    assert any(note.startswith(f"PostgreSQL port {held_port} is in use by") for note in up["notes"])
    assert json.loads((a / "state.json").read_text())["pg_port"] == up["pg_port"]
    env = local("env", "--dir", str(a)).stdout
    assert f"export DATABASE_URL={up['database_url']}" in env.splitlines()

    out = local("up", "--dir", str(a), "--pg-port", str(held_port))
    assert out.code == 3
    assert "the local PostgreSQL already runs on port" in out.one_error_line()
    local("down", "--dir", str(a))
    out = local("up", "--dir", str(a), "--pg-port", str(held_port))
    assert out.code == 3
    line = out.one_error_line()
    assert f"PostgreSQL port {held_port} (--pg-port / ECHOES_OPS_LOCAL_PG_PORT) is in use" in line
