"""``audit``: read the trail of operator actions back (and follow it)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from echoes_ops import fmt
from echoes_ops.cli.common import announce, emit_json, guard, run, state, stdout_console, warn
from echoes_ops.cli.options import JsonOption

if TYPE_CHECKING:
    from rich.console import Console

    from echoes_ops.operations.audit import AuditRecord
    from echoes_ops.operations.audit_read import AuditQuery, AuditRead

FOLLOW_EVERY = 1.0  # seconds between two reads of --follow
FOLLOW_OVERLAP = 2.0  # seconds each read looks back, for records stamped before they landed


def audit(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="Newest N records.")
    ] = 50,
    action: Annotated[
        str | None,
        typer.Option(
            "--action",
            metavar="ACTION",
            help="Only this action or its sub-actions (e.g. preload, locks, locks.release, "
            "warmup).",
            show_default=False,
        ),
    ] = None,
    operator: Annotated[
        str | None,
        typer.Option(
            "--operator",
            metavar="NAME",
            help="Only records whose declared operator (--operator, ECHOES_OPS_OPERATOR) is NAME.",
            show_default=False,
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            metavar="NAME",
            help="Only records run by NAME as authenticated: the OS user, sudo user, Redis ACL "
            "user or PostgreSQL user (what nobody can claim).",
            show_default=False,
        ),
    ] = None,
    result: Annotated[
        str | None,
        typer.Option(
            "--result", metavar="RESULT", help="Only ok, failed or interrupted.", show_default=False
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="WHEN",
            help="Only records since WHEN: a duration back from now (30m, 2h, 1h30m) or a "
            "local date and time (2026-12-06 01:30).",
            show_default=False,
        ),
    ] = None,
    all_: Annotated[
        bool,
        typer.Option("--all", help="Include routine cron runs (warmup), hidden by default."),
    ] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Keep printing new records as they come (oldest first); Ctrl-C stops.",
        ),
    ] = False,
    json: JsonOption = False,
) -> None:
    """Show who did what and when: every mutating command, with its arguments (secrets
    redacted), from which face (via: cli or dashboard), dry run or not, and how it ended.
    Routine cron runs (warmup) are hidden unless --all or --action warmup.

    Each record names the operator as declared (--operator, a label anyone can set) and who
    ran it as authenticated: the OS user (and sudo user), host, the Redis ACL user and the
    PostgreSQL session user (stamped by the server). See docs/team.md.

    Reads PostgreSQL when DATABASE_URL is set, after copying in the records the Redis stream
    kept while PostgreSQL was away. When PostgreSQL cannot be read it reads the capped Redis
    stream echoes:audit instead and says so (a warning on stderr, "note" in --json).

    \b
    Examples:
      echoes-ops audit --limit 20
      echoes-ops audit --since 2h --operator alice --result failed
      echoes-ops audit --user alice --action locks
      echoes-ops audit --action warmup --json
      echoes-ops audit --follow
    """
    from echoes_ops.operations.audit_read import AuditQuery, parse_since

    since_at = guard(ctx, lambda: parse_since(since)) if since is not None else None
    query = guard(
        ctx,
        lambda: AuditQuery(
            limit=limit,
            action=action,
            operator=operator,
            user=user,
            result=result,
            since=since_at,
            routine=all_,
        ),
    )
    read = _read(ctx, query)
    if read.note:
        warn(read.note)
    if follow:
        guard(ctx, lambda: _follow(ctx, query, read, json=json))
        return
    if json:
        emit_json(read.as_dict())
        return
    hidden = f"; {', '.join(query.hidden)} runs hidden (--all shows them)" if query.hidden else ""
    where = "PostgreSQL" if read.source == "postgresql" else "the Redis stream"
    console = stdout_console()
    console.print(f"{len(read.records)} record(s) from {where}, newest first{hidden}", markup=False)
    for rec in read.records:
        _print_record(rec, console)


def _read(ctx: typer.Context, query: AuditQuery) -> AuditRead:
    return run(ctx, lambda: _reading(ctx, query))


async def _reading(ctx: typer.Context, query: AuditQuery) -> AuditRead:
    """Read with Redis connected when it answers (to copy what PostgreSQL missed, or as the
    source), PostgreSQL alone otherwise."""
    from echoes_ops.operations.audit import AuditLog
    from echoes_ops.operations.audit_read import read_audit

    settings = state(ctx).settings()

    async def work() -> AuditRead:
        from contextlib import AsyncExitStack

        from echoes_ops.client.connect import open_redis
        from echoes_ops.errors import OpsError

        log = AuditLog(
            operator=settings.operator_name(),
            database_url=settings.database_dsn(),
            pg_timeouts=settings.pg_timeouts(),
        )
        async with AsyncExitStack() as stack:
            target = settings.redis_target()
            try:
                log.redis = await stack.enter_async_context(open_redis(target))
            except OpsError as exc:
                if not log.database_url:
                    raise
                log.connect_error = exc  # PostgreSQL alone will do
            if log.redis is not None:
                await announce(ctx, log.redis, target)
            return await read_audit(log, query)

    return await work()


def _follow(ctx: typer.Context, query: AuditQuery, first: AuditRead, *, json: bool) -> None:
    """Print ``first`` oldest first, then every record that lands after, until Ctrl-C."""
    import asyncio
    import dataclasses

    from echoes_ops.errors import OpsError

    seen: dict[str, float] = {}
    source = first.source

    def show(records: list[AuditRecord]) -> None:
        for rec in sorted(records, key=lambda r: r.at):
            if rec.record_id in seen:
                continue
            seen[rec.record_id] = rec.at
            if json:
                emit_json_line(rec.as_dict())
            else:
                _print_record(rec)
        sys.stdout.flush()

    show(first.records)
    latest = max((r.at for r in first.records), default=time.time())
    try:
        while True:
            time.sleep(FOLLOW_EVERY)
            window = dataclasses.replace(query, since=latest - FOLLOW_OVERLAP, limit=10_000)
            try:
                read = asyncio.run(_reading(ctx, window))
            except OpsError as exc:  # both stores away for now: say so, keep following
                if source != "none":
                    warn(f"cannot read the audit trail: {exc}; still trying")
                source = "none"
                continue
            if read.source != source:
                source = read.source
                warn(read.note or f"reading {source} again")
            show(read.records)
            latest = max([latest, *(r.at for r in read.records)])
            for record_id, at in list(seen.items()):  # forget what the window no longer sees
                if at < latest - 2 * FOLLOW_OVERLAP:
                    del seen[record_id]
    except KeyboardInterrupt:
        return


def emit_json_line(data: object) -> None:
    import json as jsonlib

    sys.stdout.write(jsonlib.dumps(data, ensure_ascii=False, default=str) + "\n")


def _print_record(rec: AuditRecord, console: Console | None = None) -> None:
    when = fmt.timestamp(rec.at)
    dry = " (dry run)" if rec.dry_run else ""
    args = " ".join(
        f"{k}={fmt.value(v)}"
        for k, v in rec.args.items()
        if k != "via" and v not in (None, False, [], "")
    )
    error = (rec.detail or {}).get("error")
    tail = f": {error}" if error else ""
    via = rec.args.get("via") or "-"
    line = (
        f"{when}  declared {rec.operator:<10} by {_who(rec):<24} {via:<9} {rec.action:<18} "
        f"{rec.result}{dry}  {args}{tail}"
    )
    # arguments are stored as given, refused ones too: show control characters escaped
    # and brackets as typed, never as terminal escapes or rich markup
    (console or stdout_console()).print(_printable(line), markup=False)


def _who(rec: AuditRecord) -> str:
    """The authenticated side: ``os alice(sudo bob)@host redis alice pg alice`` ("?" for
    what a record written before identities were recorded does not say)."""
    os_part = rec.os_user or "?"
    if rec.sudo_user:
        os_part += f"(sudo {rec.sudo_user})"
    parts = [f"os {os_part}@{rec.host or '?'}", f"redis {rec.redis_user or '?'}"]
    if rec.pg_user:
        parts.append(f"pg {rec.pg_user}")
    return " ".join(parts)


def _printable(text: str) -> str:
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )
