"""The ``echoes-ops`` command: global options and the command groups."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from echoes_ops import __version__
from echoes_ops.cli import (
    acl,
    audit,
    broadcast,
    cache,
    data,
    db,
    flags,
    local,
    locations,
    locks,
    reconcile,
    sessions,
    simulate,
    status,
    tail,
    workers,
)
from echoes_ops.cli import dashboard as dashboard_cli
from echoes_ops.cli import doctor as doctor_cli
from echoes_ops.cli import latency as latency_cli
from echoes_ops.cli import metrics as metrics_cli
from echoes_ops.cli import stats as stats_cli
from echoes_ops.cli import warmup as warmup_cli
from echoes_ops.cli.common import CliState, warn

app = typer.Typer(
    name="echoes-ops",
    help=(
        "Operator toolkit for the Redis tier of Echoes of the Ashes.\n\n"
        "Settings come from flags, then environment variables (REDIS_URL or REDIS_HOST/"
        "REDIS_PORT/REDIS_DB/REDIS_PASSWORD, DATABASE_URL, ...), then the YAML file named by "
        "--config / ECHOES_OPS_CONFIG. Exit codes are listed in docs/cli.md."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"echoes-ops {__version__}\n")
        raise typer.Exit()


@app.callback()
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
        },
        debug=debug,
    )


app.command("validate")(data.validate)
app.command("preload")(data.preload)
app.command("status")(status.status)
app.command("simulate")(simulate.simulate)
app.command("tail")(tail.tail)
app.add_typer(cache.app, name="cache")
app.add_typer(local.app, name="local")
app.add_typer(db.app, name="db")
app.add_typer(sessions.app, name="sessions")
app.add_typer(locations.app, name="locations")
app.add_typer(workers.app, name="workers")
app.add_typer(broadcast.app, name="broadcast")
app.add_typer(locks.app, name="locks")
app.command("reconcile")(reconcile.reconcile)
app.command("audit")(audit.audit)
app.command("dashboard")(dashboard_cli.dashboard)
app.add_typer(flags.app, name="flags")
app.command("stats")(stats_cli.stats)
app.add_typer(metrics_cli.app, name="metrics")
app.command("latency")(latency_cli.latency)
app.command("doctor")(doctor_cli.doctor)
app.command("warmup")(warmup_cli.warmup)
app.add_typer(acl.app, name="acl")


def main() -> None:
    app()
