"""The root command group: how every command's help and usage errors read.

One place, applied to the whole tree when Typer builds it (the subcommands exist by then):

- metavars are conventional UPPERCASE words (``--limit LIMIT``, ``CHARACTER_ID``), not the
  type labels (``<int range>``) Typer prints by default; an explicit metavar wins;
- ``--help`` lists commands grouped into panels (inspect / act / admin / local), from each
  command's ``rich_help_panel``, in plain text as in rich mode;
- a bad flag or argument is one line on stderr in the project's words and exits 2
  (``echoes-ops: error: --limit: must be at least 1 (see: echoes-ops sessions list --help)``),
  never the validation library's ``Input should be greater than or equal to 1`` under a
  usage block;
- plain values (words, paths, numbers) are taken without the validation library, which is
  imported only for a value that needs it (``cli/coerce.py``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any, NoReturn

import typer
from typer import _click
from typer.core import TyperGroup

try:
    from echoes_ops.cli.coerce import install as install_light_coercion
except ImportError:  # a Typer whose internals differ: its own coercion (slower start-up) serves
    install_light_coercion = None  # type: ignore[assignment]
from echoes_ops.errors import ExitCode, OpsError

PANELS = ("inspect", "act", "admin", "local")  # the order of the help's command panels
PANEL_TITLES = {
    "inspect": "Inspect",
    "act": "Act (audited)",
    "admin": "Admin",
    "local": "Local",
}

# The validation library's phrases, in the project's words.
_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Input should be greater than or equal to (\S+)"), r"must be at least \1"),
    (re.compile(r"Input should be less than or equal to (\S+)"), r"must be at most \1"),
    (re.compile(r"Input should be greater than (\S+)"), r"must be more than \1"),
    (re.compile(r"Input should be less than (\S+)"), r"must be less than \1"),
    (re.compile(r"Input should be a valid integer.*"), "must be a whole number"),
    (re.compile(r"Input should be a valid number.*"), "must be a number"),
    (re.compile(r"Input should be a valid boolean.*"), "must be true or false"),
    (re.compile(r"Input should be (.+)"), r"must be \1"),
    (re.compile(r"Value (.+) is not a valid (\w+)\.?"), r"\1 is not a valid \2"),
)


def project_words(message: str) -> str:
    """A validation message as this project words it (lower case, no final period)."""
    text = message.strip()
    for pattern, replacement in _PHRASES:
        if pattern.fullmatch(text):
            text = pattern.sub(replacement, text)
            break
    text = text.rstrip(".")
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def usage_line(error: _click.exceptions.UsageError) -> str:
    """The one line a usage error becomes."""
    exceptions = _click.exceptions
    if isinstance(error, exceptions.NoSuchOption):
        line = f"unknown option {error.option_name}"
        if error.possibilities:
            line += f"; did you mean {' or '.join(sorted(error.possibilities))}?"
    elif isinstance(error, exceptions.MissingParameter):
        param = error.param
        what = getattr(param, "param_type_name", "parameter")
        name = _param_name(param) if param is not None else "a value"
        line = f"missing {what} {name}"
    elif isinstance(error, exceptions.BadParameter):
        name = _param_name(error.param) if error.param is not None else "a value"
        line = f"{name}: {project_words(error.message)}"
    else:
        line = project_words(error.format_message())
    if error.ctx is not None:
        line += f" (see: {error.ctx.command_path} --help)"
    return line


def _param_name(param: Any) -> str:
    opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    if getattr(param, "param_type_name", "") == "option" and opts:
        return str(opts[0])
    return str(param.metavar or param.name.upper())


def _usage_exit(error: _click.exceptions.UsageError) -> NoReturn:
    sys.stderr.write(f"echoes-ops: error: {usage_line(error)}\n")
    raise typer.Exit(int(ExitCode.USAGE))


def _walk(command: Any) -> Iterator[Any]:
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from _walk(sub)


# Metavars that say more than the option's name does.
METAVARS = {
    "redis_url": "URL",
    "database_url": "URL",
    "config": "FILE",
    "operator": "NAME",
    "timeout": "SECONDS",
    "stale": "SECONDS",
    "grace": "SECONDS",
    "limit": "N",
    "top": "N",
    "count": "N",
    "location": "LOCATION_ID",
    "worker": "WORKER_ID",
}


def _uppercase_metavars(command: Any) -> None:
    for cmd in _walk(command):
        for param in cmd.params:
            if param.metavar is None and not getattr(param, "is_flag", False):
                param.metavar = METAVARS.get(param.name, param.name.upper())
            if param.param_type_name == "argument":
                _conventional_argument(param)


def _conventional_argument(param: Any) -> None:
    """``CHARACTER_ID`` in the usage line (not Typer's ``{CHARACTER_ID}``), ``[NAME]`` when
    optional, ``NAME...`` when repeated; no ``<int>`` type label beside it in the list."""
    name = param.metavar
    if name.startswith("[") or name.endswith("..."):  # spelled out where declared
        shown = name
    else:
        shown = name if param.required else f"[{name}]"
        if param.nargs != 1:
            shown += "..."
    setattr(param, "_usage_display_name", lambda: shown)  # noqa: B010 - Typer has no hook
    setattr(param, "display_type_rich", lambda ctx: None)  # noqa: B010


class EchoesGroup(TyperGroup):
    """The ``echoes-ops`` group (``typer.Typer(cls=EchoesGroup)``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _uppercase_metavars(self)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: _click.Context | None = None,
        **extra: Any,
    ) -> _click.Context:
        # here, not in __init__: Typer adds the completion options, and each command its
        # help option, after the tree is built
        names = SimpleNamespace(help_option_names=self.context_settings.get("help_option_names"))
        if install_light_coercion is not None:
            for cmd in _walk(self):
                install_light_coercion([*cmd.params, cmd.get_help_option(names)])
        try:
            return super().make_context(info_name, args, parent, **extra)
        except _click.exceptions.NoArgsIsHelpError:
            raise
        except _click.exceptions.UsageError as error:
            _usage_exit(error)

    def invoke(self, ctx: _click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _click.exceptions.NoArgsIsHelpError:
            raise
        except _click.exceptions.UsageError as error:
            _usage_exit(error)
        except OpsError as error:
            # raised outside a command's guard (settings read while its arguments are
            # resolved, e.g. an unreadable ECHOES_OPS_CONFIG): one line and its exit code
            # here too, never a traceback
            from echoes_ops.cli.core import CliState, failure_code

            debug = isinstance(ctx.obj, CliState) and ctx.obj.debug
            raise typer.Exit(failure_code(error, debug=debug)) from None

    def format_commands(self, ctx: _click.Context, formatter: Any) -> None:
        """The commands in panels (inspect / act / admin / local), each sorted by name."""
        rows: dict[str, list[tuple[str, str]]] = {}
        limit = formatter.width - 6 - max((len(n) for n in self.list_commands(ctx)), default=0)
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            panel = getattr(cmd, "rich_help_panel", None) or "other"
            rows.setdefault(panel, []).append((name, cmd.get_short_help_str(limit)))
        order: Sequence[str] = [p for p in PANELS if p in rows] + sorted(
            p for p in rows if p not in PANELS
        )
        for panel in order:
            with formatter.section(PANEL_TITLES.get(panel, panel.capitalize())):
                formatter.write_dl(rows[panel])
