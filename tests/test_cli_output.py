"""Output that survives pipes and reads the same everywhere (#12 item 4): one row per line
when stdout is not a terminal, ids beside names, no Python reprs, JSON numbers as numbers,
documented exit codes, completion, help panels, metavars and usage errors in our words,
and the messages of tail and broadcast. Real redis-server (and PostgreSQL for flags)."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from echoes_ops.cli import reference
from echoes_ops.contract import keys
from echoes_ops.contract.session import Session
from echoes_ops.errors import ExitCode
from echoes_ops.operations.migrations import migrate
from echoes_ops.runtime.tier import Tier
from tests.cli_helpers import cli

BIN = Path(sys.executable).parent / "echoes-ops"
LONG = "Player With A Rather Long Display Name"


@pytest.fixture
def env(redis_url: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "ECHOES_OPS_OPERATOR": "dana"}


@pytest.fixture
def tier(redis_url: str, sync_r: redis.Redis) -> dict[str, object]:
    """Two named locations, 40 players with long names (25 in main_street, on worker w1
    with pid 4242 on host game-1; 15 in ruins on w2), connected as the game connects them."""
    sync_r.hset(
        keys.location_cache_key("main_street"), mapping={"id": "main_street", "name": "Main Street"}
    )
    sync_r.hset(keys.location_cache_key("ruins"), mapping={"id": "ruins", "name": "Old Ruins"})

    async def connect() -> None:
        r = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        try:
            for worker, location, ids in (
                ("w1", "main_street", range(1, 26)),
                ("w2", "ruins", range(26, 41)),
            ):
                tier = Tier(r, worker)
                for cid in ids:
                    fields = {
                        "username": f"{LONG} {cid}",
                        "location_id": location,
                        "hp": "80",
                        "max_hp": "100",
                    }
                    await tier.connect_player(Session.decode(cid, fields, now=0))
        finally:
            await r.aclose()

    asyncio.run(connect())
    sync_r.hset(
        keys.worker_meta_key("w1"),
        mapping={"pid": "4242", "host": "game-1", "heartbeat": f"{time.time():.3f}"},
    )
    sync_r.expire(keys.worker_meta_key("w1"), 60)
    return {"players": 40}


# -- pipes --------------------------------------------------------------------------------


def test_piped_sessions_list_prints_one_row_per_line(env, tier):
    """Piped, 996 sessions printed 1,993 lines (cells wrapped at 80 columns, truncated)."""
    out = cli("sessions", "list", env=env)
    assert out.code == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 40 + 2  # title, header, one line per session
    assert lines[0] == "40 of 40 session(s)"
    assert lines[1].split()[:3] == ["id", "username", "location"]
    assert not any(ch in out.stdout for ch in "┃│━─…")  # no borders, nothing truncated
    assert f"{LONG} 7" in lines[2 + 6]
    assert "main_street (Main Street)" in lines[2]  # ids beside names


def _on_a_terminal(*args: str, env: dict[str, str]) -> str:
    """Run the CLI with stdout on a pseudo-terminal; what it printed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [str(BIN), *args],
        stdout=follower,
        stderr=subprocess.PIPE,
        env={**os.environ, **env, "COLUMNS": "80", "TERM": "xterm"},
    )
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # the follower side closed
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=30)
    os.close(leader)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    return b"".join(chunks).decode("utf-8", "replace")


def test_plain_forces_one_row_per_line_on_a_terminal(env, tier):
    drawn = _on_a_terminal("sessions", "list", env=env)
    assert "┃" in drawn or "│" in drawn  # a terminal gets rich's table
    plain = _on_a_terminal("--plain", "sessions", "list", env=env)
    assert "┃" not in plain
    assert "│" not in plain
    assert len(plain.strip().splitlines()) == 40 + 2
    by_env = _on_a_terminal("sessions", "list", env={**env, "ECHOES_OPS_PLAIN": "1"})
    assert len(by_env.strip().splitlines()) == 40 + 2


def test_locations_name_ids_beside_names(env, tier):
    listed = cli("locations", "list", env=env)
    assert "main_street (Main Street)" in listed.stdout
    shown = cli("locations", "show", "ruins", env=env)
    assert shown.stdout.startswith("ruins (Old Ruins): 15 player(s)")
    detail = cli("sessions", "show", "3", env=env)
    assert "location   main_street (Main Street)" in detail.stdout


