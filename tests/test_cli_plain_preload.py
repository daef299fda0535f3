"""A plain ``preload`` command line runs without Typer (cli/plain.py, cli/preloading.py): it
must say and exit exactly as the Typer command does, and an unchanged world's preload must
not import what it does not use (#17: its whole time is start-up)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from echoes_ops.cli.plain import plain_preload
from tests.gamedata_world import _write_world
from tests.test_cli_plain import imported_by

REPO = Path(__file__).resolve().parent.parent
BUNDLED = REPO / "gamedata"
BIN = str(Path(sys.executable).parent / "echoes-ops")
NUMBER = re.compile(r"\d+\.\d+")  # times, sizes in kB: they differ from run to run


def _env(tmp_path: Path, redis_url: str, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ECHOES_OPS_", "REDIS_")) and k != "DATABASE_URL"
    }
    return {
        **env,
        "REDIS_URL": redis_url,
        "ECHOES_OPS_CACHE_DIR": str(tmp_path / "cache"),
        "ECHOES_OPS_OPERATOR": "alice",
        **extra,
    }


def _run(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    out = subprocess.run([BIN, *args], env=env, capture_output=True, text=True, stdin=None)
    return out.returncode, NUMBER.sub("N", out.stdout), NUMBER.sub("N", out.stderr)


def _preloaded(world: Path) -> Callable[[dict[str, str]], None]:
    def setup(env: dict[str, str]) -> None:
        code, _, err = _run(["--plain", "preload", "--gamedata", str(world), "--yes"], env)
        assert code == 0, err

    return setup


def _nothing(env: dict[str, str]) -> None:
    return None


CASES = [
    "first load",
    "first load, json",
    "unchanged",
    "unchanged, json",
    "unchanged, online",
    "dry run",
    "changed, online, no verify",
    "removals refused without --yes",
    "removals with -y",
    "force",
    "invalid gamedata",
    "no such folder",
    "redis unreachable",
    "bad nice setting",
]


def _case(
    tmp_path: Path, redis_url: str, case: str
) -> tuple[list[str], dict[str, str], Callable[[dict[str, str]], None]]:
    good = _write_world(tmp_path / "good")
    changed = _write_world(tmp_path / "changed", items=("tier: 1", "tier: 2"))
    bad = _write_world(tmp_path / "bad", items=("tier: 1", "tier: 9"))
    env = _env(tmp_path, redis_url)
    table: dict[str, tuple[list[str], dict[str, str], Callable[[dict[str, str]], None]]] = {
        "first load": (["--gamedata", str(good)], env, _nothing),
        "first load, json": (["--json", f"--gamedata={good}"], env, _nothing),
        "unchanged": (["--gamedata", str(BUNDLED)], env, _preloaded(BUNDLED)),
        "unchanged, json": (["--gamedata", str(BUNDLED), "--json"], env, _preloaded(BUNDLED)),
        "unchanged, online": (["--online", "--gamedata", str(good)], env, _preloaded(good)),
        "dry run": (["--dry-run", "--gamedata", str(changed)], env, _preloaded(good)),
        "changed, online, no verify": (
            ["--gamedata", str(changed), "--online", "--no-verify"],
            env,
            _preloaded(good),
        ),
        "removals refused without --yes": (["--gamedata", str(good)], env, _preloaded(BUNDLED)),
        "removals with -y": (["-y", "--gamedata", str(good)], env, _preloaded(BUNDLED)),
        "force": (["--gamedata", str(good), "--force"], env, _preloaded(good)),
        "invalid gamedata": (["--gamedata", str(bad)], env, _nothing),
        "no such folder": (["--gamedata", str(tmp_path / "nowhere")], env, _nothing),
        "redis unreachable": (
            ["--gamedata", str(good)],
            {**env, "REDIS_URL": "redis://127.0.0.1:1/0"},
            _nothing,
        ),
        "bad nice setting": (["--gamedata", str(good)], {**env, "ECHOES_OPS_NICE": "99"}, _nothing),
    }
    return table[case]


@pytest.mark.parametrize("case", CASES)
def test_plain_preload_says_what_typer_says(tmp_path: Path, redis_url: str, case: str) -> None:
    args, env, setup = _case(tmp_path, redis_url, case)
    runs = []
    for plain in (False, True):  # --plain (a global option) is Typer's path
        sync = redis.Redis.from_url(redis_url)
        sync.flushall()
        sync.close()
        setup(env)
        runs.append(_run(["preload", *args] if plain else ["--plain", "preload", *args], env))
    typer_run, plain_run = runs
    assert plain_run == typer_run
    code, out, err = plain_run
    expected = {
        "removals refused without --yes": 2,
        "invalid gamedata": 3,
        "no such folder": 3,
        "redis unreachable": 4,
        "bad nice setting": 3,
    }.get(case, 0)
    assert code == expected, (out, err)
    if case.startswith("unchanged") and "json" not in case:
        assert out.startswith("gamedata unchanged (version ")
    if case == "invalid gamedata":
        assert "items.yaml:12: item 'scrap_metal': 'tier' must be between 1 and 5" in err
    if expected:
        assert err.startswith("echoes-ops: error: "), err
        assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["preload"], (None, {})),
        (["preload", "--gamedata", "g", "--json"], (Path("g"), {"json": True})),
        (["preload", "--gamedata=g", "-y", "--online"], (Path("g"), {"yes": True, "online": True})),
        (["preload", "--no-verify", "--dry-run"], (None, {"verify": False, "dry_run": True})),
        (["preload", "--force"], (None, {"force": True})),
        (["preload", "--yes", "-y"], None),
        (["preload", "--verify", "--no-verify"], None),
        (["preload", "--json", "--json"], None),
        (["preload", "--gamedata", "a", "--gamedata", "b"], None),
        (["preload", "--gamedata"], None),
        (["preload", "--gamedata", "--json"], None),
        (["preload", "--help"], None),
        (["preload", "-h"], None),
        (["preload", "extra"], None),
        (["preload", "--", "--json"], None),
        (["preload", "--yes=true"], None),
        (["--debug", "preload"], None),
        (["validate", "--yes"], None),
    ],
)
def test_only_plain_preload_command_lines_skip_typer(
    argv: list[str], expected: tuple[Path | None, dict[str, bool]] | None
) -> None:
    defaults = {
        "dry_run": False,
        "force": False,
        "yes": False,
        "online": False,
        "verify": True,
        "json": False,
    }
    parsed = plain_preload(argv)
    if expected is None:
        assert parsed is None
    else:
        assert parsed == (expected[0], {**defaults, **expected[1]})


# What a preload of an unchanged world has no use for: the CLI framework and the terminal
# UI, PyYAML (yaml-rs reads the bundled world), PostgreSQL's driver (no DATABASE_URL), the
# writers and the lock. Each costs start-up time (#17).
NOT_FOR_AN_UNCHANGED_WORLD = (
    "typer",
    "click",
    "rich",
    "textual",
    "yaml",
    "asyncpg",
    "echoes_ops.cli.common",
    "echoes_ops.operations.preload_write",
    "echoes_ops.operations.preload_online",
    "echoes_ops.operations.preload_atomic",
    "echoes_ops.operations.lockowner",
    "echoes_ops.client.scan",
)


def _unwanted(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(f"{n}.") for n in names))


@pytest.mark.parametrize("cached", [False, True])
def test_an_unchanged_preload_imports_only_what_it_uses(
    tmp_path: Path, redis_url: str, cached: bool
) -> None:
    env = _env(tmp_path, redis_url)
    args = ["preload", "--gamedata", str(BUNDLED)]
    first = imported_by([*args, "--yes"], env)  # the first load does use the writer
    assert "echoes_ops.operations.preload_write" in first
    if not cached:
        env["ECHOES_OPS_CACHE_DIR"] = str(tmp_path / "empty")
    modules = imported_by(args, env)
    assert _unwanted(modules, NOT_FOR_AN_UNCHANGED_WORLD) == []
    # the files were read, and the world noted (hash and keys), by the child
    # (cli/readahead.py) while the command loaded its Redis client: the command itself found
    # the world and preload's note in the cache, and built no model
    assert "echoes_ops.gamedata.reading" not in modules
    assert "echoes_ops.gamedata.models" not in modules
    # it did check Redis (the probe would fail otherwise), on the path it says it takes
    assert "echoes_ops.operations.preload_memo" in modules


def test_without_a_gamedata_cache_the_command_reads_the_world_itself(
    tmp_path: Path, redis_url: str
) -> None:
    """No cache, nothing to read ahead into: no child, the command reads the files (and
    says what it always says)."""
    env = _env(tmp_path, redis_url, ECHOES_OPS_CACHE_DIR="off")
    args = ["preload", "--gamedata", str(BUNDLED), "--yes"]
    assert "echoes_ops.gamedata.reading" in imported_by(args, env)
    code, out, _ = _run(args, env)
    assert code == 0
    assert out.startswith("gamedata unchanged (version ")


def test_a_large_world_is_read_by_the_command_itself(tmp_path: Path) -> None:
    """Past READ_AHEAD_MAX_BYTES no child is started: a world that must be written would be
    read back from the cache and encoded again, costing more than the overlap saves."""
    world = _write_world(tmp_path / "world")
    probe = f"""
