"""Audited writes: every operator write, built once for both faces.

The CLI and the dashboard call the same function here with their own ``via`` (``"cli"``,
``"dashboard"``); the function checks the input, runs the operation and writes the audit
record, so the two faces' records are identical but for ``via``. Each function takes an
:class:`~echoes_ops.operations.audit.AuditLog` whose Redis connection is the one it writes
with (``log.client()``): when the face could not connect, the failure is raised inside the
audited block, so it is recorded (in PostgreSQL, the sink left) like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from echoes_ops.config import PgTimeouts
from echoes_ops.contract import flags as flag_contract
from echoes_ops.contract.envelopes import Envelope
from echoes_ops.contract.pubsub import DEFAULT_MODE, PubSubMode
from echoes_ops.errors import ExitCode, OpsError
from echoes_ops.operations import broadcast as bc
from echoes_ops.operations import locks
from echoes_ops.operations.audit import AuditLog, audited
from echoes_ops.operations.broadcast import BroadcastResult, CountdownResult, Step
from echoes_ops.operations.flags import FlagsAuditLog, SetResult, set_flag
from echoes_ops.operations.locks import ExtendResult, HoldResult, LockArgumentError, ReleaseResult
from echoes_ops.operations.reconcile import DriftPlan, ReconcileReport, repair
from echoes_ops.operations.sessions import KickResult, kick
from echoes_ops.operations.stop import StopToken
from echoes_ops.operations.workers import CleanupResult, cleanup_worker

CLI = "cli"
DASHBOARD = "dashboard"


def _with_via(args: dict[str, Any], via: str) -> dict[str, Any]:
    return {**args, "via": via}


def lock_ttl(text: str) -> float:
    """A hold or extend duration as the CLI's ``--ttl`` takes it (``600``, ``90s``, ``30m``,
    ``1h30m``): the one parser both faces use."""
    try:
        return bc.parse_duration(text)
    except OpsError as exc:
        raise LockArgumentError(f"--ttl: {exc}") from None


# -- sessions and workers -------------------------------------------------------------------


async def kick_audited(
    log: AuditLog,
    character_id: int,
    *,
    reason: str,
    via: str,
    mode: PubSubMode = DEFAULT_MODE,
) -> KickResult:
    args = {"id": character_id, "reason": reason}
    async with audited(log, "sessions.kick", _with_via(args, via), dry_run=False) as entry:
        done = await kick(log.client(), character_id, reason=reason, mode=mode)
        entry.detail = done.as_dict()
        return done


async def cleanup_worker_audited(
    log: AuditLog, worker_id: str, *, force: bool, via: str
) -> CleanupResult:
    args = {"worker_id": worker_id, "force": force}
    async with audited(log, "workers.cleanup", _with_via(args, via), dry_run=False) as entry:
        done = await cleanup_worker(log.client(), worker_id, force=force)
        entry.detail = done.as_dict()
        return done


# -- locks ------------------------------------------------------------------------------------


async def hold_lock_audited(
    log: AuditLog, name: str, *, ttl: str, reason: str, via: str, dry_run: bool = False
) -> HoldResult:
    """Hold ``name`` for ``ttl`` (a duration as the CLI takes it) as operator.<operator>."""
    args = {"name": name, "ttl": ttl, "reason": reason}
    async with audited(log, "locks.hold", _with_via(args, via), dry_run=dry_run) as entry:
        seconds = lock_ttl(ttl)
        held = await locks.hold(
            log.client(),
            name,
            operator=log.operator,
            ttl=seconds,
            reason=reason,
            dry_run=dry_run,
            who=await log.who(),
        )
        entry.detail = {"owner": held.owner, "value": held.token, "ttl_ms": held.ttl_ms}
        return held


def _release_detail(done: ReleaseResult) -> dict[str, Any]:
    detail: dict[str, Any] = {"released": done.released, "value": done.value, "owner": done.owner}
    if done.note:
        detail["note"] = done.note
    return detail


async def release_lock_audited(
    log: AuditLog, name: str, *, token: str | None, via: str, dry_run: bool = False
) -> ReleaseResult:
    """Release a lock you hold (``token``, or the current value when its owner is you)."""
    args = {"name": name, "token": token, "force": False, "even_if_alive": False}
    async with audited(log, "locks.release", _with_via(args, via), dry_run=dry_run) as entry:
        done = await locks.release(
            log.client(),
            name,
            operator=log.operator,
            who=await log.who(),
            token=token,
            dry_run=dry_run,
        )
        entry.detail = _release_detail(done)
        return done


def force_release_args(
    name: str, *, seen_value: str | None, even_if_alive: bool, reason: str | None
) -> dict[str, Any]:
    return {
        "name": name,
        "token": None,
        "force": True,
        "even_if_alive": even_if_alive,
        "seen": seen_value,
        "reason": reason,
    }


async def force_release_audited(
    log: AuditLog,
    name: str,
    *,
    seen_value: str,
    even_if_alive: bool,
    reason: str | None,
    via: str,
    dry_run: bool = False,
) -> ReleaseResult | None:
    """Delete the lock only while it still holds ``seen_value`` (what the operator was
    shown and confirmed). A dry run records the intent and returns None."""
    args = force_release_args(
        name, seen_value=seen_value, even_if_alive=even_if_alive, reason=reason
    )
    async with audited(log, "locks.release.force", _with_via(args, via), dry_run=dry_run) as entry:
        if dry_run:
            return None
        done = await locks.force_release(
            log.client(), name, seen_value=seen_value, even_if_alive=even_if_alive
        )
        entry.detail = _release_detail(done)
        return done


async def extend_lock_audited(
    log: AuditLog, name: str, *, ttl: str, token: str | None, via: str, dry_run: bool = False
) -> ExtendResult:
    args = {"name": name, "ttl": ttl, "token": token}
    async with audited(log, "locks.extend", _with_via(args, via), dry_run=dry_run) as entry:
        seconds = lock_ttl(ttl)
        done = await locks.extend(
            log.client(),
            name,
            ttl=seconds,
            operator=log.operator,
            who=await log.who(),
            token=token,
            dry_run=dry_run,
        )
        entry.detail = {"value": done.value, "ttl_ms": done.ttl_ms}
        return done


# -- broadcasts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BroadcastRequest:
    """What the operator asked for; its :meth:`args` are the audit record's arguments."""

    kind: str  # global, location, player
    message: str
    target: str | int | None = None  # location id or character id
    exclude: int | None = None
    action: str = "announcement"  # a location update's data.action
    type: str = "system_message"  # a personal message's payload type
    data: str | None = None  # a personal message's extra data (JSON text)
    within: str | None = None  # a global countdown
    every: str | None = None

    @property
    def action_name(self) -> str:
        return f"broadcast.{self.kind}"

    def args(self) -> dict[str, Any]:
        if self.kind == "global":
            return {"message": self.message, "in": self.within, "every": self.every}
        if self.kind == "location":
            return {
                "location": self.target,
                "message": self.message,
                "exclude": self.exclude,
                "action": self.action,
            }
        return {"id": self.target, "message": self.message, "type": self.type, "data": self.data}


