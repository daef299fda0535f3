"""The ``echoes-ops`` command: global options and the command groups.

The command tree is built on demand by :func:`build_app` (:mod:`echoes_ops.cli.tree`). A
run names one command, so :func:`main` imports and builds only that command's module (Typer
reads every parameter's annotations when it builds a command; building all 40-odd costs more
than most commands' own work). ``--help``, completion, an unknown name or no command at all
build the whole tree, as does ``from echoes_ops.cli.main import app`` (the tests and the
reference). A plain ``validate`` command line runs without Typer at all
(:mod:`echoes_ops.cli.plain`): importing it costs more than validating the bundled world.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from echoes_ops.cli.tree import build_app, main_options

__all__ = ["COMMANDS", "Entry", "build_app", "command_named", "main", "main_options"]

_HELP_OPTIONS = ["-h", "--help"]

INSPECT, ACT, ADMIN, LOCAL = "inspect", "act", "admin", "local"  # help panels (cli/group.py)


class Entry(NamedTuple):
    """One top-level command: where its function (or sub-app, for a group) lives."""

    module: str  # under echoes_ops.cli
    attr: str
    panel: str
    group: bool = False


# In the order --help lists them within each panel.
COMMANDS: dict[str, Entry] = {
    "status": Entry("status", "status", INSPECT),
    "sessions": Entry("sessions", "app", INSPECT, group=True),
    "locations": Entry("locations", "app", INSPECT, group=True),
    "workers": Entry("workers", "app", INSPECT, group=True),
    "tail": Entry("tail", "tail", INSPECT),
    "stats": Entry("stats", "stats", INSPECT),
    "latency": Entry("latency", "latency", INSPECT),
    "audit": Entry("audit", "audit", INSPECT),
    "dashboard": Entry("dashboard", "dashboard", INSPECT),
    "broadcast": Entry("broadcast", "app", ACT, group=True),
    "locks": Entry("locks", "app", ACT, group=True),
    "flags": Entry("flags", "app", ACT, group=True),
    "reconcile": Entry("reconcile", "reconcile", ACT),
    "validate": Entry("data", "validate", ADMIN),
    "preload": Entry("data", "preload", ADMIN),
    "cache": Entry("cache", "app", ADMIN, group=True),
    "warmup": Entry("warmup", "warmup", ADMIN),
    "db": Entry("db", "app", ADMIN, group=True),
    "doctor": Entry("doctor", "doctor", ADMIN),
    "metrics": Entry("metrics", "app", ADMIN, group=True),
    "acl": Entry("acl", "app", ADMIN, group=True),
    "local": Entry("local", "app", LOCAL, group=True),
    "simulate": Entry("simulate", "simulate", LOCAL),
}

# Global options that take a value (the next word is not a command name).
_VALUED = {
    "--redis-url",
    "--database-url",
    "--config",
    "--operator",
    "--environment",
    "--timeout",
    "--read-from",
}


def command_named(argv: list[str]) -> str | None:
    """The command a command line runs, if it names a known one after the global options."""
    words = iter(argv)
    for word in words:
        if word in _VALUED:
            next(words, None)
        elif word.startswith("-"):
            if word in _HELP_OPTIONS or word == "--version" or word.startswith("--install-"):
                return None
            if word.startswith("--show-completion"):
                return None
        else:
            return word if word in COMMANDS else None
    return None


def __getattr__(name: str) -> Any:
    # ``app``: the whole tree, built when first asked for (tests, the reference); the
    # Typer-side names from cli/tree.py
    if name in ("build_app", "main_options"):
        from echoes_ops.cli import tree

        return getattr(tree, name)
    if name == "app":
        from echoes_ops.cli.tree import build_app

        app = build_app()
        globals()["app"] = app
        return app
    raise AttributeError(name)


def _stdout_closed() -> int:
    """The reader of stdout went away (``echoes-ops validate | head -1``): end quietly with
    exit 1, as Click does for the Typer commands, stdout pointed at the null device so that
    nothing left in its buffer is written (or fails) as the interpreter ends."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)
    return 1


def main() -> None:
    completing = any(k.endswith("_COMPLETE") for k in os.environ)
    if not completing:
        import gc

        from echoes_ops.cli.plain import run_plain

        # No cycle collection in a plain run (the process ends right after it): a world's
        # objects hold no cycles, and the collections that writing the cache and ending
        # the process would run walk all of them (0.04 s at 22,000 entries, ten times that
        # at 220,000). Frozen, they are left alone at exit too.
        gc.disable()
        try:
            code = run_plain(sys.argv[1:])
            if code is not None:
                sys.stdout.flush()  # a closed pipe shows here, not as a message at exit
        except BrokenPipeError:
            code = _stdout_closed()
        if code is not None:
            gc.freeze()
            sys.exit(code)
        gc.enable()
    from echoes_ops.cli.core import defer_package_metadata
    from echoes_ops.cli.tree import build_app

    defer_package_metadata()
    build_app(None if completing else command_named(sys.argv[1:]))()
