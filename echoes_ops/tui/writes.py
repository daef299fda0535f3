"""The dashboard's writes: the audited writes of :mod:`echoes_ops.operations.writes`, the
same functions the CLI calls, with ``via="dashboard"``; refused when read-only."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from echoes_ops.client.live import translated
from echoes_ops.contract import flags as flag_contract
from echoes_ops.contract.envelopes import Envelope
from echoes_ops.errors import PostgresError
from echoes_ops.operations import broadcast as bc
from echoes_ops.operations import writes
from echoes_ops.operations.audit import AuditLog
from echoes_ops.operations.broadcast import BroadcastResult
from echoes_ops.operations.flags import SetResult
from echoes_ops.operations.locks import HoldResult, ReleaseResult
from echoes_ops.operations.sessions import KickResult
from echoes_ops.tui.model import BroadcastDraft, BroadcastPlan
from echoes_ops.tui.source_base import SourceBase

KINDS = ("global", "location", "player")
VIA = writes.DASHBOARD


class WriteActions(SourceBase):
    @asynccontextmanager
    async def write_log(self) -> AsyncIterator[AuditLog]:
        """The audit log of one write: this source's Redis connection, PostgreSQL when
        configured; Redis errors translated, sink warnings kept for the app to show."""
        log = AuditLog(
            operator=self.operator,
            redis=self.redis(),
            database_url=self.dsn,
            pg_timeouts=self.settings.pg_timeouts(),
        )
        try:
            with translated(self.display):
                yield log
        finally:
            self.warnings += log.warnings

    async def kick(self, character_id: int, reason: str) -> KickResult:
        self.check_writable("kick")
        async with self.write_log() as log:
            return await writes.kick_audited(
                log, character_id, reason=reason, via=VIA, mode=self.settings.pubsub_mode
            )

    async def hold_lock(self, name: str, ttl: str, reason: str) -> HoldResult:
        """Hold ``name`` for ``ttl``, a duration as ``locks hold --ttl`` takes it."""
        self.check_writable("lock hold")
        async with self.write_log() as log:
            held = await writes.hold_lock_audited(log, name, ttl=ttl, reason=reason, via=VIA)
        if self.known_locks is not None:
            self.known_locks.add(held.name)
        return held

    async def release_lock(self, name: str) -> ReleaseResult:
        self.check_writable("lock release")
        async with self.write_log() as log:
            return await writes.release_lock_audited(log, name, token=None, via=VIA)

    async def force_release_lock(self, name: str, seen_value: str, reason: str) -> ReleaseResult:
        """Delete the lock only while it still holds the value the operator confirmed; the
        operator confirmed after seeing the owner's liveness, so a live owner is broken
        too (as ``locks release --force --even-if-alive``)."""
        self.check_writable("force release")
        async with self.write_log() as log:
            done = await writes.force_release_audited(
                log, name, seen_value=seen_value, even_if_alive=True, reason=reason, via=VIA
            )
        assert done is not None  # not a dry run
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
        target: str | int | None = None
        if draft.kind == "location":
            target = draft.target.strip()
        elif draft.kind == "player":
            target = int(draft.target.strip())
        request = writes.BroadcastRequest(draft.kind, draft.message, target=target)
        envelope = dataclasses.replace(plan.envelope, sent_at=time.time())
        async with self.write_log() as log:
            return await writes.broadcast_audited(
                log, request, envelope, via=VIA, dry_run=False, mode=self.settings.pubsub_mode
            )

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
        from echoes_ops.operations.flags import FlagsAuditLog, LazyRedis

        async with LazyRedis(self.target) as lazy:
            log = FlagsAuditLog(operator=self.operator, database_url=self.dsn, lazy=lazy)
            try:
                result = await writes.set_flag_audited(
                    log,
                    self.dsn,
                    flag_contract.REDIS_ENABLED,
                    value,
                    reason=reason,
                    env_file=self.env_file,
                    via=VIA,
                    timeouts=self.settings.flag_timeouts(),
                )
            finally:
                self.warnings += log.warnings
        self.warnings += [f"{t.target} {t.status}: {t.detail}" for t in result.warnings]
        return result
