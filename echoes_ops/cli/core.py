"""The part of what every command shares that needs no Typer: the global options' state,
warnings, JSON output, where the gamedata and its cache are, and how a failure is told to
the operator. :mod:`echoes_ops.cli.common` builds the Typer-facing helpers on these, and
:mod:`echoes_ops.cli.plain` runs a plain ``validate`` with them without importing Typer.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from echoes_ops.errors import ExitCode, Interrupted, OpsError

if TYPE_CHECKING:
    from echoes_ops.config import Settings
    from echoes_ops.gamedata import WorldCache

INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug in echoes-ops, not in the operator's input


@dataclass
class CliState:
    """Global options, resolved into settings on first use."""

    flags: dict[str, Any] = field(default_factory=dict)
    debug: bool = False
    _settings: Settings | None = None
    announced: bool = False  # the target and topology line was printed (once per run)
    # a plain preload's child reading the world into the cache (cli/readahead.py): waited
    # for, once, before the world is read
    read_ahead: Callable[[], None] | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            from echoes_ops.config import Settings

            self._settings = Settings.load(self.flags)
            if self._settings.tls_unverified:
                warn(
                    "TLS certificate checks are OFF (--insecure / REDIS_TLS_INSECURE): the "
                    "server's identity is not verified"
                )
        return self._settings


def warn(message: str) -> None:
    sys.stderr.write(f"echoes-ops: warning: {message}\n")


def error_line(message: str) -> None:
    sys.stderr.write(f"echoes-ops: error: {message}\n")


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def failure_code(exc: BaseException, *, debug: bool) -> int:
    """Tell the operator about ``exc`` in one stderr line (a traceback too with ``--debug``)
    and return the exit code: an :class:`OpsError` its own, Ctrl-C 130, bytes that are not
    UTF-8 a usage error, anything unexpected an internal error (70)."""
    if debug and not isinstance(exc, KeyboardInterrupt):
        import traceback

        traceback.print_exception(exc)
    if isinstance(exc, Interrupted):
        sys.stderr.write(f"echoes-ops: interrupted: {exc}\n")
        return int(exc.exit_code)
    if isinstance(exc, OpsError):
        error_line(str(exc))
        return int(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        sys.stderr.write("echoes-ops: interrupted\n")
        return int(ExitCode.INTERRUPTED)
    if isinstance(exc, UnicodeEncodeError):
        # bytes that are not UTF-8 in an argument or setting reach us as lone surrogates
        shown = exc.object.encode("utf-8", "backslashreplace").decode("ascii", "replace")
        error_line(f"input is not valid UTF-8 text: {shown[:80]!r}")
        return int(ExitCode.USAGE)
    error_line(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for a traceback)")
    return INTERNAL_ERROR


def defer_package_metadata() -> None:
    """Make ``importlib.metadata`` load when it is first used, not when it is imported.

    redis-py 8.2 imports it as it is imported itself (``redis/utils.py``), for one lookup
    of its own version that :func:`echoes_ops.client.connect._driver_info` makes needless;
    loading it (with ``email``, ``zipfile``, ``csv`` ...) cost about 30 ms of every command
    that talks to Redis. A lazily loaded module stands in for it in ``sys.modules``: the
    first attribute anyone reads loads the real module in place, so a user of it sees no
    difference. Called once at the CLI's start; a process that already loaded it (pytest
    does) keeps it as it is."""
    if "importlib.metadata" in sys.modules:
        return
    import importlib
    import importlib.util

    spec = importlib.util.find_spec("importlib.metadata")
    if spec is None or spec.loader is None:
        return
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["importlib.metadata"] = module
    loader.exec_module(module)
    importlib.metadata = module


def gamedata_folder(cli_state: CliState, given: Path | None) -> Path:
    """--gamedata, else ECHOES_OPS_GAMEDATA / config, else ./gamedata, else the bundled set."""
    if given is not None:
        return given
    configured = cli_state.settings().gamedata_dir
    if configured:
        return Path(configured)
    local = Path("gamedata")
    if local.is_dir():
        return local
    return Path(__file__).resolve().parents[2] / "gamedata"


def cache_of(cli_state: CliState) -> WorldCache | None:
    """The parsed-gamedata cache: ECHOES_OPS_CACHE_DIR / config, else the XDG cache folder;
    None when set to ``off``."""
    from echoes_ops.gamedata.cache import OFF, WorldCache, default_dir

    configured = cli_state.settings().cache_dir
    if configured is not None and configured.strip().lower() == OFF:
        return None
    return WorldCache(Path(configured) if configured else default_dir())
