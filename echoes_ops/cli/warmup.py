"""``warmup``: warm session and inventory caches from PostgreSQL (made to run from cron)."""

from __future__ import annotations

import contextlib
import json as jsonlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from echoes_ops import fmt
from echoes_ops.cli.common import (
    audited_redis,
    emit_json,
    guard,
    is_tty,
    run_stoppable,
    state,
    warn,
    world_cache,
)
from echoes_ops.cli.data import GamedataOption
from echoes_ops.cli.options import JsonOption
from echoes_ops.errors import BusyError, ConfigError, ExitCode, OpsError

if TYPE_CHECKING:
    from echoes_ops.gamedata import World
    from echoes_ops.operations.stop import StopToken
    from echoes_ops.operations.warmup import WarmupReport

DEFAULT_WHAT = "sessions,inventories,static"


def _check_what(value: str) -> str:
    from echoes_ops.operations.warmup import parse_what

    try:
        return ",".join(parse_what(value))
    except ConfigError as exc:
        raise typer.BadParameter(exc.message) from None


def _gamedata_for_static(ctx: typer.Context, given: Path | None) -> Path:
    """Where static data comes from: --gamedata, ECHOES_OPS_GAMEDATA / config, ./gamedata.
    Unlike ``preload``, never the bundled demo set: a cron job must not load it by accident."""
    if given is not None:
        return given
    configured = state(ctx).settings().gamedata_dir
    if configured:
        return Path(configured)
    if Path("gamedata").is_dir():
        return Path("gamedata")
    raise ConfigError(
        "--what static needs the game's gamedata: no --gamedata, ECHOES_OPS_GAMEDATA or ./gamedata",
        hint="set ECHOES_OPS_GAMEDATA, or leave static out: --what sessions,inventories",
    )