def test_workers_list_wide_adds_pid_and_host(env, tier):
    narrow = cli("workers", "list", env=env)
    assert narrow.stdout.splitlines()[1].split()[-1] == "version"
    wide = cli("workers", "list", "-o", "wide", env=env)
    assert wide.code == 0, wide.stderr
    header, w1 = wide.stdout.splitlines()[1:3]
    assert header.split()[-2:] == ["pid", "host"]
    assert w1.split()[0] == "w1"
    assert w1.split()[-2:] == ["4242", "game-1"]
    bad = cli("workers", "list", "-o", "tall", env=env)
    assert bad.code == ExitCode.USAGE
    assert "table or wide" in bad.one_error_line()


# -- no reprs, JSON numbers ------------------------------------------------------------------


def test_human_output_has_no_python_reprs(env, tier):
    kicked = cli("sessions", "kick", "5", "--reason", "stuck", "--yes", env=env)
    assert kicked.code == 0, kicked.stderr
    assert "session=" not in kicked.stdout
    assert "True" not in kicked.stdout
    assert kicked.stdout.startswith("player 5: removed the session, presence in main_street")
    cli("locks", "hold", "maint", "--ttl", "60", "--reason", "db work", env=env)
    cli("locks", "release", "maint", env=env)
    audit = cli("audit", env=env)
    assert audit.code == 0, audit.stderr
    assert not re.search(r"\bTrue\b|\bFalse\b|\{'|\['", audit.stdout), audit.stdout


def test_json_numbers_are_numbers(env, tier, sync_r):
    sync_r.hset(
        keys.GAMEDATA_VERSION_KEY,
        mapping={
            "content_hash": "ab" * 32,
            "loaded_at": "1796517984.970",
            "locations": "71",
            "items": "209",
            "npcs": "27",
        },
    )
    status = json.loads(cli("status", "--json", env=env).stdout)
    assert status["gamedata"]["locations"] == 71
    assert status["gamedata"]["loaded_at"] == pytest.approx(1796517984.97)
    assert status["gamedata"]["content_hash"] == "ab" * 32  # text stays text
    stats = json.loads(cli("stats", "--json", env=env).stdout)
    assert stats["gamedata"]["items"] == 209
    workers = json.loads(cli("workers", "list", "--json", env=env).stdout)["workers"]
    assert {w["id"]: w["pid"] for w in workers} == {"w1": 4242, "w2": None}
    session = json.loads(cli("sessions", "show", "3", "--json", env=env).stdout)
    assert session["fields"]["hp"] == 80
    assert session["fields"]["username"] == f"{LONG} 3"
    reading = json.loads(cli("dashboard", "--json", env=env).stdout)
    assert reading["snapshot"]["gamedata"]["npcs"] == 27
    metas = {w["id"]: w["meta"] for w in reading["snapshot"]["workers"]}
    assert metas["w1"]["pid"] == 4242


# -- exit codes ----------------------------------------------------------------------------


def test_not_found_exits_7(env, tier):
    out = cli("locations", "show", "nowhere", env=env)
    assert out.code == ExitCode.REFUSED  # 7: not found
    assert "no location 'nowhere'" in out.one_error_line()


def test_a_bad_flag_value_exits_2_before_anything_else(env, database_url):
    asyncio.run(migrate(database_url))
    for extra in ({"DATABASE_URL": database_url}, {}):  # with PostgreSQL, and without
        out = cli(
            "flags", "set", "REDIS_ENABLED", "maybe", "--reason", "x", "--yes", env={**env, **extra}
        )
        assert out.code == ExitCode.USAGE
        assert "use true or false, not 'maybe'" in out.one_error_line()


def test_usage_errors_are_one_line_in_our_words(env):
    cases = {
        ("sessions", "list", "--limit", "0"): "--limit: must be at least 1",
        ("sessions", "list", "--limit", "many"): "--limit: must be a whole number",
        ("sessions", "show"): "missing argument CHARACTER_ID",
        ("sessions", "list", "--bogus"): "unknown option --bogus",
        ("stats", "--watch", "soon"): "--watch: must be a number",
    }
    for args, words in cases.items():
        out = cli(*args, env=env)
        assert out.code == ExitCode.USAGE, args
        line = out.one_error_line()
        assert words in line, line
        assert "Input should" not in line
        assert "Usage:" not in out.stderr


