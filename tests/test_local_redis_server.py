"""The private redis-server wrapper used by `local up` and the fixtures."""

from __future__ import annotations

import pytest

from echoes_ops.errors import ConfigError
from echoes_ops.local.redis_server import RedisServer


def test_port_in_use_says_why_fast(tmp_path, redis_server):
    clash = RedisServer(tmp_path / "clash", port=redis_server.port)
    with pytest.raises(ConfigError, match=f"port {redis_server.port}.*(listening|in use)"):
        clash.start(timeout=5)
    assert redis_server.running()  # the server that owns the port is untouched


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