def write_report(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` as JSON to ``path`` atomically (temporary file, fsync, rename):
    a reader sees the previous report or this one, never a partial file."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ConfigError(f"cannot write the report {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(jsonlib.dumps(document, indent=2, ensure_ascii=False, default=str))
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ConfigError(f"cannot write the report {path}: {exc.strerror}") from None


def _summary(report: WarmupReport) -> str:
    d = report.as_dict()
    verb, removed = ("to write", "to remove") if report.dry_run else ("written", "removed")
    head = "warmup (dry run, nothing written)" if report.dry_run else "warmup"
    if d["sessions"] is None and d["inventories"] is None:
        parts = [f"{head}: {fmt.timing(report.elapsed_s)}"]
    else:
        parts = [
            f"{head}: {report.characters:,} characters active in the last "
            f"{fmt.duration(report.active_within_minutes * 60)}, {fmt.timing(report.elapsed_s)} "
            f"({report.rows_per_s:,.0f}/s)"
        ]
    if d["sessions"] is not None:
        s = report.sessions
        parts.append(
            f"sessions {s.written:,} {verb}, {s.unchanged:,} unchanged, "
            f"{s.skipped_fresher:,} fresher left alone, {s.skipped_unknown:,} unknown left alone"
        )
    if d["inventories"] is not None:
        i = report.inventories
        parts.append(
            f"inventories {i.written:,} {verb}, {i.removed:,} {removed}, {i.unchanged:,} "
            f"unchanged, {i.skipped_fresher + i.skipped_unknown:,} left alone"
        )
    if report.static is not None:
        parts.append(f"static {report.static['result']}")
    if report.invalid:
        parts.append(f"{report.invalid:,} invalid rows skipped")
    if report.partial:
        parts.append(f"PARTIAL (stopped: {report.stopped_because})")
    return "; ".join(parts)


def warmup(
    ctx: typer.Context,
    active_within: Annotated[
        int,
        typer.Option(
            "--active-within",
            min=1,
            metavar="MINUTES",
            help="Warm characters active in the last MINUTES (the query's $1).",
        ),
    ] = 30,
    what: Annotated[
        str,
        typer.Option(
            "--what",
            callback=_check_what,
            help="Comma-separated: sessions, inventories, static (re-preload gamedata "
            "only if it changed).",
        ),
    ] = DEFAULT_WHAT,
    max_seconds: Annotated[
        float | None,
        typer.Option(
            "--max-seconds",
            min=0,
            help="Stop after the batch during which this many seconds passed; the run is "
            "reported partial (exit 1).",
            show_default=False,
        ),
    ] = None,
    report_file: Annotated[
        Path | None,
        typer.Option(
            "--report",
            metavar="FILE",
            help="Also write the JSON report to FILE (atomically), failures included.",
            show_default=False,
        ),
    ] = None,
    gamedata: GamedataOption = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Read and report what would be written; write nothing."),
    ] = False,
    json: JsonOption = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Print a one-line summary on stderr."),
    ] = False,
) -> None:
    """Warm session and inventory caches from PostgreSQL; made to run from cron.

    Reads characters active in the last --active-within minutes and their inventories
    (queries configurable: warmup_characters_query, warmup_inventory_query) and writes
    player:<id>:session and player:<id>:inventory with the contract's TTLs. A session whose
    last_heartbeat is newer than the database row (a live worker's), or is not epoch seconds,
    is left alone, and so is its inventory; keys that already match are not touched, so a
    second run changes nothing. With static, re-preloads gamedata only if it changed.

    Quiet on success: prints nothing unless --json, --verbose or a terminal (one summary
    line on stderr). Exit 8 (one line) if another warmup holds lock:echoes-ops.warmup,
    9 if PostgreSQL is unreachable (nothing written), 1 if --max-seconds cut the run short,
    130 if Ctrl-C or SIGTERM stopped it after a batch (it says how many were warmed).
    See docs/warmup.md.

    \b
    Examples:
      echoes-ops warmup --dry-run --verbose
      echoes-ops warmup --active-within 60 --max-seconds 240 --report /var/lib/echoes-ops/warmup.json
      echoes-ops warmup --what sessions,inventories --json
    """
    from echoes_ops.operations.warmup import parse_what
    from echoes_ops.operations.warmup import warmup as do_warmup

    chosen = parse_what(what)
    args: dict[str, Any] = {
        "active_within": active_within,
        "what": ",".join(chosen),
        "max_seconds": max_seconds,
        "report": str(report_file) if report_file else None,
    }

    async def work(stop: StopToken) -> WarmupReport:
        async with audited_redis(ctx, "warmup", args, dry_run=dry_run) as (r, entry):
            settings = state(ctx).settings()
            dsn = settings.database_dsn()
            if dsn is None and ("sessions" in chosen or "inventories" in chosen):
                raise ConfigError(
                    "warmup reads PostgreSQL, but DATABASE_URL is not set",
                    hint="set DATABASE_URL or --database-url",
                )
            data: World | None = None
            if "static" in chosen:
                from echoes_ops.gamedata import load_world

                data = load_world(_gamedata_for_static(ctx, gamedata), cache=world_cache(ctx))
            report = await do_warmup(
                r,
                dsn or "",
                operator=settings.operator_name(),
                what=chosen,
                active_within=active_within,
                characters_query=settings.warmup_characters_query,
                inventory_query=settings.warmup_inventory_query,
                gamedata=data,
                dry_run=dry_run,
                max_seconds=max_seconds,
                stop=stop,
            )
            entry.detail = {
                "characters": report.characters,
                "sessions": report.sessions.as_dict() if "sessions" in chosen else None,
                "inventories": report.inventories.as_dict() if "inventories" in chosen else None,
                "static": report.static.get("result") if report.static else None,
                "invalid": report.invalid,
                "partial": report.partial,
                "elapsed_s": round(report.elapsed_s, 3),  # metrics: last warmup duration
            }
            return report

    async def work_with_report(stop: StopToken) -> WarmupReport:
        try:
            return await work(stop)
        except OpsError as exc:
            # a monitoring check reading the report sees the failure too; a run skipped
            # because another holds the lock leaves the running one's report alone
            if report_file is not None and not isinstance(exc, BusyError):
                failed = {
                    "ok": False,
                    "exit_code": int(exc.exit_code),
                    "error": str(exc),
                    "finished_at": round(time.time(), 3),
                    "dry_run": dry_run,
                    "what": chosen,
                }
                with contextlib.suppress(ConfigError):  # the run's own error wins
                    write_report(report_file, failed)
            raise

    report = run_stoppable(ctx, work_with_report)
    code = ExitCode.PROBLEMS_FOUND if report.partial else ExitCode.OK
    document = {
        "ok": not report.partial,
        "exit_code": int(code),
        "finished_at": round(time.time(), 3),
        **report.as_dict(),
    }
    if report_file is not None:
        guard(ctx, lambda: write_report(report_file, document))
    if json:
        emit_json(document)
    if verbose or (is_tty() and not json):
        sys.stderr.write(_summary(report) + "\n")
    if report.invalid:
        example = (report.examples.get("invalid") or [{}])[0]
        warn(
            f"{report.invalid:,} character row(s) could not be stored and were skipped, e.g. "
            f"id {example.get('id')}: {example.get('why')}"
        )
    if report.partial:
        reason = (
            f"--max-seconds {max_seconds:g} passed"
            if report.stopped_because == "max_seconds"
            else "the lock was lost"
        )
        warn(
            f"warmup stopped early ({reason}) after {report.characters:,} characters; "
            "the rest were not warmed (partial)"
        )
        raise typer.Exit(int(code))
