"""The first signal is the truth: ``status``, the dashboard's header and its Overview show
REDIS_ENABLED from PostgreSQL (the source of truth), the workers' modes and a loud mark
when anything disagrees; they say which server and which named environment they talk to;
every confirmation names the environment. Real redis-server, PostgreSQL and reference
worker."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest
import redis

from echoes_ops.cli import running
from echoes_ops.config import Settings, looks_like_production, on_environment
from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode
from echoes_ops.operations.flags import LazyRedis, set_flag
from echoes_ops.operations.migrations import migrate
from echoes_ops.tui.model import DashboardState
from echoes_ops.tui.panels.header import render_header
from echoes_ops.tui.panels.overview import overview_rows
from echoes_ops.tui.source import RedisSource
from tests.cli_helpers import cli
from tests.runtime_helpers import make_worker, session
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(90)


def _meta(url: str, wid: str) -> dict[str, str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.hgetall(keys.worker_meta_key(wid))
    finally:
        client.close()


@pytest.mark.postgres
async def test_after_a_redis_restart_status_and_header_say_postgresql_s_value(
    private_redis, database_url
):
    await migrate(database_url)
    private_redis.start()
    url = private_redis.url
    settings = Settings.load(env={"REDIS_URL": url, "DATABASE_URL": database_url})
    workers = [
        make_worker(url, f"w{n}", database_url=database_url, heartbeat_interval=0.2)
        for n in (1, 2, 3)
    ]
    for w in workers:
        await w.start()
    try:
        await workers[0].connect_player(session(1, "overpass"))
        async with LazyRedis(settings.redis_target()) as lazy:
            await set_flag(
                database_url, "REDIS_ENABLED", "false", reason="outage", operator="o", redis=lazy
            )
        # Redis restarts without persistence: the mirror is gone, PostgreSQL still says false
        private_redis.restart()
        for w in workers:
            await eventually(lambda w=w: _meta(url, w.worker_id).get("mode") == "fallback", 10)
        assert redis.Redis.from_url(url).hget(keys.FLAGS_KEY, "REDIS_ENABLED") is None

        env = {"REDIS_URL": url, "DATABASE_URL": database_url, "ECHOES_OPS_ENVIRONMENT": "prod"}
        out = await asyncio.to_thread(cli, "status", "--json", env=env)
        assert out.code == 0, out.stderr
        flag = json.loads(out.stdout)["redis_enabled"]
        assert (flag["value"], flag["source"], flag["modes"]) == (
            "false",
            "PostgreSQL",
            "3/3 workers fallback",
        )
        assert flag["alarms"] == ["Redis mirror says true (unset: the default)"]

        human = await asyncio.to_thread(cli, "status", env={**env, "COLUMNS": "200"})
        assert "REDIS_ENABLED=false (PostgreSQL); 3/3 workers fallback" in human.stdout
        assert "ALARM" in human.stdout
        assert "unset (default true)" not in human.stdout

        # the dashboard's header and Overview, from the source the poller runs
        source = RedisSource(settings)
        try:
            snap = await source.snapshot()
        finally:
            await source.close()
        state = DashboardState(source.display, False, postgres=True, environment="prod")
        state.snapshot, state.connected = snap, True
        header = render_header(state).plain
        assert "REDIS_ENABLED=false (PostgreSQL)  3/3 workers fallback" in header
        assert "⚠ Redis mirror says true" in header
        assert "unset (default true)" not in header
        rows = dict(overview_rows(state))
        assert rows["REDIS_ENABLED"] == "false (PostgreSQL); 3/3 workers fallback"
        assert rows["ALARM"] == "Redis mirror says true (unset: the default)"

        # a worker of an old build, still on Redis: the workers disagree, and it says so
        rogue = redis.Redis.from_url(url, client_name="w9", decode_responses=True)
        rogue.hset(keys.worker_meta_key("w9"), mapping={"mode": "redis", "redis_enabled": "true"})
        try:
            out = await asyncio.to_thread(cli, "status", "--json", env=env)
        finally:
            rogue.close()
        flag = json.loads(out.stdout)["redis_enabled"]
        assert flag["modes"] == "3/4 workers fallback, 1/4 redis"
        assert "workers disagree (3 false, 1 true)" in flag["alarms"]
    finally:
        for w in workers:
            await w.stop()


def test_status_says_where_it_talks_to(redis_url):
    out = cli("status", "--json", env={"REDIS_URL": redis_url, "ECHOES_OPS_ENVIRONMENT": "prod"})
    assert out.code == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["target"] == {"url": redis_url, "topology": "standalone", "environment": "prod"}
    flag = data["redis_enabled"]
    assert flag["value"] == "true"  # nothing set anywhere: the default, from no source
    assert flag["note"].startswith("PostgreSQL (the source of truth) is not configured")

    human = cli("--environment", "staging", "status", env={"REDIS_URL": redis_url})
    lines = {
        line.split(None, 1)[0]: line.rstrip() for line in human.stdout.splitlines() if line.strip()
    }
    assert lines["target"].split(None, 1)[1] == f"{redis_url} (standalone)"
    assert lines["environment"].split(None, 1)[1] == "staging"
    unnamed = cli("status", env={"REDIS_URL": redis_url})
    assert "not named (ECHOES_OPS_ENVIRONMENT)" in unnamed.stdout


def test_status_hides_the_password(redis_url):
    url = redis_url.replace("redis://", "redis://:hunter2@")
    out = cli("status", "--json", env={"REDIS_URL": url})
    # the test server has no password: Redis refuses AUTH, or accepts it; either way the
    # password is never printed
    assert "hunter2" not in out.stdout + out.stderr


def test_bad_environment_name_is_a_config_error():
    out = cli("status", env={"ECHOES_OPS_ENVIRONMENT": "prod; rm -rf /"})
    assert out.code == ExitCode.CONFIG
    assert "ECHOES_OPS_ENVIRONMENT must be a short name" in out.one_error_line()


def test_environment_words():
    assert on_environment("Kick player 42?", "prod") == "Kick player 42 on prod?"
    assert on_environment("Delete 3 keys", "staging") == "Delete 3 keys on staging?"
    assert on_environment("Kick player 42?", None) == "Kick player 42?"
    assert [
        looks_like_production(n)
        for n in ("prod", "Production", "eu-prod", "prod_2", "live", "staging", "preprod", None)
    ] == [True, True, True, True, True, False, False, False]


class _OnATerminal:
    """``sys`` as :mod:`echoes_ops.cli.running` sees it, with stdin (the test runner's)
    claiming to be a terminal."""

    class _Stdin:
        def isatty(self) -> bool:
            return True

    def __getattr__(self, name: str) -> object:
        return getattr(sys, name)

    @property
    def stdin(self) -> object:
        return self._Stdin()


@pytest.fixture
def one_session(sync_r) -> dict[str, str]:
    sync_r.hset(keys.session_key(42), mapping={"worker_id": "w1", "location_id": "overpass"})
    sync_r.sadd(keys.presence_key("overpass"), 42)
    return {}


def test_confirmations_name_the_environment(redis_url, sync_r, one_session, monkeypatch):
    env = {"REDIS_URL": redis_url, "ECHOES_OPS_ENVIRONMENT": "prod"}
    # no terminal: refused, and the refusal says where
    out = cli("sessions", "kick", "42", "--reason", "stuck", env=env)
    assert out.code == ExitCode.USAGE
    assert "Kick player 42 (session, 1 location set(s)) on prod: refusing without --yes" in (
        out.one_error_line()
    )
    # through the global flag, for another command's confirmation
    sync_r.hset(keys.worker_connections_key("w1"), "42", "connected")
    out = cli("--environment", "staging", "workers", "cleanup", "w1", env={"REDIS_URL": redis_url})
    assert "on staging: refusing without --yes" in out.one_error_line()
    # a terminal: the question names it, and answering no changes nothing
    monkeypatch.setattr(running, "sys", _OnATerminal())
    out = cli("sessions", "kick", "42", "--reason", "stuck", env=env, input="n\n")
    assert out.code == ExitCode.REFUSED
    assert "Kick player 42 (session, 1 location set(s)) on prod? [y/N]" in out.stdout
    assert sync_r.exists(keys.session_key(42)) == 1


def test_dashboard_header_names_the_environment_on_every_screen():
    state = DashboardState("redis://cache:6379/0", False, environment="prod")
    header = render_header(state)
    assert header.plain.startswith(" echoes-ops   prod  ")
    styles = {
        str(span.style) for span in header.spans if header.plain[span.start : span.end] == " prod "
    }
    assert styles == {"bold reverse red"}
    calm = render_header(DashboardState("redis://cache:6379/0", False, environment="staging"))
    assert all(
        "red" not in str(span.style)
        for span in calm.spans
        if "staging" in calm.plain[span.start : span.end]
    )