# -- help, metavars, completion ---------------------------------------------------------------


def test_help_groups_commands_into_panels():
    text = cli("--help").stdout
    panels = re.findall(r"^(\w[^\n:]*):$", text, re.M)
    assert panels[-4:] == ["Inspect", "Act (audited)", "Admin", "Local"], panels
    inspect = text.split("Inspect:")[1].split("Act (audited):")[0]
    act = text.split("Act (audited):")[1].split("Admin:")[0]
    assert {"status", "sessions", "tail"} <= set(re.findall(r"^  (\w+)", inspect, re.M))
    assert {"broadcast", "locks", "flags", "reconcile"} <= set(re.findall(r"^  (\w+)", act, re.M))


def test_metavars_are_uppercase_words():
    for path, command, ctx in reference.commands():
        text = command.get_help(ctx)
        assert not re.search(r"<(str|int|float|path|int range|float range)>", text), path


def test_shell_completion_is_installable():
    assert "--install-completion" in cli("--help").stdout
    out = subprocess.run(
        [str(BIN)],
        env={
            **os.environ,
            "_ECHOES_OPS_COMPLETE": "complete_bash",
            "COMP_WORDS": "echoes-ops sess",
            "COMP_CWORD": "1",
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.stdout.split() == ["sessions"]


# -- tail, broadcast -------------------------------------------------------------------------


def test_tail_prints_its_filters_and_warns_on_an_unknown_type(env):
    out = cli("tail", "--type", "combat_updat", "--player", "5", "--timeout", "0.3", env=env)
    assert out.code == 0, out.stderr
    assert "echoes-ops: warning: --type combat_updat is not a known message type" in out.stderr
    assert "combat_update" in out.stderr  # the known ones are listed
    assert "echoes-ops: filters: type combat_updat; player 5" in out.stderr
    plain = cli("tail", "--timeout", "0.3", env=env)
    assert "filters: none: every message is shown" in plain.stderr
    assert "warning" not in plain.stderr


def test_broadcast_reach_counts_players_and_connections(env, tier):
    glob = json.loads(cli("broadcast", "global", "hi", "--dry-run", "--json", env=env).stdout)
    assert glob["reach"] == {"players": 40, "connections": 40}
    loc = json.loads(
        cli("broadcast", "location", "ruins", "hi", "--dry-run", "--json", env=env).stdout
    )
    assert loc["reach"] == {"players": 15, "connections": 15}
    one = json.loads(cli("broadcast", "player", "3", "hi", "--dry-run", "--json", env=env).stdout)
    assert one["reach"] == {"players": 1, "connections": 1}
    nobody = json.loads(
        cli("broadcast", "player", "999", "hi", "--dry-run", "--json", env=env).stdout
    )
    assert nobody["reach"] == {"players": 0, "connections": 0}
    human = cli("broadcast", "location", "ruins", "hi", "--dry-run", env=env)
    assert "would reach 15 players (15 connections)" in human.stdout
    sent = cli("broadcast", "player", "3", "hi", env=env)
    assert "for 1 player (1 connection)" in sent.stdout


def test_an_interrupted_countdown_says_what_was_and_was_not_sent(redis_url, sync_r):
    proc = subprocess.Popen(
        [str(BIN), "broadcast", "global", "Restart", "--in", "20s", "--every", "10s", "--yes"],
        env={**os.environ, "REDIS_URL": redis_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the first announcement went out
    assert first.startswith("[1/3] sent 'Restart in 20 seconds'"), first
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.INTERRUPTED
    assert "echoes-ops: countdown stopped: 1 of 3 announcement(s) sent" in stderr
    assert "  sent      'Restart in 20 seconds'" in stderr
    assert "  not sent  'Restart in 10 seconds' (due at +10s)" in stderr
    assert "  not sent  'Restart' (due at +20s)" in stderr
    assert "Traceback" not in stderr
