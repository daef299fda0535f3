"""The private redis-server wrapper used by `local up` and the fixtures."""

from __future__ import annotations

import socket
import threading

import pytest

from echoes_ops.errors import ConfigError
from echoes_ops.local.redis_server import RedisServer


def test_port_in_use_says_why_fast(tmp_path, redis_server):
    clash = RedisServer(tmp_path / "clash", port=redis_server.port)
    with pytest.raises(ConfigError, match=f"port {redis_server.port}.*(listening|in use)"):
        clash.start(timeout=5)
    assert redis_server.running()  # the server that owns the port is untouched


def test_a_start_waits_for_its_port_to_be_let_go(tmp_path):
    """A restart on the port of a server just killed: something may still hold the port for
    a moment without listening on it (here a bound socket, closed 0.5 s later). The start
    waits for it instead of failing with redis-server's "Failed listening on port"."""
    server = RedisServer(tmp_path / "r")
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", server.port))  # bound, not listening
    release = threading.Timer(0.5, holder.close)
    release.start()
    try:
        server.start()
        assert server.running()
    finally:
        release.cancel()
        holder.close()
        server.stop()


def test_start_stop_restart_kill(tmp_path):
    server = RedisServer(tmp_path / "r")
    server.start()
    assert server.running()
    server.restart()
    assert server.running()
    server.kill()
    assert not server.running()
    server.start()
    assert server.running()
    server.stop()
    assert not server.running()
