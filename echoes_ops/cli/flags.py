"""``flags list|get|set|status``: the REDIS_ENABLED switch (and flags to come).

``flags set`` works while Redis is down: PostgreSQL is the source of truth (running workers
hear it through LISTEN/NOTIFY), the env file is updated for restarts, and Redis gets a
mirror and a ``config_changed`` message only when it answers. Its audit record goes to
PostgreSQL, and to the Redis stream when Redis answers.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from echoes_ops import fmt
from echoes_ops.cli.common import (
    announce,
    confirm,
    emit_json,
    fail,
    guard,
    run,
    state,
    stdout_console,
    warn,
)
from echoes_ops.cli.options import JsonOption
from echoes_ops.cli.output import print_table
from echoes_ops.errors import ExitCode, OpsError

if TYPE_CHECKING:
    from echoes_ops.config import RedisTarget, Settings
    from echoes_ops.operations.flags import FlagStatus, FlagValue, LazyRedis, SetResult

app = typer.Typer(
    help="Operational flags: the REDIS_ENABLED switch (works while Redis is down).",
    no_args_is_help=True,
)
EnvFileOption = Annotated[
    Path | None,
    typer.Option(
        "--env-file",
        help="The deployment's env file (env ECHOES_OPS_ENV_FILE).",
        show_default=False,
    ),
]


def _settings(ctx: typer.Context) -> Settings:
    return guard(ctx, lambda: state(ctx).settings())


def _require_dsn(settings: Settings) -> str:
    dsn = settings.database_dsn()
    if not dsn:
        fail(
            "DATABASE_URL is not set: flags live in PostgreSQL (set DATABASE_URL or pass "
            "--database-url)",
            int(ExitCode.CONFIG),
        )
    return dsn


def _redis_target(settings: Settings) -> tuple[RedisTarget | None, str | None]:
    """Where Redis is; a Redis setting that cannot be used is not fatal for flags."""
    try:
        return settings.redis_target(), None
    except OpsError as exc:
        return None, str(exc)


async def _announce(ctx: typer.Context, lazy: LazyRedis, target: RedisTarget | None) -> None:
    """The topology line, once Redis has been reached (flags never open it only for that:
    they work while Redis is down, and reach it after PostgreSQL)."""
    if lazy.opened is not None:
        await announce(ctx, lazy.opened, target)


def _line(text: str) -> None:
    sys.stdout.write(text + "\n")


def _version_time(version: str | None) -> str:
    """A flag version (epoch microseconds) as the local time of the change."""
    if not version or not version.isdigit():
        return version or "-"
    seconds = int(version) / 1e6
    return (
        time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{int(version) % 10**6 // 1000:03d}"
    )


def _when(epoch: float | None) -> str:
    return fmt.timestamp(epoch)


@app.command("list")
def list_(ctx: typer.Context, json: JsonOption = False) -> None:
    """Every known flag with its value in PostgreSQL (the default when never set), who set
    it, when and why.

    \b
    Examples:
      echoes-ops flags list
      echoes-ops flags list --json
    """
    from echoes_ops.operations.flags import list_flags

    settings = _settings(ctx)
    dsn = _require_dsn(settings)

    async def work() -> list[FlagValue]:
        return await list_flags(dsn, timeouts=settings.flag_timeouts())

    flags = run(ctx, work)
    if json:
        emit_json({"flags": [f.as_dict() for f in flags]})
        return
    from rich.table import Table

    table = Table(title=f"{len(flags)} flag(s) (PostgreSQL)")
    for column in ("flag", "value", "default", "set by", "at", "reason"):
        table.add_column(column)
    for f in flags:
        table.add_row(
            f.name if f.known else f"{f.name} (unknown)",
            f.value,
            f.default or "-",
            "(default)" if f.is_default else (f.updated_by or "?"),
            _when(f.updated_at),
            f.reason or "",
        )
    print_table(table)


@app.command("get")
def get(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Flag name, e.g. REDIS_ENABLED.")],
    json: JsonOption = False,
) -> None:
    """One flag's value in PostgreSQL (the source of truth): first line NAME=value, then who
    set it, when and why.

    \b
    Examples:
      echoes-ops flags get REDIS_ENABLED
      echoes-ops flags get REDIS_ENABLED --json
    """
    from echoes_ops.operations.flags import get_flag

    settings = _settings(ctx)
    dsn = _require_dsn(settings)

    async def work() -> FlagValue:
        return await get_flag(dsn, name, timeouts=settings.flag_timeouts())

    flag = run(ctx, work)
    if json:
        emit_json(flag.as_dict())
        return
    _line(f"{flag.name}={flag.value}")
    if flag.is_default:
        _line("  never set: the default applies")
    else:
        _line(f"  set by {flag.updated_by} at {_when(flag.updated_at)}: {flag.reason}")


@app.command("set")
def set_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Flag name, e.g. REDIS_ENABLED.")],
    value: Annotated[str, typer.Argument(help="New value (true/false for boolean flags).")],
    reason: Annotated[
        str,
        typer.Option("--reason", help="Why (stored with the flag and the audit record)."),
    ],
    env_file: EnvFileOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; write nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json: JsonOption = False,
) -> None:
    """Set a flag: PostgreSQL first (running workers switch within a second through
    LISTEN/NOTIFY), then the env file for restarts (replaced atomically, other lines and
    comments kept), then the Redis mirror and a config_changed message when Redis answers.
    Works while Redis is down (reported as a warning). If PostgreSQL fails nothing is
    written. If another session holds the flag's row in PostgreSQL, gives up after
    ECHOES_OPS_FLAGS_TIMEOUT seconds (default 3) naming that session (pid, application,
    how long), exit 8. Asks for confirmation for REDIS_ENABLED; audited as flags.set,
    failures included.

    \b
    Examples:
      echoes-ops flags set REDIS_ENABLED false --reason "Redis outage" --dry-run
      echoes-ops flags set REDIS_ENABLED false --reason "Redis outage" --yes
      echoes-ops flags set REDIS_ENABLED true --reason "Redis back" --env-file /srv/api/.env
    """
    from echoes_ops.contract import flags as contract
    from echoes_ops.operations.flags import FlagsAuditLog, LazyRedis, set_flag
    from echoes_ops.operations.writes import CLI, FlagPartialFailure, set_flag_audited

    settings = _settings(ctx)
    spec = guard(ctx, lambda: contract.spec(name))  # the arguments first: a bad one exits 2
    canonical = guard(ctx, lambda: spec.parse(value))
    dsn = _require_dsn(settings)
    if not reason.strip():
        fail("--reason must say why the flag changes", int(ExitCode.USAGE))
    env_path = str(env_file) if env_file is not None else settings.env_file
    operator = settings.operator_name()
    target, target_error = _redis_target(settings)

    if spec.confirm and not dry_run and not yes:

        async def preview() -> SetResult:
            return await set_flag(
                dsn,
                spec.name,
                canonical,
                reason=reason,
                operator=operator,
                env_file=env_path,
                dry_run=True,
                timeouts=settings.flag_timeouts(),
            )

        import asyncio

        try:
            now = asyncio.run(preview()).previous
        except OpsError as exc:  # the attempt below fails the same way, and is audited
            now = f"unknown: {exc}"
        confirm(
            ctx,
            f"Set {spec.name}={canonical} (now {now}) for every worker"
            f"{' and in ' + env_path if env_path else ''}?",
            yes=yes,
        )

    async def work() -> tuple[SetResult, list[str], str | None]:
        async with LazyRedis(target) as lazy:
            if target_error is not None:
                lazy.error = target_error
            log = FlagsAuditLog(
                operator=operator, database_url=dsn, lazy=lazy, pg_timeouts=settings.pg_timeouts()
            )
            try:
                result = await set_flag_audited(
                    log,
                    dsn,
                    spec.name,
                    canonical,
                    reason=reason,
                    env_file=env_path,
                    via=CLI,
                    dry_run=dry_run,
                    timeouts=settings.flag_timeouts(),
                )
            except FlagPartialFailure as exc:
                await _announce(ctx, lazy, target)
                return exc.result, list(log.warnings), str(exc)
            await _announce(ctx, lazy, target)
            return result, list(log.warnings), None

    result, audit_warnings, partial = run(ctx, work)
    if json:
        emit_json(result.as_dict())
    else:
        _print_set(result)
    for outcome in result.warnings:
        warn(f"{outcome.target} {outcome.status}: {outcome.detail}")
    for message in audit_warnings:
        warn(message)
    if partial is not None:
        fail(partial, int(ExitCode.PROBLEMS_FOUND))


def _print_set(result: SetResult) -> None:
    head = f"{result.name}: {result.previous} -> {result.value}"
    if result.dry_run:
        head += " (dry run: nothing written)"
    elif result.version:
        head += f" (version {result.version})"
    _line(head)
    for t in result.targets:
        _line(f"  {t.target:<11} {t.status:<13} {t.detail}")


@app.command("status")
def status(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Flag name.", show_default=True)] = "REDIS_ENABLED",
    env_file: EnvFileOption = None,
    json: JsonOption = False,
) -> None:
    """Where a flag stands: its value in PostgreSQL, the env file and the Redis mirror,
    whether they agree, and the mode each live worker reports (flagging workers that have
    not applied PostgreSQL's value). With Redis down, says so and still shows PostgreSQL
    and the env file. Exits 1 when sources disagree, PostgreSQL or the env file cannot be
    read, or a worker has not applied the value.

    \b
    Examples:
      echoes-ops flags status
      echoes-ops flags status REDIS_ENABLED --env-file /srv/api/.env --json
    """
    from echoes_ops.contract import flags as contract
    from echoes_ops.operations.flags import LazyRedis, flag_status

    settings = _settings(ctx)
    spec = guard(ctx, lambda: contract.spec(name))
    env_path = str(env_file) if env_file is not None else settings.env_file
    target, target_error = _redis_target(settings)

    async def work() -> FlagStatus:
        async with LazyRedis(target) as lazy:
            if target_error is not None:
                lazy.error = target_error
            found = await flag_status(
                settings.database_dsn(),
                spec.name,
                env_file=env_path,
                redis=lazy,
                timeouts=settings.flag_timeouts(),
            )
            await _announce(ctx, lazy, target)
            return found

    st = run(ctx, work)
    if json:
        emit_json(st.as_dict())
    else:
        _print_status(st)
    if st.problems:
        raise typer.Exit(int(ExitCode.PROBLEMS_FOUND))


def _print_status(st: FlagStatus) -> None:
    from rich.table import Table

    console = stdout_console()
    truth = st.expected if st.expected is not None else "unknown"
    _line(f"{st.name}: {truth} (PostgreSQL, the source of truth)")
    sources = Table(show_edge=False, box=None, pad_edge=False)
    for column in ("source", "state", "value", "detail"):
        sources.add_column(column)
    for s in st.sources:
        shown = s.value if s.value is not None else (f"({s.effective})" if s.effective else "-")
        sources.add_row(s.source, s.state, shown, s.detail)
    print_table(sources, console)
    _line("sources agree" if st.agree else "SOURCES DISAGREE")
    if not st.redis_reachable:
        _line("Redis is unreachable: live workers cannot be listed (they follow PostgreSQL)")
    else:
        table = Table(title=f"{len(st.workers)} live worker(s)")
        for column in ("worker", "mode", "value", "version (set at)", "from", "applied", "beat"):
            table.add_column(column)
        for w in st.workers:
            applied = {True: "yes", False: "NO", None: "?"}[w.applied]
            table.add_row(
                w.worker_id,
                w.mode or "?",
                w.redis_enabled or "?",
                _version_time(w.flags_version),
                w.flags_source or "?",
                applied,
                fmt.age(w.heartbeat_age),
            )
        print_table(table, console)
    for problem in st.problems:
        _line(f"problem: {problem}")
