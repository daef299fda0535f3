"""The domain metrics as Prometheus families (names under ``echoes_redis_``, base units,
``_total`` for counters). Labels stay bounded: flag sources, worker modes, drift kinds,
lock states, warmup results; the one per-object label is ``worker`` on
``worker_mode``, one series per *live* worker (a fleet's size, not its history)."""

from __future__ import annotations

from typing import Final

from echoes_ops.contract import flags as flag_contract
from echoes_ops.operations.metrics.domain import (
    WARMUP_RESULTS,
    DomainSnapshot,
    DriftReading,
)
from echoes_ops.operations.stats.prometheus import Exposition

GAUGE: Final = "gauge"
FLAG_SOURCES: Final = ("postgresql", "env_file", "redis")
UNKNOWN_MODE: Final = "unknown"


def domain_exposition(d: DomainSnapshot) -> Exposition:
    out = Exposition()
    out.metric(
        "up",
        GAUGE,
        "1 when the last reading reached Redis (the tier metrics below are then current).",
        1 if d.redis_up else 0,
    )
    out.metric(
        "domain_timestamp_seconds",
        GAUGE,
        "When the domain metrics were read (epoch seconds, this host's clock).",
        d.taken_at,
    )
    out.metric(
        "domain_duration_seconds", GAUGE, "How long reading the domain metrics took.", d.elapsed_s
    )
    _tier(out, d)
    _flags(out, d)
    _gamedata(out, d)
    _warmup(out, d)
    if d.audit_unsynced is not None:
        out.metric(
            "audit_unsynced_records",
            GAUGE,
            "Audit records that fell back to the Redis stream alone (PostgreSQL did not take "
            "them) and wait to be copied in by the next audited command or `echoes-ops audit`.",
            d.audit_unsynced,
        )
    return out


def _tier(out: Exposition, d: DomainSnapshot) -> None:
    t = d.tier
    if t is None:
        return
    out.metric(
        "players_online",
        GAUGE,
        "Players in a location's presence set (status: presence players).",
        t.players_in_locations,
    )
    out.metric(
        "locations_with_players",
        GAUGE,
        "Locations with at least one player in their presence set.",
        t.locations_with_players,
    )
    out.metric("sessions", GAUGE, "Player sessions (player:<id>:session).", t.sessions)
    out.metric(
        "sessions_stale",
        GAUGE,
        f"Sessions whose heartbeat is older than {t.stale_after:g} s.",
        t.stale_sessions,
    )
    out.metric(
        "sessions_unknown_heartbeat",
        GAUGE,
        "Sessions whose heartbeat is missing or not epoch seconds (never judged stale).",
        t.unknown_heartbeat,
    )
    if d.workers is not None:
        alive = sum(1 for w in d.workers.values() if w.alive)
        out.metric("workers_alive", GAUGE, "Workers with a connected client.", alive)
        out.metric(
            "workers_dead",
            GAUGE,
            "Workers with keys left but no connected client (cleanup: workers cleanup).",
            len(d.workers) - alive,
        )
    if d.locks is not None:
        out.metric("locks_held", GAUGE, "lock:<name> keys.", d.locks.held)
        out.metric(
            "locks_without_ttl", GAUGE, "Locks that never expire (no TTL).", d.locks.without_ttl
        )
        out.metric(
            "locks_dead_owner",
            GAUGE,
            "Locks whose owner is a worker that is not alive.",
            d.locks.dead_owner,
        )