async def broadcast_audited(
    log: AuditLog,
    request: BroadcastRequest,
    envelope: Envelope,
    *,
    via: str,
    dry_run: bool,
    mode: PubSubMode = DEFAULT_MODE,
) -> BroadcastResult:
    """Publish ``envelope`` (or count its audience, in a dry run); a location broadcast's
    location is checked against the static cache first."""
    args = _with_via(request.args(), via)
    async with audited(log, request.action_name, args, dry_run=dry_run) as entry:
        r = log.client()
        if request.kind == "location":
            await bc.check_location(r, str(request.target))
        result = await bc.send(r, request.kind, envelope, dry_run=dry_run, mode=mode)
        entry.detail = {
            "channel": result.channel,
            "msg_id": result.envelope.get("msg_id"),
            "subscribers": result.audience.channel_subscribers,
            "receivers": result.receivers,
        }
        return result


async def countdown_audited(
    log: AuditLog,
    request: BroadcastRequest,
    steps: list[Step],
    *,
    via: str,
    on_step: Callable[[Step, BroadcastResult], None] | None = None,
) -> CountdownResult:
    """A global countdown; an interrupted one is recorded with the steps that went out."""
    args = _with_via(request.args(), via)
    async with audited(log, request.action_name, args, dry_run=False) as entry:
        sent: list[dict[str, Any]] = []
        entry.detail = {"planned": len(steps), "sent": sent}

        def each(step: Step, result: BroadcastResult) -> None:
            sent.append({"message": step.message, "receivers": result.receivers})
            if on_step is not None:
                on_step(step, result)

        return await bc.countdown(log.client(), steps, on_step=each)


# -- reconcile --------------------------------------------------------------------------------


async def repair_drift_audited(
    log: AuditLog,
    plan: DriftPlan,
    *,
    kinds: list[str] | None,
    via: str,
    stop: StopToken | None = None,
) -> ReconcileReport:
    """Apply ``plan``'s repairs (only ``kinds`` when given). The record names what was
    removed or changed, per kind: the total and the first ids (capped); a stop between
    repairs is recorded as interrupted with how many ran, a failure with what ran before it."""
    args: dict[str, Any] = {"grace": plan.report.grace_seconds, "kinds": kinds}
    async with audited(log, "reconcile.fix", _with_via(args, via), dry_run=False) as entry:
        try:
            return await repair(log.client(), plan, kinds=kinds, stop=stop)
        finally:  # a failure partway is recorded with the repairs that ran before it
            entry.detail = plan.report.audit_detail()


# -- flags ------------------------------------------------------------------------------------


class FlagPartialFailure(OpsError):
    """PostgreSQL holds the new value but another target (the env file) failed."""

    exit_code = ExitCode.PROBLEMS_FOUND

    def __init__(self, result: SetResult) -> None:
        failed = "; ".join(f"{t.target}: {t.detail}" for t in result.failed)
        super().__init__(f"{result.name}={result.value} is set in PostgreSQL, but {failed}")
        self.result = result


async def set_flag_audited(
    log: FlagsAuditLog,
    dsn: str,
    name: str,
    value: str,
    *,
    reason: str,
    env_file: str | None,
    via: str,
    dry_run: bool = False,
    timeouts: PgTimeouts | None = None,
) -> SetResult:
    """Set a flag in PostgreSQL, the env file and the Redis mirror (``log.lazy``), audited as
    flags.set. A target that failed after PostgreSQL took the value raises
    :class:`FlagPartialFailure` (recorded as failed); Redis problems are warnings."""
    spec = flag_contract.spec(name)
    canonical = spec.parse(value)
    args = {"name": spec.name, "value": canonical, "reason": reason, "env_file": env_file}
    async with audited(log, "flags.set", _with_via(args, via), dry_run=dry_run) as entry:
        result = await set_flag(
            dsn,
            spec.name,
            canonical,
            reason=reason,
            operator=log.operator,
            env_file=env_file,
            redis=log.lazy,
            dry_run=dry_run,
            **({} if timeouts is None else {"timeouts": timeouts}),
        )
        entry.detail = {
            "previous": result.previous,
            "version": result.version,
            "targets": {t.target: t.status for t in result.targets},
        }
        if result.failed:
            raise FlagPartialFailure(result)
        return result
