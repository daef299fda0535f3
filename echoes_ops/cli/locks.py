"""``locks list|show|hold|release|extend``: the tier's distributed locks."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from echoes_ops import fmt
from echoes_ops.cli.common import (
    confirm,
    emit_json,
    redis_client,
    refuse_audited,
    run,
    stdout_console,
    write_log,
)
from echoes_ops.cli.options import JsonOption

if TYPE_CHECKING:
    from echoes_ops.operations.locks import ExtendResult, HoldResult, LockInfo, ReleaseResult

app = typer.Typer(
    help="Distributed locks: who holds what, operator holds, safe release.",
    no_args_is_help=True,
)
NameArgument = Annotated[str, typer.Argument(help="Lock name (the part after lock:).")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Check and show; change nothing.")]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="TOKEN",
        help="The lock's exact value, as printed by locks hold. Default: the current value, "
        "if its owner is you (operator.<your name>) and you took it (same OS user on this "
        "host, or same Redis ACL user).",
        show_default=False,
    ),
]


def _line(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _alive(info: LockInfo) -> str:
    if info.owner_kind == "operator":
        return "operator"
    if info.alive:
        return "alive"
    return "UNRESPONSIVE" if info.liveness.startswith("unresponsive") else "DEAD"


@app.command("list")
def list_(ctx: typer.Context, json: JsonOption = False) -> None:
    """Every lock:* key (SCAN): owner (worker id or operator), TTL, and whether the owner
    is alive (a client with its name in CLIENT LIST and a fresh heartbeat in its
    worker:<id>:meta; connected without a fresh heartbeat is "unresponsive"). A lock without
    a TTL never expires by itself and is flagged, and so is a worker whose meta still claims
    a lock that now holds another value (a former holder that has not noticed).

    \b
    Examples:
      echoes-ops locks list
      echoes-ops locks list --json
    """
    from echoes_ops.operations.locks import list_locks

    async def work() -> list[LockInfo]:
        async with redis_client(ctx) as r:
            return await list_locks(r)

    found = run(ctx, work)
    if json:
        emit_json({"locks": [info.as_dict() for info in found]})
        return
    from rich.table import Table

    table = Table(title=f"{len(found)} lock(s)")
    for column in ("lock", "owner", "ttl", "owner state", "reason / value"):
        table.add_column(column)
    for info in found:
        note = info.hold.get("reason", "") if info.hold else info.value
        table.add_row(info.name, info.owner, fmt.ttl_ms(info.ttl_ms), _alive(info), note)
    stdout_console().print(table, markup=False)
    for info in found:
        if info.no_ttl:
            _line(f"warning: {info.key} has no TTL: it never expires by itself")
        for line in _stale_claims(info):
            _line(f"warning: {line}")


def _stale_claims(info: LockInfo) -> list[str]:
    return [
        f"{wid} still claims {info.key} in its worker meta, but the lock now holds "
        f"{info.value!r} ({info.owner}): a former holder that has not noticed it lost it "
        "(frozen or stalled?); see: echoes-ops workers list"
        for wid in info.stale_claims
    ]


def _show(info: LockInfo) -> None:
    _line(f"{info.key}")
    _line(f"  value     {info.value}")
    kind = "operator" if info.owner_kind == "operator" else "worker"
    token = "" if info.has_token else " (bare value: the plan's code, no token)"
    _line(f"  owner     {info.owner} ({kind}){token}")
    alive = {True: "alive", False: "not alive", None: "n/a"}[info.alive]
    _line(f"  state     {alive}: {info.liveness}")
    ttl = "none: it never expires by itself" if info.no_ttl else fmt.ttl_ms(info.ttl_ms)
    _line(f"  ttl       {ttl}")
    for line in _stale_claims(info):
        _line(f"  WARNING   {line}")
    if info.hold:
        _line(f"  reason    {info.hold.get('reason', '')}")
        _line(f"  held by   {info.hold.get('operator', '?')} at {_when(info.hold.get('at'))}")
        from echoes_ops.operations.holdowner import taker_text

        _line(f"  taken by  {taker_text(info.hold)} (declared: {info.hold.get('operator', '?')})")


def _when(epoch: str | None) -> str:
    try:
        return fmt.timestamp(float(epoch or ""))
    except ValueError:
        return "?"


@app.command("show")
def show(ctx: typer.Context, name: NameArgument, json: JsonOption = False) -> None:
    """One lock: value, owner, TTL, the owner's liveness and, for an operator hold, why.

    \b
    Examples:
      echoes-ops locks show spawn_manager
      echoes-ops locks show spawn_manager --json
    """
    from echoes_ops.operations.locks import show_lock

    async def work() -> LockInfo:
        async with redis_client(ctx) as r:
            return await show_lock(r, name)

    info = run(ctx, work)
    if json:
        emit_json(info.as_dict())
    else:
        _show(info)


@app.command("hold")
def hold(
    ctx: typer.Context,
    name: NameArgument,
    ttl: Annotated[
        str,
        typer.Option(
            "--ttl",
            metavar="DURATION",
            help="How long to hold it: seconds, or 90s, 10m, 1h (max 24h).",
        ),
    ],
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why; shown to others.")],
    dry_run: DryRunOption = False,
    json: JsonOption = False,
) -> None:
    """Take a lock as operator.<your name> so the background task that uses it pauses
    (the reference worker's spawn task uses spawn_manager). Prints the token to release or
    extend it with. Refuses (exit 8) while anyone else holds it; audited.

    \b
    Examples:
      echoes-ops locks hold spawn_manager --ttl 30m --reason "event setup"
      echoes-ops locks hold spawn_manager --ttl 600 --reason "db migration" --json
    """
    from echoes_ops.operations.writes import CLI, hold_lock_audited

    async def work() -> HoldResult:
        async with write_log(ctx) as log:
            return await hold_lock_audited(
                log, name, ttl=ttl, reason=reason, via=CLI, dry_run=dry_run
            )

    result = run(ctx, work)
    if json:
        emit_json(result.as_dict())
        return
    if result.dry_run:
        _line(
            f"dry run: {result.key} is free; would hold it as {result.owner} for "
            f"{fmt.ttl_ms(result.ttl_ms)}"
        )
        return
    _line(f"holding {result.key} as {result.owner} for {fmt.ttl_ms(result.ttl_ms)}")
    _line(f"token: {result.token}")
    _line(f"release with: echoes-ops locks release {result.name} --token '{result.token}'")


def _release_report(result: ReleaseResult, json: bool) -> None:
    if json:
        emit_json(result.as_dict())
        return
    if result.dry_run:
        _line(f"dry run: would release {result.key}; compared {result.compared}")
    elif result.released:
        how = "force-released" if result.forced else "released"
        _line(f"{how} {result.key} (owner {result.owner}); compared {result.compared}")
        if result.note:
            _line(f"  {result.note}")
    else:
        _line(f"{result.key}: {result.note}")


@app.command("release")
def release(
    ctx: typer.Context,
    name: NameArgument,
    token: TokenOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Break a lock you do not hold (a dead owner's): shows the owner and asks; "
            "deletes only the value you saw.",
        ),
    ] = False,
    even_if_alive: Annotated[
        bool,
        typer.Option(
            "--even-if-alive",
            help="With --force: break it even though its owner is alive (or is an operator hold).",
        ),
    ] = False,
    dry_run: DryRunOption = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json: JsonOption = False,
) -> None:
    """Release a lock you hold: with --token, only while the lock holds exactly that
    value; without, only while its owner is you (operator.<your name>) and you are who
    took it, as authenticated (the same OS user on the same host, or the same Redis ACL
    user other than default: a declared --operator name is not enough; docs/team.md). The
    compare and the delete are one atomic step (Lua), so a newer owner's lock is never
    deleted.

    --force breaks someone else's lock: it shows the owner and whether it is alive, asks,
    and deletes only the exact value shown (if the lock expired and a new owner took it
    meanwhile, nothing is deleted, exit 8). It refuses while the owner is alive (or the
    lock is an operator hold) unless --even-if-alive is given too. Audited.

    \b
    Examples:
      echoes-ops locks release spawn_manager --token 'operator.alice#3f9c...'
      echoes-ops locks release spawn_manager
      echoes-ops locks release spawn_manager --force
      echoes-ops locks release spawn_manager --force --even-if-alive --yes
    """
    from echoes_ops.operations.locks import LockArgumentError
    from echoes_ops.operations.writes import CLI, release_lock_audited

    args = {
        "name": name,
        "token": token,
        "force": force,
        "even_if_alive": even_if_alive,
    }

    if even_if_alive and not force:
        error = LockArgumentError("--even-if-alive only goes with --force")
        refuse_audited(ctx, "locks.release", args, error, dry_run=dry_run)
    if force and token is not None:
        error = LockArgumentError("--force and --token do not go together")
        refuse_audited(ctx, "locks.release.force", args, error, dry_run=dry_run)
    if force:
        _force_release(
            ctx, name, args, even_if_alive=even_if_alive, dry_run=dry_run, yes=yes, json=json
        )
        return

    async def work() -> ReleaseResult:
        async with write_log(ctx) as log:
            return await release_lock_audited(log, name, token=token, via=CLI, dry_run=dry_run)

    _release_report(run(ctx, work), json)


def _force_release(
    ctx: typer.Context,
    name: str,
    args: dict[str, Any],
    *,
    even_if_alive: bool,
    dry_run: bool,
    yes: bool,
    json: bool,
) -> None:
    from echoes_ops.errors import NotFoundError
    from echoes_ops.operations.locks import force_refusal, show_lock
    from echoes_ops.operations.writes import CLI, force_release_args, force_release_audited

    action = "locks.release.force"

    async def look() -> LockInfo | NotFoundError:
        async with redis_client(ctx) as r:
            try:
                return await show_lock(r, name)
            except NotFoundError as exc:
                return exc

    seen = run(ctx, look)
    if isinstance(seen, NotFoundError):
        refuse_audited(ctx, action, args, seen, dry_run=dry_run)
    refusal = force_refusal(seen, even_if_alive=even_if_alive)
    if not json:
        _show(seen)
    seen_args = force_release_args(
        name, seen_value=seen.value, even_if_alive=even_if_alive, reason=None
    )
    if refusal is not None:
        refuse_audited(ctx, action, seen_args, refusal, dry_run=dry_run)

    async def work(dry: bool) -> ReleaseResult | None:
        async with write_log(ctx) as log:
            return await force_release_audited(
                log,
                name,
                seen_value=seen.value,
                even_if_alive=even_if_alive,
                reason=None,
                via=CLI,
                dry_run=dry,
            )

    if dry_run:
        run(ctx, lambda: work(True))
        if json:
            emit_json({"dry_run": True, "would_delete": seen.value, "lock": seen.as_dict()})
        else:
            _line(f"dry run: would delete {seen.key} only while it still holds {seen.value!r}")
        return
    state_ = (
        "operator hold"
        if seen.owner_kind == "operator"
        else ("alive" if seen.alive else "not alive")
    )
    confirm(
        ctx, f"Delete {seen.key} held by {seen.owner} ({state_}), value {seen.value!r}?", yes=yes
    )
    done = run(ctx, lambda: work(False))
    assert done is not None  # not a dry run
    _release_report(done, json)


@app.command("extend")
def extend(
    ctx: typer.Context,
    name: NameArgument,
    ttl: Annotated[
        str,
        typer.Option(
            "--ttl",
            metavar="DURATION",
            help="New TTL from now: seconds, or 90s, 10m, 1h (max 24h).",
        ),
    ],
    token: TokenOption = None,
    dry_run: DryRunOption = False,
    json: JsonOption = False,
) -> None:
    """Reset a lock's TTL, only while it holds your token (compare-and-PEXPIRE in Lua);
    without --token, only while its owner is you and you took it (as for release). Audited.

    \b
    Examples:
      echoes-ops locks extend spawn_manager --ttl 30m --token 'operator.alice#3f9c...'
      echoes-ops locks extend spawn_manager --ttl 600
    """
    from echoes_ops.operations.writes import CLI, extend_lock_audited

    async def work() -> ExtendResult:
        async with write_log(ctx) as log:
            return await extend_lock_audited(
                log, name, ttl=ttl, token=token, via=CLI, dry_run=dry_run
            )

    result = run(ctx, work)
    if json:
        emit_json(result.as_dict())
        return
    verb = "dry run: would set" if result.dry_run else "set"
    _line(f"{verb} {result.key} TTL to {fmt.ttl_ms(result.ttl_ms)}; compared {result.compared}")
