"""Sentinel against real processes: a redis-server primary watched by one Sentinel, and
``REDIS_SENTINELS`` / ``REDIS_SENTINEL_MASTER`` leading ``status`` to it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from echoes_ops.errors import ExitCode
from echoes_ops.local.binaries import find_redis_server
from echoes_ops.local.redis_server import RedisServer, free_port
from tests.cli_helpers import cli
from tests.waiting import wait_until

MASTER = "mymaster"
PASSWORD = "primary-pw-7f3a"


@dataclass
class SentinelProcess:
    """One ``redis-server --sentinel`` on loopback, in the foreground of a child process.

    Sentinel rewrites its config file (it records what it learns), so the file lives in
    ``folder`` and is written fresh on start.
    """

    folder: Path
    monitor: list[tuple[str, int, str | None]]  # (master name, primary port, auth-pass)
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    @property
    def conf(self) -> Path:
        return self.folder / "sentinel.conf"

    @property
    def logfile(self) -> Path:
        return self.folder / "sentinel.log"

    def start(self, timeout: float = 10.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.folder}",
            f"logfile {self.logfile}",
        ]
        for name, primary_port, auth in self.monitor:
            lines.append(f"sentinel monitor {name} 127.0.0.1 {primary_port} 1")
            lines.append(f"sentinel down-after-milliseconds {name} 5000")
            if auth:
                lines.append(f"sentinel auth-pass {name} {auth}")
        self.conf.write_text("\n".join(lines) + "\n")
        self._proc = subprocess.Popen(
            [find_redis_server(), str(self.conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_until_ready(timeout)

    def _wait_until_ready(self, timeout: float) -> None:
        """Until the Sentinel answers and sees every monitored primary as up and connected."""
        client = redis.Redis(port=self.port, decode_responses=True, socket_timeout=1)

        def ready() -> bool:
            assert self._proc is not None
            if self._proc.poll() is not None:
                log = self.logfile.read_text() if self.logfile.exists() else ""
                raise RuntimeError(f"sentinel exited with {self._proc.returncode}: {log}")
            masters = client.sentinel_masters()
            assert isinstance(masters, dict)
            return len(masters) == len(self.monitor) and all(
                m["is_master"] and not m["is_sdown"] and not m["is_disconnected"]
                for m in masters.values()
            )

        try:
            wait_until(
                ready,
                timeout,
                f"sentinel on port {self.port} to see every primary up",
                retry_on=(redis.ConnectionError,),
            )
        finally:
            client.close()

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._proc = None


@dataclass
class SentinelSetup:
    primary: RedisServer
    secured: RedisServer
    sentinel: SentinelProcess

    @property
    def sentinels(self) -> str:
        return f"127.0.0.1:{self.sentinel.port}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    root = tmp_path_factory.mktemp("sentinel")
    primary = RedisServer(root / "primary")
    secured = RedisServer(root / "secured", password=PASSWORD)
    sentinel = SentinelProcess(
        root / "sentinel",
        monitor=[(MASTER, primary.port, None), ("securedmaster", secured.port, PASSWORD)],
    )
    try:
        primary.start()
        secured.start()
        sentinel.start()
        yield SentinelSetup(primary, secured, sentinel)
    finally:
        sentinel.stop()
        # each redis-server takes a second or more to exit; stop both at once
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(RedisServer.stop, [secured, primary]))


def _status(env: dict[str, str]) -> dict[str, dict[str, object]]:
    out = cli("status", "--json", env=env)
    assert out.code == 0, out.stderr
    data: dict[str, dict[str, object]] = json.loads(out.stdout)
    return data


def test_status_through_sentinel_reaches_the_primary(setup: SentinelSetup) -> None:
    # A key only the primary holds shows the command talked to that server.
    with redis.Redis(port=setup.primary.port) as direct:
        direct.flushall()
        direct.set("echoes-ops:test:sentinel-marker", "1")
        run_id = direct.info("server")["run_id"]
    data = _status({"REDIS_SENTINELS": setup.sentinels, "REDIS_SENTINEL_MASTER": MASTER})
    assert data["server"]["role"] == "master"
    assert data["server"]["keys"] == 1
    # status says what it talked through: the Sentinels and the master's name
    assert data["target"] == {
        "url": f"sentinel://{setup.sentinels}/{MASTER}",
        "topology": f"sentinel {MASTER}",
        "environment": None,
    }
    with redis.Redis(port=setup.primary.port) as direct:
        assert direct.info("server")["run_id"] == run_id


def test_sentinel_list_skips_a_dead_sentinel(setup: SentinelSetup) -> None:
    dead = f"127.0.0.1:{free_port()}"
    data = _status(
        {"REDIS_SENTINELS": f"{dead},{setup.sentinels}", "REDIS_SENTINEL_MASTER": MASTER}
    )
    assert data["server"]["role"] == "master"


def test_password_is_used_for_the_primary(setup: SentinelSetup) -> None:
    env = {"REDIS_SENTINELS": setup.sentinels, "REDIS_SENTINEL_MASTER": "securedmaster"}
    data = _status({**env, "REDIS_PASSWORD": PASSWORD})
    assert data["server"]["role"] == "master"
    assert PASSWORD not in json.dumps(data)
    human = cli("status", env={**env, "REDIS_PASSWORD": PASSWORD, "COLUMNS": "200"})
    assert "(sentinel securedmaster)" in human.stdout
    assert PASSWORD not in human.stdout
    out = cli("status", env=env)
    assert out.code == ExitCode.AUTH
    assert "requires a password" in out.one_error_line()
    out = cli("status", env={**env, "REDIS_PASSWORD": "not-the-password"})
    assert out.code == ExitCode.AUTH
    line = out.one_error_line()
    assert "rejected the credentials" in line
    assert "not-the-password" not in line


def test_unknown_master_name(setup: SentinelSetup) -> None:
    out = cli(
        "status",
        "--json",
        env={"REDIS_SENTINELS": setup.sentinels, "REDIS_SENTINEL_MASTER": "nosuchmaster"},
    )
    assert out.code == ExitCode.UNREACHABLE
    line = out.one_error_line()
    assert "'nosuchmaster'" in line
    assert f"sentinel://{setup.sentinels}/nosuchmaster" in line
    assert "REDIS_SENTINEL_MASTER" in line
    assert "timed out" not in line
    assert out.stdout == ""


def test_no_sentinel_answers(setup: SentinelSetup) -> None:
    dead = f"127.0.0.1:{free_port()}"
    out = cli(
        "status",
        env={"REDIS_SENTINELS": dead, "REDIS_SENTINEL_MASTER": MASTER},
    )
    assert out.code == ExitCode.UNREACHABLE
    line = out.one_error_line()
    assert f"sentinel://{dead}/{MASTER}" in line
    assert "did not answer" in line
    assert "timed out" not in line  # refused, not a timeout (redis-py's repr says socket_timeout)
    assert "REDIS_SENTINELS" in line


def test_sentinels_without_master_name_is_a_config_error() -> None:
    out = cli("status", env={"REDIS_SENTINELS": "127.0.0.1:26379"})
    assert out.code == ExitCode.CONFIG
    assert "REDIS_SENTINEL_MASTER" in out.one_error_line()
