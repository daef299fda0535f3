"""Plain parameter values without the validation library (cli/coerce.py): the same values
and the same errors as Typer's own coercion, and a plain command never imports pydantic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import typer
from typer import _click
from typer._coercion import build_runtime_param

from echoes_ops.cli import coerce
from echoes_ops.cli.main import build_app

REPO = Path(__file__).resolve().parent.parent


def _params() -> list[Any]:
    command = typer.main.get_command(build_app())
    found: list[Any] = []

    def walk(cmd: Any) -> None:
        found.extend(cmd.params)
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(command)
    return found


def _outcome(runtime: Any, value: Any, param: Any, ctx: _click.Context) -> tuple[str, Any]:
    try:
        return "ok", runtime._coerce_value(value, param=param, ctx=ctx)
    except _click.exceptions.BadParameter as exc:
        return "error", exc.message


SAMPLES = [
    "",
    "x",
    "0",
    "7",
    "-3",
    "007",
    " 5",
    "1e3",
    "2.5",
    "-0.25",
    "nan",
    "1_000",
    "99999999999999999999",
    "/tmp",
    True,
    False,
    3,
    0.5,
    ("a", "b"),
    ("1", "2"),
]


def test_light_coercion_matches_typer_on_every_plain_parameter() -> None:
    checked = 0
    ctx = _click.Context(typer.main.get_command(build_app("validate")))
    for param in _params():
        light = coerce._light(param.type_descriptor)
        if light is None:
            continue
        slow = build_runtime_param(param.type_descriptor)
        for value in SAMPLES:
            expected = _outcome(slow, value, param, ctx)
            got = _outcome(light, value, param, ctx)
            assert repr(got) == repr(expected), (
                param.name,
                param.type_descriptor.annotation,
                value,
            )
            assert type(got[1]) is type(expected[1]), (param.name, value)
            checked += 1
    assert checked > 1000


def test_bad_values_still_read_as_before(tmp_path: Path) -> None:
    run = [str(Path(sys.executable).parent / "echoes-ops")]
    out = subprocess.run(
        [*run, "sessions", "list", "--limit", "0"], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 2
    assert out.stderr == (
        "echoes-ops: error: --limit: must be at least 1 (see: echoes-ops sessions list --help)\n"
    )
    out = subprocess.run(
        [*run, "--timeout", "soon", "status"], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 2
    assert out.stderr == "echoes-ops: error: --timeout: must be a number (see: echoes-ops --help)\n"


def test_a_typer_command_imports_neither_pydantic_nor_redis(tmp_path: Path) -> None:
    """The Typer path (validate after a global option) coerces its plain options without
    the validation library; redis and rich are none of its business either."""
    from tests.test_cli_plain import heavy_imports

    env = {"ECHOES_OPS_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    args = ["--plain", "validate", "--gamedata", str(REPO / "gamedata")]
    imported = heavy_imports(args, env)
    assert "typer" in imported  # the Typer path indeed
    assert not {"pydantic", "redis", "rich"} & set(imported)
