"""The Typer command tree of ``echoes-ops``: the global options and :func:`build_app`
(see :mod:`echoes_ops.cli.main` for how a run uses them)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from echoes_ops import __version__
from echoes_ops.cli.common import CliState, warn
from echoes_ops.cli.group import EchoesGroup
from echoes_ops.cli.main import _HELP_OPTIONS, COMMANDS


def _new_app() -> typer.Typer:
    return typer.Typer(
        name="echoes-ops",
        help=(
            "Operator toolkit for the Redis tier of Echoes of the Ashes.\n\n"
            "Settings come from flags, then environment variables (REDIS_URL or REDIS_HOST/"
            "REDIS_PORT/REDIS_DB/REDIS_PASSWORD, DATABASE_URL, ...), then the YAML file named by "
            "--config / ECHOES_OPS_CONFIG. Exit codes are listed in docs/cli.md."
        ),
        no_args_is_help=True,
        add_completion=True,
        rich_markup_mode=None,
        cls=EchoesGroup,
        context_settings={"help_option_names": _HELP_OPTIONS, "max_content_width": 100},
        pretty_exceptions_enable=False,
    )


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"echoes-ops {__version__}\n")
        raise typer.Exit()


def main_options(
    ctx: typer.Context,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url",
            help="Redis URL (redis://, rediss://, unix://). Prefer REDIS_URL: a password "
            "on the command line is visible to other users.",
            show_default=False,
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url", help="PostgreSQL URL (env DATABASE_URL).", show_default=False
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="YAML config file (env ECHOES_OPS_CONFIG).", show_default=False
        ),
    ] = None,
    operator: Annotated[
        str | None,
        typer.Option(
            "--operator",
            help="Who is acting, for the records (env ECHOES_OPS_OPERATOR; default: OS user).",
            show_default=False,
        ),
    ] = None,
    environment: Annotated[
        str | None,
        typer.Option(
            "--environment",
            help="Name of the tier these settings reach (e.g. prod, staging), shown by status, "
            "the dashboard and every confirmation; red when it says production "
            "(env ECHOES_OPS_ENVIRONMENT).",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            help="Redis socket timeout, seconds (env REDIS_TIMEOUT).",
            show_default=False,
        ),
    ] = None,
    read_from: Annotated[
        str | None,
        typer.Option(
            "--read-from",
            help="On Redis Cluster, where keyspace walks read: primaries (default) or "
            "replicas, to spare the primaries; the replicas' lag is printed "
            "(env ECHOES_OPS_READ_FROM).",
            show_default=False,
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Do not verify the Redis server's TLS certificate (env REDIS_TLS_INSECURE); "
            "warned on every run. Without it, ssl_cert_reqs=none in the URL is refused.",
        ),
    ] = False,
    plain: Annotated[
        bool,
        typer.Option(
            "--plain",
            envvar="ECHOES_OPS_PLAIN",
            help="Tables as one line per row, no borders, colours or wrapping (the default "
            "when stdout is not a terminal).",
        ),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Operator toolkit for the Redis tier of Echoes of the Ashes."""
    from echoes_ops.config import url_has_password

    if redis_url and url_has_password(redis_url):
        warn(
            "--redis-url carries a password on the command line; prefer REDIS_URL or REDIS_PASSWORD_FILE"
        )
    ctx.obj = CliState(
        flags={
            "redis_url": redis_url,
            "database_url": database_url,
            "config_file": str(config) if config else None,
            "operator": operator,
            "environment": environment,
            "redis_timeout": timeout,
            "read_from": read_from,
            "redis_tls_insecure": True if insecure else None,
        },
        debug=debug,
    )


def build_app(only: str | None = None) -> typer.Typer:
    """The command tree: every command, or only the one named ``only``."""
    root = _new_app()
    root.callback()(main_options)
    for name, entry in COMMANDS.items():
        if only is not None and name != only:
            continue
        target: Any = getattr(importlib.import_module(f"echoes_ops.cli.{entry.module}"), entry.attr)
        if entry.group:
            root.add_typer(target, name=name, rich_help_panel=entry.panel)
        else:
            root.command(name, rich_help_panel=entry.panel)(target)
    return root
