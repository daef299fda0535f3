"""The REDIS_ENABLED switch from the operator's side: flags list/get/set/status against a
real PostgreSQL and redis-server, the env file, and the audit trail."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import asyncpg
import pytest

from echoes_ops.contract import envelopes, keys
from echoes_ops.contract import flags as contract
from echoes_ops.errors import ConfigError, ExitCode, NotFoundError
from echoes_ops.local.redis_server import free_port
from echoes_ops.operations import flags as ops
from echoes_ops.operations.migrations import FLAGS_CHANNEL, migrate
from tests.cli_helpers import cli

pytestmark = pytest.mark.timeout(60)

ENV_TEXT = (
    "# Echoes of the Ashes API\n"
    "DATABASE_URL=postgresql://game@db/game\n"
    "\n"
    "# rollback switch: see docs/runbook.md\n"
    "REDIS_ENABLED=true   # flipped by echoes-ops\n"
    "REDIS_HOST=cache\n"
)


@pytest.fixture
def migrated(database_url: str) -> str:
    asyncio.run(migrate(database_url))
    return database_url


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "deploy" / "api.env"
    path.parent.mkdir()
    path.write_text(ENV_TEXT, encoding="utf-8")
    path.chmod(0o640)
    return path


def env_of(database_url: str, redis_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url or f"redis://127.0.0.1:{free_port()}/0",
        "ECHOES_OPS_OPERATOR": "dana",
    }
    env.update(extra)
    return env


async def _rows(dsn: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query)
    finally:
        await conn.close()


def rows(dsn: str, query: str) -> list[asyncpg.Record]:
    return asyncio.run(_rows(dsn, query))


# -- pure parts ------------------------------------------------------------------------------


def test_contract_channel_is_the_migrations_channel():
    assert contract.PG_CHANNEL == FLAGS_CHANNEL


def test_boolean_values_are_stored_canonically():
    redis_enabled = contract.spec("redis_enabled")
    assert redis_enabled.name == "REDIS_ENABLED"
    assert [redis_enabled.parse(v) for v in ("false", "FALSE", "0", "off", "no")] == ["false"] * 5
    assert [redis_enabled.parse(v) for v in ("true", "True", "1", "on", "yes")] == ["true"] * 5
    with pytest.raises(ConfigError, match="boolean"):
        redis_enabled.parse("maybe")
    with pytest.raises(NotFoundError, match="REDIS_ENABLED"):
        contract.spec("NO_SUCH_FLAG")


def test_notify_payload_version_is_exact_microseconds():
    update = contract.decode_notify(
        '{"name":"REDIS_ENABLED","value":"false","updated_by":"dana",'
        '"updated_at":1764115200.123456}'
    )
    assert update.version == "1764115200123456"
    assert (update.name, update.value, update.updated_by) == ("REDIS_ENABLED", "false", "dana")


def test_env_update_replaces_in_place_and_keeps_everything_else():
    text = (
        "# header\r\n"
        "export REDIS_ENABLED='true' # quoted, exported\r\n"
        "OTHER=1\r\n"
        "REDIS_ENABLED = true\r\n"
        "NOT_REDIS_ENABLED=true\r\n"
    )
    plan = ops.plan_env_update("x.env", text, "REDIS_ENABLED", "false")
    assert plan.new_text == (
        "# header\r\n"
        "export REDIS_ENABLED='false' # quoted, exported\r\n"
        "OTHER=1\r\n"
        "REDIS_ENABLED = false\r\n"
        "NOT_REDIS_ENABLED=true\r\n"
    )
    assert [c.line for c in plan.changes] == [2, 4]
    assert plan.current == "true"
    assert ops.env_value(plan.new_text, "REDIS_ENABLED") == "false"


def test_env_update_appends_when_missing_and_is_idempotent():
    plan = ops.plan_env_update("x.env", "A=1\n# no newline at the end", "REDIS_ENABLED", "false")
    assert plan.new_text == "A=1\n# no newline at the end\nREDIS_ENABLED=false\n"
    assert plan.changes[0].before is None
    again = ops.plan_env_update("x.env", plan.new_text, "REDIS_ENABLED", "false")
    assert not again.changed
    assert ops.plan_env_update("x.env", "", "REDIS_ENABLED", "true").new_text == (
        "REDIS_ENABLED=true\n"
    )


def test_env_value_last_assignment_wins():
    assert ops.env_value("REDIS_ENABLED=true\nREDIS_ENABLED=false # later\n", "REDIS_ENABLED") == (
        "false"
    )
    assert ops.env_value("# REDIS_ENABLED=false\n", "REDIS_ENABLED") is None


# -- the CLI, end to end ---------------------------------------------------------------------


def test_set_get_list_status_round_trip(migrated, redis_url, sync_r, env_file):
    env = env_of(migrated, redis_url, ECHOES_OPS_ENV_FILE=str(env_file))

    got = cli("flags", "get", "REDIS_ENABLED", "--json", env=env)
    assert got.code == 0, got.stderr
    assert json.loads(got.stdout)["value"] == "true"
    assert json.loads(got.stdout)["is_default"] is True

    events = sync_r.pubsub()
    events.subscribe(keys.WORKERS_CHANNEL)
    assert events.get_message(timeout=5)["type"] == "subscribe"
    out = cli(
        "flags", "set", "REDIS_ENABLED", "false", "--reason", "Redis outage", "--yes", env=env
    )
    assert out.code == 0, out.stderr
    assert "REDIS_ENABLED: true -> false" in out.stdout
    assert out.stderr == ""

    # PostgreSQL
    got = json.loads(cli("flags", "get", "REDIS_ENABLED", "--json", env=env).stdout)
    assert (got["value"], got["updated_by"], got["reason"]) == ("false", "dana", "Redis outage")
    version = got["version"]
    assert int(version) > 0
    human = cli("flags", "get", "redis_enabled", env=env).stdout
    assert human.splitlines()[0] == "REDIS_ENABLED=false"
    listed = json.loads(cli("flags", "list", "--json", env=env).stdout)["flags"]
    assert [(f["name"], f["value"]) for f in listed] == [("REDIS_ENABLED", "false")]
    # env file
    assert ops.env_value(env_file.read_text(), "REDIS_ENABLED") == "false"
    # Redis mirror and the workers' fast path
    assert sync_r.hgetall(keys.FLAGS_KEY) == {
        "REDIS_ENABLED": "false",
        "REDIS_ENABLED:version": version,
        "REDIS_ENABLED:updated_by": "dana",
    }
    message = events.get_message(timeout=2)
    envelope = envelopes.decode_message(message["channel"], message["data"])
    assert envelope.type == "config_changed"
    assert envelope.worker_id is None
    assert envelope.extra["flag"] == "REDIS_ENABLED"
    assert envelope.extra["value"] == "false"
    assert envelope.extra["version"] == version
    events.close()

    status = cli("flags", "status", "--json", env=env)
    assert status.code == 0, status.stdout
    report = json.loads(status.stdout)
    assert report["expected"] == "false"
    assert report["agree"] is True
    assert {s["source"]: s["value"] for s in report["sources"]} == {
        "postgresql": "false",
        "env_file": "false",
        "redis": "false",
    }
    assert report["workers"] == []
    human = cli("flags", "status", env=env)
    assert "sources agree" in human.stdout

    # the audit trail, both sinks
    audit = json.loads(cli("audit", "--action", "flags", "--json", env=env).stdout)
    record = audit["records"][0]
    assert (record["action"], record["result"], record["dry_run"]) == ("flags.set", "ok", False)
    assert record["args"]["reason"] == "Redis outage"
    assert record["detail"]["targets"] == {"postgresql": "ok", "env_file": "ok", "redis": "ok"}
    assert sync_r.xlen(keys.AUDIT_STREAM_KEY) == 1


def test_env_file_is_replaced_atomically_keeping_content_and_mode(migrated, redis_url, env_file):
    link = env_file.parent / "current.env"
    link.symlink_to(env_file.name)
    before = os.stat(env_file)
    out = cli(
        "flags",
        "set",
        "REDIS_ENABLED",
        "false",
        "--reason",
        "drill",
        "--yes",
        "--env-file",
        str(link),
        env=env_of(migrated, redis_url),
    )
    assert out.code == 0, out.stderr
    after = os.stat(env_file)
    assert link.is_symlink()  # the link is kept, its target replaced
    assert env_file.read_text() == ENV_TEXT.replace(
        "REDIS_ENABLED=true   # flipped", "REDIS_ENABLED=false   # flipped"
    )
    assert stat.S_IMODE(after.st_mode) == 0o640
    assert after.st_ino != before.st_ino  # a new file renamed over the old one
    assert sorted(p.name for p in env_file.parent.iterdir()) == ["api.env", "current.env"]

    # setting the same value again leaves the file alone
    again = cli(
        "flags", "set", "REDIS_ENABLED", "false", "--reason", "again", "--yes",
        "--env-file", str(env_file), "--json", env=env_of(migrated, redis_url),
    )  # fmt: skip
    assert json.loads(again.stdout)["targets"]["env_file"]["status"] == "unchanged"
    assert os.stat(env_file).st_ino == after.st_ino


def test_dry_run_writes_nothing(migrated, redis_url, sync_r, env_file):
    env = env_of(migrated, redis_url, ECHOES_OPS_ENV_FILE=str(env_file))
    out = cli("flags", "set", "REDIS_ENABLED", "off", "--reason", "r", "--dry-run", env=env)
    assert out.code == 0, out.stderr
    assert "dry run: nothing written" in out.stdout
    assert "line 5: 'REDIS_ENABLED=true   # flipped by echoes-ops'" in out.stdout
    assert env_file.read_text() == ENV_TEXT
    assert rows(migrated, "SELECT * FROM echoes_ops.flags") == []
    assert sync_r.exists(keys.FLAGS_KEY) == 0
    audit = json.loads(cli("audit", "--json", env=env).stdout)["records"]
    assert [(r["action"], r["dry_run"]) for r in audit] == [("flags.set", True)]


def test_postgres_down_is_one_error_and_writes_nothing(redis_url, sync_r, env_file):
    dead_pg = f"postgresql://nobody@127.0.0.1:{free_port()}/game"
    events = sync_r.pubsub()
    events.subscribe(keys.WORKERS_CHANNEL)
    assert events.get_message(timeout=5)["type"] == "subscribe"
    out = cli(
        "flags", "set", "REDIS_ENABLED", "false", "--reason", "outage", "--yes",
        env=env_of(dead_pg, redis_url, ECHOES_OPS_ENV_FILE=str(env_file)),
    )  # fmt: skip
    assert out.code == ExitCode.POSTGRES
    line = out.one_error_line()
    assert "PostgreSQL" in line
    assert "connection refused" in line
    assert env_file.read_text() == ENV_TEXT
    assert sorted(p.name for p in env_file.parent.iterdir()) == ["api.env"]  # no temp file left
    assert sync_r.exists(keys.FLAGS_KEY) == 0
    assert events.get_message(timeout=0.5) is None  # no config_changed
    events.close()
    # the failure is in the audit trail (the Redis stream, PostgreSQL being down)
    (entry,) = sync_r.xrange(keys.AUDIT_STREAM_KEY)
    fields = entry[1]
    assert (fields["action"], fields["result"]) == ("flags.set", "failed")
    assert "connection refused" in json.loads(fields["detail"])["error"]


def test_redis_down_is_a_warning_and_postgres_records_it(migrated, env_file):
    env = env_of(migrated, ECHOES_OPS_ENV_FILE=str(env_file))
    out = cli("flags", "set", "REDIS_ENABLED", "false", "--reason", "outage", "--yes", env=env)
    assert out.code == 0, out.stderr
    assert "redis       unreachable" in out.stdout
    assert out.stderr.startswith("echoes-ops: warning: redis unreachable: mirror not written")
    assert ops.env_value(env_file.read_text(), "REDIS_ENABLED") == "false"
    (row,) = rows(migrated, "SELECT value, updated_by, reason FROM echoes_ops.flags")
    assert tuple(row) == ("false", "dana", "outage")
    (audit,) = rows(migrated, "SELECT action, result, detail FROM echoes_ops.audit")
    assert (audit["action"], audit["result"]) == ("flags.set", "ok")
    assert json.loads(audit["detail"])["targets"]["redis"] == "unreachable"

    status = cli("flags", "status", env=env)
    assert status.code == 0, status.stdout
    assert "Redis is unreachable" in status.stdout
    assert "sources agree" in status.stdout
    report = json.loads(cli("flags", "status", "--json", env=env).stdout)
    assert report["redis_reachable"] is False
    assert [s["effective"] for s in report["sources"][:2]] == ["false", "false"]


def test_status_flags_disagreement(migrated, redis_url, sync_r, env_file):
    env = env_of(migrated, redis_url, ECHOES_OPS_ENV_FILE=str(env_file))
    cli("flags", "set", "REDIS_ENABLED", "false", "--reason", "outage", "--yes", env=env)
    sync_r.hset(keys.FLAGS_KEY, "REDIS_ENABLED", "true")  # e.g. a Redis restored from backup
    out = cli("flags", "status", "--json", env=env)
    assert out.code == ExitCode.PROBLEMS_FOUND
    report = json.loads(out.stdout)
    assert report["agree"] is False
    assert "sources disagree" in report["problems"][0]


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (("NO_SUCH", "true", "--reason", "x", "--yes"), ExitCode.REFUSED, "unknown flag"),
        (("REDIS_ENABLED", "maybe", "--reason", "x", "--yes"), ExitCode.USAGE, "true or false"),
        (("REDIS_ENABLED", "false", "--reason", "  ", "--yes"), ExitCode.USAGE, "--reason"),
        (("REDIS_ENABLED", "false", "--reason", "x"), ExitCode.USAGE, "refusing without --yes"),
    ],
)
def test_set_refuses_bad_input(migrated, args, code, text):
    out = cli("flags", "set", *args, env=env_of(migrated))
    assert out.code == code
    assert text in out.one_error_line()
    assert rows(migrated, "SELECT * FROM echoes_ops.flags") == []


def test_missing_env_file_stops_before_anything_is_written(migrated, tmp_path):
    env = env_of(migrated, ECHOES_OPS_ENV_FILE=str(tmp_path / "nope.env"))
    out = cli("flags", "set", "REDIS_ENABLED", "false", "--reason", "x", "--yes", env=env)
    assert out.code == ExitCode.CONFIG
    assert "does not exist" in out.one_error_line()
    assert rows(migrated, "SELECT * FROM echoes_ops.flags") == []
    (audit,) = rows(migrated, "SELECT action, result FROM echoes_ops.audit")
    assert tuple(audit) == ("flags.set", "failed")


def test_unmigrated_database_says_migrate(database_url):
    out = cli("flags", "get", "REDIS_ENABLED", env=env_of(database_url))
    assert out.code == ExitCode.POSTGRES
    assert "echoes-ops db migrate" in out.one_error_line()


def test_without_database_url_flags_are_a_config_error():
    out = cli("flags", "list")
    assert out.code == ExitCode.CONFIG
    assert "DATABASE_URL" in out.one_error_line()


async def test_env_file_rename_failure_after_postgres_is_reported(migrated, env_file, monkeypatch):
    def broken(tmp: Path, real: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(ops.envfile, "commit_replacement", broken)
    result = await ops.set_flag(
        migrated, "REDIS_ENABLED", "false", reason="x", operator="o", env_file=str(env_file)
    )
    assert [t.target for t in result.failed] == ["env_file"]
    assert result.outcome("postgresql").status == "ok"
    assert env_file.read_text() == ENV_TEXT
    assert sorted(p.name for p in env_file.parent.iterdir()) == ["api.env"]


def test_partial_failure_exits_1_and_is_audited_as_failed(migrated, env_file, monkeypatch):
    def broken(tmp: Path, real: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(ops.envfile, "commit_replacement", broken)
    env = env_of(migrated, ECHOES_OPS_ENV_FILE=str(env_file))
    out = cli("flags", "set", "REDIS_ENABLED", "false", "--reason", "x", "--yes", env=env)
    assert out.code == ExitCode.PROBLEMS_FOUND
    assert "is set in PostgreSQL, but env_file" in out.stderr
    (audit,) = rows(migrated, "SELECT result FROM echoes_ops.audit")
    assert audit["result"] == "failed"
