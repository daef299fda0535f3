"""What warmup reports (`operations/warmup/report.py`): a cron-style run's report file, its
one summary line and audit records, and `--what`'s parsing; against a real PostgreSQL
(reference schema) and a real redis-server."""

from __future__ import annotations

import json

from echoes_ops.contract import keys
from echoes_ops.errors import ExitCode
from tests.cli_helpers import cli
from tests.conftest import BUNDLED_GAMEDATA
from tests.warmup_helpers import WINDOW, env_for, migrated, seed, sql

__all__ = ["migrated"]  # the fixture, used by name


def test_cron_style_run_prints_nothing_on_success(migrated, redis_url, sync_r, tmp_path):
    seed(migrated, 200)
    report = tmp_path / "reports" / "warmup.json"
    report.parent.mkdir()
    env = env_for(migrated, redis_url)
    args = ("warmup", "--active-within", WINDOW, "--gamedata", str(BUNDLED_GAMEDATA))
    out = cli(*args, "--report", str(report), env=env)  # no terminal, no --json/--verbose
    assert (out.code, out.stdout, out.stderr) == (0, "", "")
    written = json.loads(report.read_text())
    assert written["ok"] is True
    assert written["sessions"]["written"] == 200
    assert written["static"]["result"] == "loaded"
    assert sync_r.exists(keys.location_cache_key("overpass"))
    assert [p.name for p in report.parent.iterdir()] == ["warmup.json"]  # no temp files left

    again = cli(*args, "--verbose", env=env)
    assert again.code == 0
    assert again.stdout == ""
    summary = again.stderr.strip().splitlines()
    assert len(summary) == 1
    assert "200 unchanged" in summary[0]
    assert "static unchanged" in summary[0]
    audit = sql(migrated, "SELECT action, result, detail FROM echoes_ops.audit ORDER BY id")
    runs = [row for row in audit if row["action"] == "warmup"]
    assert len(runs) == 2
    assert all(row["result"] == "ok" for row in runs)
    assert json.loads(runs[0]["detail"])["sessions"]["written"] == 200


def test_bad_what_is_a_usage_error(redis_url):
    out = cli("warmup", "--what", "sessions,npcs", env={"REDIS_URL": redis_url})
    assert out.code == ExitCode.USAGE
    assert "npcs" in out.stderr
