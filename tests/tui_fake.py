"""A deterministic in-memory dashboard source: a fixed dataset and a fixed clock, so the
snapshot tests render the same screen on every run. It implements the same interface as
``echoes_ops.tui.source.RedisSource``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from echoes_ops.contract import envelopes
from echoes_ops.errors import NotFoundError, RefusedError
from echoes_ops.operations.audit import AuditRecord
from echoes_ops.operations.broadcast import Audience, BroadcastResult
from echoes_ops.operations.drilldown import InventoryPreview, WorkerDetail, WorkerPlayer
from echoes_ops.operations.flags import FlagStatus, SetResult, SourceValue, WorkerFlagView
from echoes_ops.operations.latency import LatencyEvent, LatencyReport, RoundTrip, SlowEntry
from echoes_ops.operations.locations import LocationCount, LocationDetail, LocationList, Member
from echoes_ops.operations.locks import HoldResult, LockInfo, ReleaseResult
from echoes_ops.operations.overview import ServerCounters, TierSummary, WriteAccess
from echoes_ops.operations.reach import Reach
from echoes_ops.operations.sessions import KickResult, SessionDetail, SessionPage, SessionSummary
from echoes_ops.operations.tail import TailEvent, to_message
from echoes_ops.operations.tiermap import WorkerLiveness
from echoes_ops.tui.model import BroadcastDraft, BroadcastPlan, DriftView, Snapshot, TierView
from echoes_ops.tui.source import AuditView, SessionView

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC

LOCATIONS = [
    ("overpass", "Overpass", 41),
    ("gas_station", "Gas Station", 27),
    ("ruins", "Old Ruins", 19),
    ("bunker", "Bunker", 8),
    ("farmhouse", "Farmhouse", 3),
    ("library", "Library", 1),
]
NAMES = ["Ash", "Cinder", "Flint", "Moss", "Quill", "Rook", "Sable", "Tarn"]


def counters(step: int = 0) -> ServerCounters:
    return ServerCounters(
        at=NOW + 2 * step,
        run_id="run-1",
        version="7.2.4",
        mode="standalone",
        role="master",
        uptime_s=86_400 + 2 * step,
        used_memory=536_870_912,
        maxmemory=2_147_483_648,
        maxmemory_policy="allkeys-lru",
        connected_clients=42,
        keys=2_345,
        keyspace_hits=1_000_000 + 990 * step,
        keyspace_misses=5_000 + 10 * step,
        evicted_keys=0,
        expired_keys=100 + step,
        commands=50_000_000 + 6000 * step + 1500 * (step % 3),
        publishes=2_000_000 + 400 * step + 100 * (step % 4),
        pubsub_channels=1_100,
        pubsub_patterns=4,
    )


def worker(wid: str, alive: bool, conns: int) -> WorkerLiveness:
    meta = {
        "mode": "redis",
        "heartbeat": f"{NOW - 2:.3f}",
        "version": "0.1.0",
        "host": "api-" + wid[-1],
    }
    return WorkerLiveness(wid, meta if alive else {}, 12 if alive else -2, alive, conns)


def session_summary(cid: int) -> SessionSummary:
    loc, name, _ = LOCATIONS[cid % len(LOCATIONS)]
    return SessionSummary(
        character_id=cid,
        username=f"{NAMES[cid % len(NAMES)]}{cid}",
        location_id=loc,
        location_name=name,
        worker_id=f"w-api-{1 + cid % 2}",
        hp=80 + cid % 20,
        max_hp=100,
        stamina=40,
        max_stamina=50,
        level=1 + cid % 30,
        ttl=1700 + cid,
        heartbeat_age=float(cid % 9),
        stale=False,
    )


class FakeSource:
    """Same methods as RedisSource; writes are recorded in ``calls``."""

    def __init__(
        self,
        *,
        read_only: bool = False,
        postgres: bool = True,
        environment: str | None = "prod",
        env_file: str | None = None,
    ) -> None:
        self.env_file = env_file
        self.display = "redis://redis.example:6379/0"
        self.environment = environment
        self.operator = "alice"
        self.postgres = postgres
        self.read_only = read_only
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self.warnings: list[str] = []

    def clock(self) -> float:
        return NOW

    def take_warnings(self) -> list[str]:
        out, self.warnings = self.warnings, []
        return out

    async def open(self) -> WriteAccess:
        return WriteAccess(True, "default", "ACL user 'default' may make every write")

    async def close(self) -> None:
        return None

    async def snapshot(self) -> Snapshot:
        locs = [LocationCount(i, n, p) for i, n, p in LOCATIONS]
        return Snapshot(
            taken_at=NOW,
            counters=counters(),
            gamedata={"content_hash": "3f2a9c1b7e4d5a6b8c9d0e1f"},
            flag=self.flag_reading(),
            workers=[
                worker("w-api-1", True, 52),
                worker("w-api-2", True, 47),
                worker("w-api-3", False, 5),
            ],
            locations=LocationList(locs, sum(p for _, _, p in LOCATIONS), len(locs)),
            locks=self.locks(),
        )

    def locks(self) -> list[LockInfo]:
        return [
            LockInfo(
                "maintenance",
                "lock:maintenance",
                "operator.alice#9f2c",
                "operator.alice",
                "operator",
                True,
                1_500_000,
                None,
                "operator hold (counts as live)",
                {"reason": "db migration", "operator": "alice", "at": f"{NOW - 60:.3f}"},
            ),
            LockInfo(
                "spawn_manager",
                "lock:spawn_manager",
                "w-api-3#1a2b",
                "w-api-3",
                "worker",
                True,
                25_000,
                False,
                "no client named w-api-3 is connected",
                None,
            ),
        ]

    async def tier(self) -> TierView:
        return TierView(TierSummary(99, 3, 0, 99, 6, 2, 2345, 120.0, 0.2), NOW)

    async def drift(self) -> DriftView:
        counts = dict.fromkeys(
            ("orphan_member", "location_mismatch", "missing_member", "dead_worker"), 0
        )
        counts["orphan_member"] = 2
        return DriftView(counts, NOW, 0.3)

    async def session_page(self, query: str, cursor: str) -> SessionPage:
        rows = [session_summary(cid) for cid in range(1, 13)]
        if query:
            rows = [
                r
                for r in rows
                if query.casefold() in (r.username or "").casefold() or query == str(r.character_id)
            ]
        return SessionPage(rows, "0" if query else "1536", 96)

    async def session_detail(self, character_id: int) -> SessionView:
        s = session_summary(character_id)
        fields = {
            "username": s.username or "",
            "location_id": s.location_id or "",
            "hp": str(s.hp),
            "level": str(s.level),
        }
        detail = SessionDetail(s, fields, [], 3, 540, [s.location_id or ""], True)
        rows = [
            {"item_id": "rusty_knife", "quantity": 1, "is_equipped": True},
            {"item_id": "bandage", "quantity": 4, "is_equipped": False},
        ]
        return SessionView(detail, InventoryPreview(character_id, 3, 540, rows))

    async def location_detail(self, location_id: str) -> LocationDetail:
        members = [
            Member(cid, f"{NAMES[cid % 8]}{cid}", "w-api-1", 5, 90, 1.0, location_id, True)
            for cid in (6, 12, 18)
        ]
        members.append(Member(99, None, None, None, None, None, None, False))
        return LocationDetail(
            location_id, dict((i, n) for i, n, _ in LOCATIONS).get(location_id), members
        )

    async def worker_detail(self, worker_id: str) -> WorkerDetail:
        players = [
            WorkerPlayer(cid, f"{NAMES[cid % 8]}{cid}", "overpass", True, cid != 5)
            for cid in (1, 3, 5)
        ]
        return WorkerDetail(worker(worker_id, worker_id != "w-api-3", 3), players, False)

    async def lock_detail(self, name: str) -> LockInfo:
        for info in self.locks():
            if info.name == name:
                return info
        raise NotFoundError(f"no lock lock:{name} (not held, or expired)")

    async def flag_status(self) -> FlagStatus:
        return self.flag_reading()

    def flag_reading(self) -> FlagStatus:
        pg = (
            SourceValue(
                "postgresql", "set", "true", "true", "set by alice: Redis back", "1799999000000000"
            )
            if self.postgres
            else SourceValue("postgresql", "not configured", None, None, "DATABASE_URL is not set")
        )
        sources = [
            pg,
            SourceValue(
                "env_file",
                "not configured",
                None,
                None,
                "no env file (--env-file or ECHOES_OPS_ENV_FILE)",
            ),
            SourceValue(
                "redis", "set", "true", "true", "echoes:flags (set by alice)", "1799999000000000"
            ),
        ]
        expected = "true" if self.postgres else None
        workers = [
            WorkerFlagView(
                "w-api-1",
                "redis",
                "true",
                "1799999000000000",
                "postgresql",
                self.postgres or None,
                2.0,
            ),
            WorkerFlagView(
                "w-api-2",
                "redis",
                "true",
                "1799999000000000",
                "postgresql",
                self.postgres or None,
                2.0,
            ),
        ]
        return FlagStatus("REDIS_ENABLED", expected, sources, workers, True)

    async def audit(self, limit: int) -> AuditView:
        records = [
            AuditRecord(
                NOW - 30,
                "alice",
                "locks.hold",
                {"name": "maintenance", "ttl": 1800.0, "via": "dashboard"},
                False,
                "ok",
                host="ops-1",
                id="3",
            ),
            AuditRecord(
                NOW - 90,
                "bob",
                "sessions.kick",
                {"id": 77, "reason": "stuck"},
                False,
                "ok",
                host="ops-2",
                id="2",
            ),
            AuditRecord(
                NOW - 300,
                "bob",
                "preload",
                {"gamedata": "gamedata"},
                True,
                "failed",
                {"error": "boom"},
                host="ops-2",
                id="1",
            ),
        ]
        source = "postgresql" if self.postgres else "redis"
        note = "" if self.postgres else "PostgreSQL not configured: the Redis stream's records"
        return AuditView(source, records, note)

    async def latency(self, samples: int) -> LatencyReport:
        return LatencyReport(
            taken_at=NOW,
            slowlog=[
                SlowEntry(
                    12,
                    NOW - 40,
                    18_400,
                    "EVALSHA",
                    "player:17:session",
                    9,
                    "script:sessions",
                    "10.0.0.7:51234",
                    "w1",
                    worker=True,
                ),
                SlowEntry(
                    11,
                    NOW - 95,
                    2_150,
                    "SCAN",
                    None,
                    3,
                    "server",
                    "10.0.0.9:40100",
                    "",
                    worker=False,
                ),
            ],
            slowlog_len=12,
            slower_than_us=1000,
            slowlog_max_len=128,
            monitor_threshold_ms=5,
            events=[LatencyEvent("command", NOW - 40, 18, 31, [(NOW - 400, 31), (NOW - 40, 18)])],
            round_trip=RoundTrip(samples, 0.11, 0.19, 0.52, 0.61),
        )

    def tail(self, on_status: Callable[[str], None]) -> AsyncIterator[TailEvent]:
        async def events() -> AsyncIterator[TailEvent]:
            on_status("listening on game:broadcast, game:workers, location:*, player:*")
            for i, (channel, body) in enumerate(TAIL):
                yield to_message(channel, json.dumps(body), received_at=NOW + i)
            await asyncio.Event().wait()

        return events()

    # -- writes ------------------------------------------------------------------------------

    def _write(self, name: str, *args: object) -> None:
        if self.read_only:
            raise RefusedError(f"read-only dashboard: {name} refused, nothing changed")
        self.calls.append((name, args))

    async def kick(self, character_id: int, reason: str) -> KickResult:
        self._write("kick", character_id, reason)
        return KickResult(character_id, False, True, ["overpass"], "w-api-1", 1)

    async def hold_lock(self, name: str, ttl: str, reason: str) -> HoldResult:
        self._write("hold_lock", name, ttl, reason)
        return HoldResult(
            name, f"lock:{name}", "operator.alice#1", "operator.alice", int(ttl * 1000), reason
        )

    async def release_lock(self, name: str) -> ReleaseResult:
        self._write("release_lock", name)
        return ReleaseResult(
            name, f"lock:{name}", True, "value", "operator.alice#9f2c", "operator.alice"
        )

    async def force_release_lock(self, name: str, seen_value: str, reason: str) -> ReleaseResult:
        self._write("force_release_lock", name, seen_value, reason)
        return ReleaseResult(name, f"lock:{name}", True, "seen", seen_value, "w-api-3", forced=True)

    async def preview_broadcast(self, draft: BroadcastDraft) -> BroadcastPlan:
        payload = {"type": "server_announcement", "data": {"message": draft.message}}
        envelope = envelopes.global_broadcast(
            payload, stamp=False, msg_id="00000000000000000000000000000001"
        )
        result = BroadcastResult(
            "global", envelope.channel, envelope.to_dict(), envelope.to_json(), True, Audience(3, 4)
        )
        result.reach = Reach(1000, 1012)
        return BroadcastPlan(draft, envelope, result)

    async def send_broadcast(self, plan: BroadcastPlan) -> BroadcastResult:
        self._write("send_broadcast", plan.draft)
        p = plan.preview
        return BroadcastResult(
            p.kind, p.channel, p.envelope, p.text, False, p.audience, 3, reach=p.reach
        )

    async def set_flag(self, value: str, reason: str) -> SetResult:
        self._write("set_flag", value, reason)
        return SetResult("REDIS_ENABLED", value, "true", False, reason, "alice")


TAIL = [
    (
        "game:broadcast",
        {
            "type": "global_broadcast",
            "payload": {"type": "server_announcement", "data": {"message": "Restart in 5 minutes"}},
        },
    ),
    (
        "location:overpass",
        {
            "type": "location_update",
            "location_id": "overpass",
            "exclude_player_id": 6,
            "payload": {"type": "player_moved", "data": {"message": "Ash6 arrives"}},
        },
    ),
    (
        "player:12",
        {
            "type": "personal_message",
            "player_id": 12,
            "payload": {"type": "combat_update", "data": {"message": "You hit the raider for 7"}},
        },
    ),
    ("game:workers", {"type": "worker_join", "worker_id": "w-api-2"}),
    (
        "location:ruins",
        {
            "type": "location_update",
            "location_id": "ruins",
            "exclude_player_id": None,
            "payload": {"type": "npc_spawned", "data": {"message": "A scavenger appears"}},
        },
    ),
]
