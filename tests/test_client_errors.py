"""Operator-facing translation of redis-py errors (pure: exceptions built by hand; the real
servers' versions of these are exercised in test_cli_errors, test_tls and test_sentinel)."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
from redis import exceptions as rx

from echoes_ops.client.errors import on_node, translate
from echoes_ops.errors import (
    AuthError,
    ConfigError,
    ExitCode,
    PermissionDeniedError,
    RedisCommandError,
    UnreachableError,
)
from echoes_ops.local.redis_server import RedisServer
from tests.cli_helpers import cli

WHERE = "redis://cache:6379/0"


@pytest.mark.parametrize(
    ("exc", "kind", "fragment"),
    [
        (
            rx.BusyLoadingError("Redis is loading the dataset in memory"),
            UnreachableError,
            "loading",
        ),
        (rx.AuthenticationError("invalid username-password pair"), AuthError, "credentials"),
        (rx.AuthenticationError("Authentication required."), AuthError, "requires a password"),
        (
            rx.NoPermissionError("this user has no permissions to run the 'flushall' command"),
            PermissionDeniedError,
            "'flushall'",
        ),
        (
            rx.ReadOnlyError("You can't write against a read only replica."),
            PermissionDeniedError,
            "replica",
        ),
        (rx.ResponseError("ERR DB index is out of range"), ConfigError, "no such database"),
        (
            rx.ConnectionError("Error 111 connecting to cache:6379. Connection refused."),
            UnreachableError,
            "refused",
        ),
        (rx.TimeoutError("Timeout connecting to server"), UnreachableError, "timed out"),
        (rx.ResponseError("WRONGTYPE Operation against a key"), RedisCommandError, "WRONGTYPE"),
    ],
)
def test_translation(exc, kind, fragment):
    error = translate(exc, WHERE)
    assert isinstance(error, kind)
    assert fragment in str(error)
    assert WHERE in str(error)
    assert "\n" not in str(error)


def test_a_failure_on_another_node_names_that_node():
    """On a cluster the node that failed is rarely the seed the URL names: the line names
    the node (redis-py's text has it, or a per-node walk step says which it was)."""
    seed = "redis://127.0.0.1:7000/0"
    refused = rx.ConnectionError("Error 111 connecting to 127.0.0.1:7004. Connection refused.")
    error = translate(refused, seed)
    assert "node 127.0.0.1:7004 of redis://127.0.0.1:7000/0: connection refused" in str(error)
    same = translate(rx.ConnectionError("Error 111 connecting to cache:6379. Refused."), WHERE)
    assert "node" not in str(same)  # the URL's own server: named once, as before
    closed = rx.ConnectionError("Connection closed by server.")
    assert on_node(closed, "127.0.0.1:7002") is closed  # same class: callers still catch it
    assert "Redis at cluster node 127.0.0.1:7002 closed the connection" in str(
        translate(closed, seed)
    )
    late = on_node(rx.TimeoutError("Timeout reading from socket"), "127.0.0.1:7002")
    assert "cluster node 127.0.0.1:7002" in str(translate(late, seed))
    denied = on_node(rx.NoScriptError("NOSCRIPT No matching script."), "127.0.0.1:7002")
    assert isinstance(denied, rx.NoScriptError)
    assert "Redis at cluster node 127.0.0.1:7002 answered" in str(translate(denied, seed))
    assert on_node(denied, "127.0.0.1:7009") is denied  # the first node named stays
    assert "7009" not in str(translate(denied, seed))


def test_a_script_refused_while_the_cluster_is_down_is_the_cluster_down():
    """Redis 7.0 refuses a script's command during a failover without CLUSTERDOWN in the
    text: the same one line and exit code as a CLUSTERDOWN reply."""
    text = (
        "Script attempted to execute a command while the cluster is down script: 4c17, "
        "on @user_script:18."
    )
    error = translate(on_node(rx.ResponseError(text), "127.0.0.1:7002"), WHERE)
    assert isinstance(error, UnreachableError)
    assert error.exit_code == ExitCode.UNREACHABLE
    assert str(error).startswith("the Redis Cluster at cluster node 127.0.0.1:7002 is down")


def test_tls_failure_is_reported_as_tls():
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc = rx.ConnectionError("Error connecting")
    exc.__cause__ = cause
    error = translate(exc, WHERE)
    assert isinstance(error, UnreachableError)
    assert error.exit_code == ExitCode.UNREACHABLE
    assert "TLS" in str(error)


def test_a_unix_socket_url_reaches_the_server(tmp_path: Path) -> None:
    """REDIS_URL=unix://... connects (it failed on an option only TCP connections take)."""
    socket_path = tmp_path / "redis.sock"
    server = RedisServer(tmp_path / "unix-redis", extra_args=["--unixsocket", str(socket_path)])
    server.start()
    try:
        done = cli("status", "--json", env={"REDIS_URL": f"unix://{socket_path}"})
        assert done.code == 0, done.stderr
        assert json.loads(done.stdout)["server"]["version"].startswith(("6.", "7.", "8."))
    finally:
        server.stop()
