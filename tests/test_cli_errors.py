"""Bad input and broken servers: one clear line on stderr, a documented exit code, no
traceback, nothing written."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis

from echoes_ops.errors import ExitCode
from echoes_ops.local.redis_server import RedisServer, free_port
from tests.cli_helpers import cli
from tests.conftest import BUNDLED_GAMEDATA


def test_stopped_redis_is_unreachable():
    port = free_port()
    out = cli("status", env={"REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    assert out.code == ExitCode.UNREACHABLE
    line = out.one_error_line()
    assert f"127.0.0.1:{port}" in line
    assert "connection refused" in line


def test_plan_style_host_port_settings_are_used():
    port = free_port()
    out = cli("status", env={"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port)})
    assert out.code == ExitCode.UNREACHABLE
    assert f"127.0.0.1:{port}" in out.one_error_line()


def test_unresponsive_server_times_out():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        out = cli("--timeout", "0.3", "status", env={"REDIS_URL": f"redis://127.0.0.1:{port}"})
    assert out.code == ExitCode.UNREACHABLE
    assert "timed out" in out.one_error_line()


@pytest.fixture
def secured(tmp_path: Path):
    server = RedisServer(tmp_path / "secured", password="s3cret-pass")
    server.start()
    client = redis.Redis(port=server.port, password="s3cret-pass", decode_responses=True)
    client.execute_command("ACL", "SETUSER", "reader", "on", ">readpw", "~*", "+@read", "+ping")
    yield server
    client.close()
    server.stop()


def test_wrong_password_is_an_auth_error_and_never_printed(secured):
    url = f"redis://:wrong-password-123@127.0.0.1:{secured.port}/0"
    out = cli("status", env={"REDIS_URL": url})
    assert out.code == ExitCode.AUTH
    line = out.one_error_line()
    assert "rejected the credentials" in line
    assert "wrong-password-123" not in out.stderr + out.stdout


def test_missing_password_says_one_is_required(secured):
    out = cli("status", env={"REDIS_URL": f"redis://127.0.0.1:{secured.port}/0"})
    assert out.code == ExitCode.AUTH
    assert "requires a password" in out.one_error_line()


def test_unknown_user(secured):
    url = f"redis://ghost:pw@127.0.0.1:{secured.port}/0"
    out = cli("status", env={"REDIS_URL": url})
    assert out.code == ExitCode.AUTH


def test_password_file_is_read(secured, tmp_path):
    secret = tmp_path / "redis-password"
    secret.write_text("s3cret-pass\n")
    out = cli(
        "status",
        "--json",
        env={
            "REDIS_URL": f"redis://127.0.0.1:{secured.port}/0",
            "REDIS_PASSWORD_FILE": str(secret),
        },
    )
    assert out.code == 0, out.stderr
    assert "s3cret-pass" not in out.stdout


def test_acl_denial_names_the_command_and_writes_nothing(secured):
    url = f"redis://reader:readpw@127.0.0.1:{secured.port}/0"
    out = cli("preload", "--gamedata", str(BUNDLED_GAMEDATA), env={"REDIS_URL": url})
    assert out.code == ExitCode.PERMISSION
    line = out.one_error_line()
    assert "may not run" in line
    assert "'" in line
    admin = redis.Redis(port=secured.port, password="s3cret-pass")
    assert admin.dbsize() == 0
    admin.close()


def test_wrong_database_index(redis_server):
    out = cli("status", env={"REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/999"})
    assert out.code == ExitCode.CONFIG
    assert "no such database" in out.one_error_line()


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"REDIS_PORT": "not-a-port"}, "REDIS_PORT"),
        ({"REDIS_URL": "http://example.invalid"}, "REDIS_URL must start with"),
        ({"REDIS_TLS": "maybe"}, "REDIS_TLS"),
        ({"REDIS_PASSWORD_FILE": "/nonexistent/secret"}, "REDIS_PASSWORD_FILE"),
        ({"ECHOES_OPS_CONFIG": "/nonexistent/echoes.yaml"}, "config file"),
    ],
)
def test_misconfiguration_is_a_config_error(env, fragment):
    out = cli("status", env=env)
    assert out.code == ExitCode.CONFIG
    assert fragment in out.one_error_line()


def test_malformed_config_file_names_the_line(tmp_path):
    config = tmp_path / "echoes.yaml"
    config.write_text("redis_url: redis://localhost\nbad: [unclosed\n")
    out = cli("--config", str(config), "status")
    assert out.code == ExitCode.CONFIG
    assert f"{config}:" in out.one_error_line()


def test_bad_gamedata_preload_writes_nothing(tmp_path, redis_url, sync_r):
    (tmp_path / "world.yaml").write_text("locations:\n  - id: a\n    name: [unclosed\n")
    out = cli("preload", "--gamedata", str(tmp_path), env={"REDIS_URL": redis_url})
    assert out.code == ExitCode.CONFIG
    assert "world.yaml:" in out.one_error_line()
    assert sync_r.keys("location:*") == []  # no game data written
    (record,) = sync_r.xrevrange("echoes:audit")
    assert record[1]["action"] == "preload"
    assert record[1]["result"] == "failed"
    assert "world.yaml" in record[1]["detail"]


def test_validate_reports_every_problem(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "locations:\n"
        "  - id: a\n"
        "    name: A\n"
        "    description: d\n"
        "    exits: {north: nowhere}\n"
        "    danger_level: 42\n"
        "    image_path: /a.png\n"
        "    x: 0\n"
        "    y: 0\n"
    )
    out = cli("validate", "--gamedata", str(tmp_path))
    assert out.code == ExitCode.PROBLEMS_FOUND
    problems = out.stdout.strip().splitlines()
    assert any("a.yaml:6:" in p and "danger_level" in p for p in problems)
    assert any("nowhere" in p for p in problems)


def test_password_in_redis_url_flag_draws_a_warning():
    port = free_port()
    out = cli("--redis-url", f"redis://:hunter2@127.0.0.1:{port}", "status")
    assert "warning" in out.stderr
    assert "hunter2" not in out.stderr
    assert out.code == ExitCode.UNREACHABLE


@pytest.mark.parametrize(
    "args",
    [("validate",), ("doctor",), ("stats", "--prometheus"), ("status",), ("sessions", "list")],
    ids=lambda a: " ".join(a),
)
def test_an_unreadable_config_file_is_one_line_for_every_command(args, tmp_path):
    """Commands that read their settings while resolving their arguments (the gamedata
    folder, the doctor's options) failed with a traceback and exit 1 on a missing
    ECHOES_OPS_CONFIG; every command says it in one line, exit 3."""
    missing = tmp_path / "nowhere.yaml"
    out = cli(*args, env={"ECHOES_OPS_CONFIG": str(missing), "ECHOES_OPS_PLAIN": "1"})
    assert out.code == ExitCode.CONFIG
    assert f"cannot read config file {missing}" in out.one_error_line()