def _flags(out: Exposition, d: DomainSnapshot) -> None:
    f = d.flags
    flag = flag_contract.REDIS_ENABLED
    values = []
    for s in f.sources:
        parsed = flag_contract.as_bool(s.effective) if s.effective is not None else None
        if parsed is not None:
            values.append(({"flag": flag, "source": s.source}, 1 if parsed else 0))
    out.metric(
        "flag_enabled",
        GAUGE,
        "A boolean flag's effective value per source (1 true, 0 false; PostgreSQL is the "
        "truth, the env file serves restarts, redis is the mirror). A source that cannot be "
        "read has no sample.",
        values,
    )
    out.metric(
        "flag_source_readable",
        GAUGE,
        "1 when the source could be read (set or unset), 0 when not configured, "
        "unreachable or broken.",
        [
            ({"flag": flag, "source": s.source}, 1 if s.state in ("set", "unset") else 0)
            for s in f.sources
        ],
    )
    out.metric(
        "flag_sources_agree",
        GAUGE,
        "1 when every readable source gives the flag the same value (flags status: sources agree).",
        [({"flag": flag}, 1 if f.agree else 0)],
    )
    if not f.redis_reachable:
        return
    modes: dict[str, int] = {}
    for w in f.workers:
        mode = w.mode or UNKNOWN_MODE
        modes[mode] = modes.get(mode, 0) + 1
    out.metric(
        "workers_by_mode",
        GAUGE,
        "Live workers by the mode they report (redis, fallback, unknown).",
        [({"mode": mode}, n) for mode, n in sorted(modes.items())],
    )
    out.metric(
        "worker_mode",
        GAUGE,
        "Each live worker's reported mode (always 1; one series per live worker).",
        [({"worker": w.worker_id, "mode": w.mode or UNKNOWN_MODE}, 1) for w in f.workers],
    )
    out.metric(
        "workers_not_applied",
        GAUGE,
        "Live workers that have not applied PostgreSQL's REDIS_ENABLED value.",
        [({"flag": flag}, len(f.stale_workers))],
    )


def _gamedata(out: Exposition, d: DomainSnapshot) -> None:
    loaded = (d.gamedata_loaded or {}).get("content_hash") if d.tier is not None else None
    disk = d.gamedata_disk
    if disk is None and d.tier is None:
        return
    labels = {
        "loaded": loaded or "none",
        "disk": (disk.version or "invalid") if disk is not None else "not configured",
    }
    out.metric(
        "gamedata_version_info",
        GAUGE,
        "Gamedata content hash loaded in Redis and of the gamedata folder on disk (always 1; "
        "'none' = no version record, 'invalid' = the folder does not validate).",
        [(labels, 1)],
    )
    if loaded is not None and disk is not None and disk.version is not None:
        out.metric(
            "gamedata_current",
            GAUGE,
            "1 when the loaded gamedata is the folder's (else run: echoes-ops preload).",
            1 if loaded == disk.version else 0,
        )


def _warmup(out: Exposition, d: DomainSnapshot) -> None:
    w = d.warmup
    if w is None or w.last_at is None:
        return
    out.metric(
        "warmup_last_run_timestamp_seconds",
        GAUGE,
        "When the last warmup (not a dry run) started, from the audit trail.",
        w.last_at,
    )
    out.metric(
        "warmup_last_result",
        GAUGE,
        "The last warmup's result (1 for the current one): ok, partial (stopped by "
        "--max-seconds), failed, interrupted.",
        [({"result": result}, 1 if result == w.last_result else 0) for result in WARMUP_RESULTS],
    )
    if w.last_elapsed_s is not None:
        out.metric(
            "warmup_last_duration_seconds",
            GAUGE,
            "How long the last warmup ran.",
            w.last_elapsed_s,
        )
    if w.last_ok_at is not None:
        out.metric(
            "warmup_last_success_timestamp_seconds",
            GAUGE,
            "When the last complete successful warmup started.",
            w.last_ok_at,
        )


def drift_exposition(drift: DriftReading | None) -> Exposition:
    out = Exposition()
    if drift is None:
        return out
    out.metric(
        "drift_last_run_timestamp_seconds",
        GAUGE,
        "When reconcile's drift detector last ran (dry run).",
        drift.taken_at,
    )
    out.metric(
        "drift_duration_seconds", GAUGE, "How long the last drift detection took.", drift.elapsed_s
    )
    out.metric(
        "drift_detector_up",
        GAUGE,
        "1 when the last drift detection ran to the end.",
        0 if drift.error else 1,
    )
    if drift.error is None:
        out.metric(
            "drift",
            GAUGE,
            "Drift found by kind (reconcile's kinds; no_ttl_session = sessions without TTL).",
            [({"kind": kind}, n) for kind, n in drift.kinds.items()],
        )
        out.metric(
            "sessions_without_ttl",
            GAUGE,
            "Sessions that never expire (reconcile kind no_ttl_session).",
            drift.kinds.get("no_ttl_session", 0),
        )
    return out
