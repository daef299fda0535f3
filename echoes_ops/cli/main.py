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
from echoes_ops.cli.group import EchoesGroup

app = typer.Typer(
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
            "redis_tls_insecure": True if insecure else None,
        },
        debug=debug,
    )


INSPECT, ACT, ADMIN, LOCAL = "inspect", "act", "admin", "local"  # help panels (cli/group.py)

app.command("status", rich_help_panel=INSPECT)(status.status)
app.add_typer(sessions.app, name="sessions", rich_help_panel=INSPECT)
app.add_typer(locations.app, name="locations", rich_help_panel=INSPECT)
app.add_typer(workers.app, name="workers", rich_help_panel=INSPECT)
app.command("tail", rich_help_panel=INSPECT)(tail.tail)
app.command("stats", rich_help_panel=INSPECT)(stats_cli.stats)
app.command("latency", rich_help_panel=INSPECT)(latency_cli.latency)
app.command("audit", rich_help_panel=INSPECT)(audit.audit)
app.command("dashboard", rich_help_panel=INSPECT)(dashboard_cli.dashboard)
app.add_typer(broadcast.app, name="broadcast", rich_help_panel=ACT)
app.add_typer(locks.app, name="locks", rich_help_panel=ACT)
app.add_typer(flags.app, name="flags", rich_help_panel=ACT)
app.command("reconcile", rich_help_panel=ACT)(reconcile.reconcile)
app.command("validate", rich_help_panel=ADMIN)(data.validate)
app.command("preload", rich_help_panel=ADMIN)(data.preload)
app.add_typer(cache.app, name="cache", rich_help_panel=ADMIN)
app.command("warmup", rich_help_panel=ADMIN)(warmup_cli.warmup)
app.add_typer(db.app, name="db", rich_help_panel=ADMIN)
app.command("doctor", rich_help_panel=ADMIN)(doctor_cli.doctor)
app.add_typer(metrics_cli.app, name="metrics", rich_help_panel=ADMIN)
app.add_typer(acl.app, name="acl", rich_help_panel=ADMIN)
app.add_typer(local.app, name="local", rich_help_panel=LOCAL)
app.command("simulate", rich_help_panel=LOCAL)(simulate.simulate)


def main() -> None:
    app()
