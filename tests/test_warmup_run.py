"""The warmup run (`operations/warmup/run.py`): its lock, its limits (`--max-seconds`,
`--dry-run`, the static gamedata it needs) and the failures it reports in one line, against a
real PostgreSQL (reference schema) and a real redis-server."""

from __future__ import annotations

import json

from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode
from echoes_ops.local.redis_server import free_port
from echoes_ops.operations.warmup import WARMUP_LOCK
from tests.cli_helpers import cli
from tests.conftest import BUNDLED_GAMEDATA
from tests.warmup_helpers import PLAYERS, env_for, migrated, player_keys, seed, warm

__all__ = ["migrated"]  # the fixture, used by name


def test_overlapping_run_skips_with_exit_8(database_url, redis_url, sync_r):
    seed(database_url, 20)
    sync_r.set(keys.lock_key(WARMUP_LOCK), "operator.cron#0123abcd", px=60_000)
    out = cli("warmup", "--what", PLAYERS, env=env_for(database_url, redis_url))
    assert out.code == ExitCode.BUSY
    line = out.one_error_line()
    assert "another warmup is running" in line
    assert "operator.cron" in line
    assert out.stdout == ""
    assert player_keys(sync_r) == []
    assert sync_r.get(keys.lock_key(WARMUP_LOCK)) == "operator.cron#0123abcd"


def test_postgres_unreachable_is_one_line_and_writes_nothing(redis_url, sync_r, tmp_path):
    report = tmp_path / "warmup.json"
    bogus = f"postgresql://echoes@127.0.0.1:{free_port()}/echoes"
    out = cli("warmup", "--report", str(report), "--gamedata", str(BUNDLED_GAMEDATA),
              env=env_for(bogus, redis_url))  # fmt: skip
    assert out.code == ExitCode.POSTGRES
    assert "cannot connect to PostgreSQL" in out.one_error_line()
    assert out.stdout == ""
    assert player_keys(sync_r) == []
    assert not list(sync_r.scan_iter(match="lock:*"))
    assert not list(sync_r.scan_iter(match="location:*"))  # static not loaded either
    failed = json.loads(report.read_text())
    assert failed["ok"] is False
    assert failed["exit_code"] == ExitCode.POSTGRES


def test_stopped_postgres_is_one_line_and_writes_nothing(
    database_url, pg_server, redis_url, sync_r
):
    seed(database_url, 20)
    pg_server.stop()
    try:
        out = cli("warmup", "--what", PLAYERS, env=env_for(database_url, redis_url))
    finally:
        pg_server.start()
    assert out.code == ExitCode.POSTGRES
    out.one_error_line()
    assert player_keys(sync_r) == []


def test_redis_unreachable_is_one_line(database_url):
    seed(database_url, 20)
    out = cli("warmup", env=env_for(database_url, f"redis://127.0.0.1:{free_port()}/0"))
    assert out.code == ExitCode.UNREACHABLE
    assert "Redis" in out.one_error_line()


def test_max_seconds_stops_after_a_batch_and_reports_partial(migrated, redis_url, sync_r):
    seed(migrated, 5000)  # three batches of 2000
    code, report, stderr = warm(env_for(migrated, redis_url), "--max-seconds", "0")
    assert code == ExitCode.PROBLEMS_FOUND
    assert report["partial"] is True
    assert report["ok"] is False
    assert report["stopped_because"] == "max_seconds"
    assert report["characters"] == report["sessions"]["written"] == 2000
    assert len([k for k in player_keys(sync_r) if k.endswith(":session")]) == 2000
    lines = stderr.strip().splitlines()
    assert len(lines) == 1
    assert "partial" in lines[0]
    assert "--max-seconds 0" in lines[0]
    assert not sync_r.exists(keys.lock_key(WARMUP_LOCK))  # released


def test_dry_run_reads_and_writes_nothing(database_url, redis_url, sync_r):
    seed(database_url, 300)
    code, report, _ = warm(env_for(database_url, redis_url), "--dry-run")
    assert code == 0
    assert report["dry_run"] is True
    assert report["sessions"]["written"] == 300  # would write
    assert player_keys(sync_r) == []
    assert not list(sync_r.scan_iter(match="lock:*"))


def test_static_needs_configured_gamedata(database_url, redis_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./gamedata here
    out = cli("warmup", env=env_for(database_url, redis_url))
    assert out.code == ExitCode.CONFIG
    assert "gamedata" in out.one_error_line()
