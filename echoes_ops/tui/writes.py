"""The dashboard's writes: the operations the CLI uses, audited the same way (action names
as the CLI's, plus ``"via": "dashboard"`` in the arguments), refused when read-only."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from echoes_ops.client.live import translated
from echoes_ops.contract import flags as flag_contract
from echoes_ops.contract.envelopes import Envelope
from echoes_ops.errors import OpsError, PostgresError
from echoes_ops.operations import broadcast as bc
from echoes_ops.operations import locks
from echoes_ops.operations.broadcast import BroadcastResult
from echoes_ops.operations.flags import SetResult
from echoes_ops.operations.locks import HoldResult, ReleaseResult
from echoes_ops.operations.sessions import KickResult
from echoes_ops.operations.sessions import kick as kick_player
from echoes_ops.tui.model import BroadcastDraft, BroadcastPlan
from echoes_ops.tui.source_base import SourceBase

KINDS = ("global", "location", "player")


class WriteActions(SourceBase):
    async def kick(self, character_id: int, reason: str) -> KickResult:
        self.check_writable("kick")
        args = {"id": character_id, "reason": reason}
        async with self.audited("sessions.kick", args) as entry:
            result = await kick_player(self.redis(), character_id, reason=reason)
            entry.detail = result.as_dict()
            return result

    async def hold_lock(self, name: str, ttl: float, reason: str) -> HoldResult:
        self.check_writable("lock hold")
        args = {"name": name, "ttl": ttl, "reason": reason}
        async with self.audited("locks.hold", args) as entry:
            held = await locks.hold(
                self.redis(), name, operator=self.operator, ttl=ttl, reason=reason
            )
            entry.detail = {"owner": held.owner, "value": held.token, "ttl_ms": held.ttl_ms}
        if self.known_locks is not None:
            self.known_locks.add(held.name)
        return held

    async def release_lock(self, name: str) -> ReleaseResult:
        self.check_writable("lock release")
        async with self.audited("locks.release", {"name": name}) as entry:
            done = await locks.release(self.redis(), name, operator=self.operator)
            entry.detail = {"released": done.released, "value": done.value, "owner": done.owner}
            return done

    async def force_release_lock(self, name: str, seen_value: str, reason: str) -> ReleaseResult:
        """Delete the lock only while it still holds the value the operator confirmed; the
        operator confirmed after seeing the owner's liveness, so a live owner is broken
        too (as ``locks release --force --even-if-alive``)."""
        self.check_writable("force release")
        args = {"name": name, "force": True, "seen": seen_value, "reason": reason}
        async with self.audited("locks.release.force", args) as entry:
            done = await locks.force_release(
                self.redis(), name, seen_value=seen_value, even_if_alive=True
            )
            entry.detail = {"released": done.released, "value": done.value, "owner": done.owner}
            if done.note:
                entry.detail["note"] = done.note
            return done

    async def preview_broadcast(self, draft: BroadcastDraft) -> BroadcastPlan:
        """Check the draft, build its envelope and count its audience (a dry run)."""
        envelope = await self._envelope(draft)
        with translated(self.display):  # writes nothing, so not audited
            preview = await bc.send(self.redis(), draft.kind, envelope, dry_run=True)
        return BroadcastPlan(draft, envelope, preview)

    async def send_broadcast(self, plan: BroadcastPlan) -> BroadcastResult:
        """Publish the previewed envelope as shown (only ``sent_at`` is stamped anew)."""
        self.check_writable("broadcast")
        draft = plan.draft
        args: dict[str, Any] = {"message": draft.message}
        if draft.kind == "location":
            args["location"] = draft.target
        elif draft.kind == "player":
            args["id"] = draft.target
        envelope = dataclasses.replace(plan.envelope, sent_at=time.time())
        async with self.audited(f"broadcast.{draft.kind}", args) as entry:
            result = await bc.send(self.redis(), draft.kind, envelope)
            entry.detail = {
                "channel": result.channel,
                "msg_id": result.envelope.get("msg_id"),
                "subscribers": result.audience.channel_subscribers,
                "receivers": result.receivers,
            }
            return result

    async def _envelope(self, draft: BroadcastDraft) -> Envelope:
        if draft.kind not in KINDS:
            raise bc.BroadcastArgumentError(f"unknown broadcast kind {draft.kind!r}")
        if draft.kind == "global":
            return bc.global_envelope(draft.message)
        if draft.kind == "location":
            with translated(self.display):
                location = await bc.check_location(self.redis(), draft.target.strip())
            return bc.location_envelope(location, draft.message)
        target = draft.target.strip()
        if not (target.isascii() and target.isdigit()):
            raise bc.BroadcastArgumentError(f"player id must be a number, got {target!r}")
        return bc.personal_envelope(int(target), draft.message)

    async def set_flag(self, value: str, reason: str) -> SetResult:
        """Flip REDIS_ENABLED as ``flags set`` does: PostgreSQL first, the env file, then the
        Redis mirror when reachable; audited as flags.set."""
        self.check_writable("flag change")
        if self.dsn is None:
            raise PostgresError(
                "flags live in PostgreSQL: DATABASE_URL is not set", hint="set DATABASE_URL"
            )
        from echoes_ops.operations.audit import audited
        from echoes_ops.operations.flags import FlagsAuditLog, LazyRedis
        from echoes_ops.operations.flags import set_flag as do_set

        name = flag_contract.REDIS_ENABLED
        args = {"name": name, "value": value, "reason": reason, "env_file": self.env_file}
        async with LazyRedis(self.target) as lazy:
            log = FlagsAuditLog(operator=self.operator, database_url=self.dsn, lazy=lazy)
            try:
                async with audited(
                    log, "flags.set", {**args, "via": "dashboard"}, dry_run=False
                ) as entry:
                    result = await do_set(
                        self.dsn,
                        name,
                        value,
                        reason=reason,
                        operator=self.operator,
                        env_file=self.env_file,
                        redis=lazy,
                        timeouts=self.settings.flag_timeouts(),
                    )
                    entry.detail = {
                        "previous": result.previous,
                        "version": result.version,
                        "targets": {t.target: t.status for t in result.targets},
                    }
            finally:
                self.warnings += log.warnings
        self.warnings += [f"{t.target} {t.status}: {t.detail}" for t in result.warnings]
        if result.failed:
            failed = ", ".join(f"{t.target}: {t.detail}" for t in result.failed)
            raise OpsError(f"flag set in PostgreSQL, but {failed}")
        return result
