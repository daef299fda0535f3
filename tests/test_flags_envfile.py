"""One env-file reader for every face: ``flags status``, the dashboard's Flags tab and
``doctor`` read the same tricky env files (tabs, comments, ``export``, quotes, CRLF,
duplicates) and give one answer, against a real PostgreSQL and redis-server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from echoes_ops.config import Settings, parse_bool
from echoes_ops.contract import flags as contract
from echoes_ops.operations.flags import env_value
from echoes_ops.operations.migrations import migrate
from echoes_ops.tui.panels.flags import render_flag
from echoes_ops.tui.source import RedisSource
from tests.cli_helpers import cli
from tests.conftest import BUNDLED_GAMEDATA

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

# (name, the file's bytes, what REDIS_ENABLED means in it: "true", "false" or the raw value
# when it is not a boolean)
TRICKY: list[tuple[str, bytes, str]] = [
    ("tab before a comment", b"REDIS_ENABLED=false\t# rollback, see runbook\n", "false"),
    ("tabs around", b"\tREDIS_ENABLED\t=\tfalse\t\n", "false"),
    ("commented out", b"# REDIS_ENABLED=false\nREDIS_ENABLED=true\n", "true"),
    ("export", b"export REDIS_ENABLED=false\n", "false"),
    ("double quotes and comment", b'REDIS_ENABLED="false"  # why\n', "false"),
    ("single quotes", b"export REDIS_ENABLED='off'\n", "false"),
    ("CRLF", b"A=1\r\nREDIS_ENABLED=false\r\nB=2\r\n", "false"),
    (
        "duplicates: the last wins",
        b"REDIS_ENABLED=false\nX=1\nREDIS_ENABLED=TRUE # later\n",
        "true",
    ),
    ("no newline at the end", b"REDIS_ENABLED=no", "false"),
    ("not a boolean", b"REDIS_ENABLED=maybe\n", "maybe"),
    ("hash inside quotes", b'REDIS_ENABLED="false#1"\n', "false#1"),
]


def _env_file_source(sources: list[dict[str, Any]]) -> dict[str, Any]:
    return next(s for s in sources if s["source"] == "env_file")


def _plain(renderable: Any) -> str:
    console = Console(width=200, record=True)
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize(
    ("text", "expected"), [(t, e) for _, t, e in TRICKY], ids=[n for n, _, _ in TRICKY]
)
def test_every_face_reads_the_env_file_the_same(text, expected, database_url, redis_url, tmp_path):
    asyncio.run(migrate(database_url))
    path: Path = tmp_path / "api.env"
    path.write_bytes(text)
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}

    # the parser itself
    raw = env_value(text.decode(), contract.REDIS_ENABLED)
    parsed = parse_bool(raw)
    assert (raw if parsed is None else str(parsed).lower()) == expected

    # flags status
    out = cli("flags", "status", "--json", "--env-file", str(path), env=env)
    status = json.loads(out.stdout)
    from_status = _env_file_source(status["sources"])
    assert from_status["effective"] == expected, from_status

    # doctor
    out = cli(
        "doctor", "--json", "--gamedata", str(BUNDLED_GAMEDATA),
        env={**env, "ECHOES_OPS_ENV_FILE": str(path)},
    )  # fmt: skip
    check = next(c for c in json.loads(out.stdout)["checks"] if c["id"] == "redis_enabled")
    from_doctor = _env_file_source(check["details"]["sources"])
    assert from_doctor == from_status
    not_boolean = "not a boolean" in check["summary"]
    assert not_boolean == (expected not in ("true", "false")), check["summary"]
    # PostgreSQL is never set here: its default (true) against the file's value
    if expected == "true":
        assert check["verdict"] == "ok", check["summary"]
    else:
        assert check["verdict"] == "warn", check["summary"]
        assert ("sources disagree" in check["summary"]) or not_boolean

    # the dashboard's Flags tab (the source the poller runs, and the panel's render)
    settings = Settings.load(env={**env, "ECHOES_OPS_ENV_FILE": str(path)})
    source = RedisSource(settings)

    async def read() -> Any:
        try:
            return await source.flag_status()
        finally:
            await source.close()

    dashboard = asyncio.run(read())
    assert dashboard.source("env_file").as_dict() == from_status
    shown = _plain(render_flag(dashboard, postgres=True))
    row = next(line for line in shown.splitlines() if line.startswith("env_file"))
    assert row.split()[:3] == ["env_file", "set", expected], row
    assert dashboard.problems == status["problems"]