from pathlib import Path
from echoes_ops.cli import readahead
from echoes_ops.cli.core import CliState

world = Path({str(world)!r})
size = sum(p.stat().st_size for p in world.iterdir())
for limit, started in ((size, True), (size - 1, False)):
    readahead.READ_AHEAD_MAX_BYTES = limit
    state = CliState()
    readahead.read_ahead(state, world)
    assert (state.read_ahead is not None) is started, (limit, size)
    if state.read_ahead is not None:
        state.read_ahead()
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECHOES_OPS_", "REDIS_"))}
    env.update(ECHOES_OPS_CACHE_DIR=str(tmp_path / "cache"), ECHOES_OPS_NICE="0")
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok"]


def test_a_world_changed_after_the_child_read_it_is_read_again(tmp_path: Path) -> None:
    """The cache the child fills is keyed by the files' content: the command takes the
    world from it only if the files are still what the child read. (In a process of its
    own: the child is forked.)"""
    world = _write_world(tmp_path / "world")
    cache = tmp_path / "cache"
    probe = f"""
from pathlib import Path
from echoes_ops.cli.core import CliState
from echoes_ops.cli.readahead import read_ahead
from echoes_ops.cli.running import load_world
from tests.waiting import wait_until

world, cache = Path({str(world)!r}), Path({str(cache)!r})
state = CliState()
read_ahead(state, world)
assert state.read_ahead is not None, "no child started"
wait_until(lambda: list(cache.glob("*.world")), 30, "the child storing what it read")
items = world / "items.yaml"
items.write_text(items.read_text().replace("tier: 1", "tier: 2"))
loaded = load_world(state, world)
assert state.read_ahead is None, "not waited for"
print(loaded.data().items["scrap_metal"].tier)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECHOES_OPS_", "REDIS_"))}
    env.update(ECHOES_OPS_CACHE_DIR=str(cache), ECHOES_OPS_NICE="0")
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2"]
