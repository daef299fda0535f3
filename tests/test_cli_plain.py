"""A plain ``validate`` command line runs without Typer (cli/plain.py): it must say exactly
what the Typer command says, and import none of the modules it does not use."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from echoes_ops.cli.plain import plain_validate
from tests.gamedata_world import _write_world

REPO = Path(__file__).resolve().parent.parent
BIN = str(Path(sys.executable).parent / "echoes-ops")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECHOES_OPS_", "REDIS_"))}
    return {**env, "ECHOES_OPS_CACHE_DIR": str(tmp_path / "cache"), **extra}


def _run(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    out = subprocess.run([BIN, *args], env=env, cwd=cwd, capture_output=True, text=True)
    return out.returncode, out.stdout, out.stderr


def _cases(tmp_path: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    good = _write_world(tmp_path / "good")
    bad = _write_world(tmp_path / "bad", items=("tier: 1", "tier: 9"))
    broken = _write_world(tmp_path / "broken", world=("  - id: overpass\n", "  - id: [overpass\n"))
    return {
        "bundled": (["--gamedata", str(REPO / "gamedata")], {}),
        "bundled, json": (["--json", f"--gamedata={REPO / 'gamedata'}"], {}),
        "good": (["--gamedata", str(good)], {}),
        "problems": (["--gamedata", str(bad)], {}),
        "problems, json": (["--gamedata", str(bad), "--json"], {}),
        "yaml error": (["--gamedata", str(broken)], {}),
        "no such folder": (["--gamedata", str(tmp_path / "nowhere")], {}),
        "folder from the environment": ([], {"ECHOES_OPS_GAMEDATA": str(bad)}),
        "folder from the working directory": ([], {}),
        "cache off": (["--gamedata", str(good)], {"ECHOES_OPS_CACHE_DIR": "off"}),
        "bad config file": (["--gamedata", str(good)], {"ECHOES_OPS_CONFIG": str(tmp_path / "x")}),
        "tls warning": (["--gamedata", str(good)], {"REDIS_TLS_INSECURE": "1"}),
    }


CASES = [
    "bundled",
    "bundled, json",
    "good",
    "problems",
    "problems, json",
    "yaml error",
    "no such folder",
    "folder from the environment",
    "folder from the working directory",
    "cache off",
    "bad config file",
    "tls warning",
]


@pytest.mark.parametrize("case", CASES)
def test_plain_validate_says_what_typer_says(tmp_path: Path, case: str) -> None:
    args, extra = _cases(tmp_path)[case]
    env = _env(tmp_path, **extra)
    cwd = tmp_path / "good" if case == "folder from the working directory" else tmp_path
    if case == "folder from the working directory":
        (cwd / "gamedata").mkdir()
        (cwd / "gamedata" / "npcs.yaml").write_text((cwd / "npcs.yaml").read_text())
    # --plain (a global option: Typer's path) changes nothing validate prints
    typer_run = _run(["--plain", "validate", *args], env, cwd)
    plain_run = _run(["validate", *args], env, cwd)
    assert plain_run == typer_run
    again = _run(["validate", *args], env, cwd)  # from the cache where there is one
    assert again == typer_run
    if case.startswith("problems"):
        assert plain_run[0] == 1
        assert "items.yaml:12: item 'scrap_metal': 'tier' must be between 1 and 5" in plain_run[1]
    if case == "no such folder":
        assert plain_run[0] == 3
        assert plain_run[2].startswith("echoes-ops: error: gamedata folder ")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["validate"], (None, False)),
        (["validate", "--json"], (None, True)),
        (["validate", "--gamedata", "g"], (Path("g"), False)),
        (["validate", "--gamedata=g", "--json"], (Path("g"), True)),
        (["validate", "--json", "--json"], None),
        (["validate", "--gamedata", "a", "--gamedata", "b"], None),
        (["validate", "--gamedata"], None),
        (["validate", "--gamedata", "--json"], None),
        (["validate", "--gamedata="], None),
        (["validate", "--help"], None),
        (["validate", "-h"], None),
        (["validate", "extra"], None),
        (["validate", "--", "--json"], None),
        (["--debug", "validate"], None),
        (["preload"], None),
        ([], None),
    ],
)
def test_only_plain_command_lines_skip_typer(
    argv: list[str], expected: tuple[Path | None, bool] | None
) -> None:
    assert plain_validate(argv) == expected


HEAVY = ("typer", "click", "pydantic", "rich", "redis", "asyncio", "asyncpg", "textual", "yaml")


def imported_by(args: list[str], env: dict[str, str]) -> set[str]:
    """Every module an ``echoes-ops ARGS`` process (that succeeds) has imported at its end."""
    probe = (
        "import sys\n"
        "from echoes_ops.cli.main import main\n"
        f"sys.argv = ['echoes-ops', *{args!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(sorted(sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    return set(ast.literal_eval(out.stdout.strip().splitlines()[-1]))


def heavy_imports(args: list[str], env: dict[str, str]) -> list[str]:
    """Which of :data:`HEAVY` an ``echoes-ops ARGS`` process (that succeeds) imports."""
    return sorted({m.split(".")[0] for m in imported_by(args, env)} & set(HEAVY))


@pytest.mark.parametrize("cached", [False, True])
def test_validate_imports_only_what_it_uses(tmp_path: Path, cached: bool) -> None:
    """A validate process imports no CLI framework, Redis, asyncio, terminal UI or PyYAML
    (yaml-rs reads the bundled world; a cached world needs no parser at all): each of them
    costs start-up time the command does not need (#17)."""
    args, env = ["validate", "--gamedata", str(REPO / "gamedata")], _env(tmp_path)
    if cached:
        heavy_imports(args, env)
    assert heavy_imports(args, env) == []


def test_package_metadata_loads_when_first_used() -> None:
    """redis-py imports importlib.metadata as it is imported (~30 ms with what that pulls
    in) and the CLI never needs it: deferred, it is not loaded by importing redis, and
    still answers whoever uses it."""
    probe = (
        "import sys\n"
        "from echoes_ops.cli.core import defer_package_metadata\n"
        "defer_package_metadata()\n"
        "import redis.asyncio\n"
        "print('email' in sys.modules, 'zipfile' in sys.modules)\n"
        "from importlib import metadata\n"
        "print(metadata.version('redis') == redis.__version__, 'email' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[:2] == ["False False", "True True"]
