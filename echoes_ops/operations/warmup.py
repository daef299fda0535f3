"""Warm the session and inventory caches from PostgreSQL, safely enough to run from cron.

1. Open PostgreSQL, start one read-only REPEATABLE READ transaction (one consistent
   snapshot for every read) and prepare the two queries (configurable:
   ``warmup_characters_query`` and ``warmup_inventory_query``); an unreachable server or a
   query that does not fit the schema fails here, before anything is written.
2. Take ``lock:echoes-ops.warmup`` (a second, overlapping run stops with exit code 8).
3. Optionally re-preload the static data, which is a no-op when gamedata is unchanged.
4. Stream the recently active characters through a server-side cursor, ``batch_size``
   rows at a time, and fetch each batch's inventories with one query (one row per
   character, its items already JSON). While one batch is encoded, the previous one is
   being written to Redis and the next one read from PostgreSQL.
5. Write each batch with the ``WARMUP_PLAYERS`` Lua script, ``script_batch`` players per
   EVALSHA (a few milliseconds of server time per call), commands packed by hiredis and
   streamed on one connection (``client.bulk``).

The script compares inside Redis, so a worker's write that lands while warmup runs is never
undone: a session whose ``last_heartbeat`` is newer than the row's last-active time is left
alone, and so is one whose heartbeat is unknown (not wall-clock epoch seconds, or missing).
A session or inventory that already holds exactly what would be written is not touched, so
a second run over unchanged data changes nothing. See docs/warmup.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from echoes_ops.client.bulk import Command, bulk
from echoes_ops.client.postgres import connect_postgres, target_of
from echoes_ops.contract import codec, keys, scripts
from echoes_ops.contract.ids import check_character_id, check_name
from echoes_ops.errors import BusyError, ConfigError, DecodeError, OpsError, PostgresError
from echoes_ops.gamedata.models import GameData
from echoes_ops.runtime import lock

WARMUP_LOCK = "echoes-ops.warmup"
# Lock TTL; the lock is extended after each batch, so a long run keeps it.
LOCK_TTL = 300.0
# PostgreSQL rows per cursor fetch (one inventory query per fetch).
BATCH_SIZE = 2000
# Players per EVALSHA call: bounds the server time of one call (a few ms).
SCRIPT_BATCH = 200
MAX_SCRIPT_BATCH = 1000
# Example ids kept per finding in the report.
EXAMPLES = 10

WHAT_CHOICES: tuple[str, ...] = ("sessions", "inventories", "static")

DEFAULT_CHARACTERS_QUERY = """\
SELECT id, name AS username, location_id, hp, max_hp, stamina, max_stamina, level, xp,
       last_movement_time, last_active_at
FROM characters
WHERE last_active_at >= now() - make_interval(mins => $1::int)"""

DEFAULT_INVENTORY_QUERY = """\
SELECT character_id, item_id, quantity, durability, is_equipped
FROM inventory
WHERE character_id = ANY($1::integer[])
ORDER BY character_id, item_id"""

# Required columns of the characters query.
ID_COLUMN = "id"
STAMP_COLUMN = "last_active_at"
INVENTORY_OWNER_COLUMN = "character_id"

Encoder = Callable[[Any], str]
Progress = Callable[[int], None]


# -- report -------------------------------------------------------------------------------


@dataclass
class SessionCounts:
    written: int = 0
    unchanged: int = 0
    skipped_fresher: int = 0
    skipped_unknown: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "written": self.written,
            "unchanged": self.unchanged,
            "skipped_fresher": self.skipped_fresher,
            "skipped_unknown": self.skipped_unknown,
        }


@dataclass
class InventoryCounts:
    written: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped_fresher: int = 0
    skipped_unknown: int = 0
    rows: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "written": self.written,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "skipped_fresher": self.skipped_fresher,
            "skipped_unknown": self.skipped_unknown,
            "rows": self.rows,
        }


@dataclass
class WarmupReport:
    """What a warmup did (or, with ``dry_run``, would do)."""

    dry_run: bool
    what: list[str]
    active_within_minutes: int
    started_at: float
    max_seconds: float | None = None
    elapsed_s: float = 0.0
    partial: bool = False
    stopped_because: str | None = None  # "max_seconds" or "lock_lost" when partial
    characters: int = 0
    invalid: int = 0
    sessions: SessionCounts = field(default_factory=SessionCounts)
    inventories: InventoryCounts = field(default_factory=InventoryCounts)
    static: dict[str, Any] | None = None
    batches: int = 0
    script_calls: int = 0
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.characters / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def changed(self) -> int:
        """Keys written or removed (what a dry run would write)."""
        return self.sessions.written + self.inventories.written + self.inventories.removed

    def example(self, kind: str, item: dict[str, Any]) -> None:
        bucket = self.examples.setdefault(kind, [])
        if len(bucket) < EXAMPLES:
            bucket.append(item)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "what": self.what,
            "active_within_minutes": self.active_within_minutes,
            "started_at": round(self.started_at, 3),
            "elapsed_s": round(self.elapsed_s, 3),
            "max_seconds": self.max_seconds,
            "partial": self.partial,
            "stopped_because": self.stopped_because,
            "characters": self.characters,
            "rows_per_s": round(self.rows_per_s),
            "invalid": self.invalid,
            "sessions": self.sessions.as_dict() if "sessions" in self.what else None,
            "inventories": self.inventories.as_dict() if "inventories" in self.what else None,
            "static": self.static,
            "batches": self.batches,
            "script_calls": self.script_calls,
            "examples": self.examples,
            "ignored_columns": self.ignored_columns,
        }


# -- encoding rows ------------------------------------------------------------------------


def parse_what(text: str | Sequence[str]) -> list[str]:
    """``"sessions,inventories"`` -> the parts, checked, in canonical order."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    chosen = {p.strip().lower() for p in parts if p.strip()}
    unknown = sorted(chosen - set(WHAT_CHOICES))
    if unknown or not chosen:
        raise ConfigError(
            f"--what must be a comma-separated list of {', '.join(WHAT_CHOICES)}; "
            f"got {','.join(parts) if parts else 'nothing'}"
        )
    return [w for w in WHAT_CHOICES if w in chosen]


def _bad(value: Any, expected: str) -> DecodeError:
    return DecodeError(f"{value!r} is not {expected}")


def _enc_text(value: Any) -> str:
    if value is None:
        return ""
    return value if type(value) is str else str(value)


def _location_encoder() -> Encoder:
    valid: set[str] = set()

    def encode(value: Any) -> str:
        if value is None:
            return ""
        text = value if type(value) is str else str(value)
        if text not in valid:
            check_name(text, "location id")
            valid.add(text)
        return text

    return encode


def _enc_int(value: Any) -> str:
    kind = type(value)
    if kind is int:
        return str(value)
    if value is None:
        return ""
    if kind in (float, Decimal) and math.isfinite(value) and value == int(value):
        return str(int(value))
    raise _bad(value, "a whole number")


def _enc_float(value: Any) -> str:
    kind = type(value)
    if kind is float:
        return codec.encode_float(value)
    if value is None:
        return ""
    if kind is int or kind is Decimal:
        return codec.encode_float(float(value))
    if isinstance(value, datetime):
        return codec.encode_float(_epoch(value))
    raise _bad(value, "a number")


def _enc_bool(value: Any) -> str:
    if value is None:
        return ""
    if type(value) is bool:
        return "true" if value else "false"
    raise _bad(value, "a boolean")


# Session fields a row may provide, with their encoders; ``name`` is read as ``username``.
_FIELD_ENCODERS: dict[str, Callable[[], Encoder]] = {
    "location_id": _location_encoder,
    "username": lambda: _enc_text,
    "hp": lambda: _enc_int,
    "max_hp": lambda: _enc_int,
    "stamina": lambda: _enc_int,
    "max_stamina": lambda: _enc_int,
    "level": lambda: _enc_int,
    "xp": lambda: _enc_int,
    "last_movement_time": lambda: _enc_float,
    "in_combat": lambda: _enc_bool,
}
# Fields only a worker may write: a query returning them is refused.
_WORKER_FIELDS = frozenset({"worker_id", "websocket_connected", "last_heartbeat"})


def _epoch(value: Any) -> float:
    """Seconds since the epoch of a timestamp column (naive timestamps are taken as UTC)
    or of a number of epoch seconds."""
    if isinstance(value, datetime):
        moment: datetime = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.timestamp()
    if type(value) in (int, float, Decimal):
        return float(value)
    raise _bad(value, "a timestamp or epoch seconds")


@dataclass(frozen=True)
class CharacterColumns:
    """Where each needed value sits in a row of the characters query."""

    id_index: int
    stamp_index: int
    fields: tuple[tuple[int, str, Encoder], ...]
    ignored: tuple[str, ...]

    @classmethod
    def resolve(cls, names: Sequence[str]) -> CharacterColumns:
        index = {name: i for i, name in enumerate(names)}
        missing = [c for c in (ID_COLUMN, STAMP_COLUMN) if c not in index]
        if missing:
            raise ConfigError(
                f"the warmup characters query returns no {' or '.join(missing)} column "
                f"(it returns: {', '.join(names) or 'nothing'})",
                hint="alias the columns, e.g. SELECT player_id AS id, seen_at AS last_active_at",
            )
        forbidden = sorted(_WORKER_FIELDS & index.keys())
        if forbidden:
            raise ConfigError(
                f"the warmup characters query returns {', '.join(forbidden)}, which only a "
                "game worker writes; remove them from the query"
            )
        fields: list[tuple[int, str, Encoder]] = []
        used = {ID_COLUMN, STAMP_COLUMN}
        for name, make in _FIELD_ENCODERS.items():
            column = name
            if name == "username" and name not in index and "name" in index:
                column = "name"
            if column in index:
                fields.append((index[column], name, make()))
                used.add(column)
        ignored = tuple(n for n in names if n not in used)
        return cls(index[ID_COLUMN], index[STAMP_COLUMN], tuple(fields), ignored)


# -- PostgreSQL ---------------------------------------------------------------------------


def _query_error(exc: BaseException, which: str, where: str) -> OpsError:
    setting = f"warmup_{which}_query"
    env = f"ECHOES_OPS_WARMUP_{which.upper()}_QUERY"
    text = (str(exc).splitlines() or [type(exc).__name__])[0]
    if isinstance(
        exc,
        asyncpg.exceptions.SyntaxOrAccessError
        | asyncpg.exceptions.DataError
        | asyncpg.exceptions.FeatureNotSupportedError,
    ) or (isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError)):
        return ConfigError(
            f"the warmup {which} query failed on PostgreSQL at {where}: {text}",
            hint=f"check {setting} / {env} against the game's schema (see docs/warmup.md)",
        )
    return PostgresError(f"PostgreSQL at {where} failed during warmup: {text}")


_PG_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


# The inventory query's rows become JSON in PostgreSQL (row_to_json: compact, every column of
# the row, in column order), which costs PostgreSQL less than Python, and each character's
# rows come back as one text, joined by ITEM_SEPARATOR in the order the query returns them
# (row_number() numbers the rows in that order): one row per character instead of one per
# item, and no grouping in Python. JSON text never holds a raw control character, so the
# separator cannot occur inside an item.
ITEM_SEPARATOR = "\x1e"
INVENTORY_WRAPPER = """\
SELECT character_id, string_agg(item, chr(30) ORDER BY n)
FROM (SELECT q.character_id, row_to_json(q)::text AS item, row_number() OVER () AS n
      FROM ({query}
) q) numbered
GROUP BY character_id"""


@dataclass
class _Source:
    """The prepared queries and how to read their rows."""

    where: str
    characters: Any
    inventory: Any | None
    columns: CharacterColumns
    characters_args: tuple[Any, ...]
    ids_as_text: bool


def _strip_sql(query: str) -> str:
    return query.strip().rstrip(";").rstrip()


async def _prepare(
    conn: Any,
    where: str,
    characters_query: str,
    inventory_query: str | None,
    minutes: int,
) -> _Source:
    try:
        characters = await conn.prepare(_strip_sql(characters_query))
    except _PG_ERRORS as exc:
        raise _query_error(exc, "characters", where) from None
    params = characters.get_parameters()
    if len(params) > 1:
        raise ConfigError(
            f"the warmup characters query takes {len(params)} parameters; it may use only "
            "$1, the --active-within window in minutes"
        )
    columns = CharacterColumns.resolve([a.name for a in characters.get_attributes()])
    inventory = None
    ids_as_text = False
    if inventory_query is not None:
        query = _strip_sql(inventory_query)
        try:
            plain = await conn.prepare(query)
        except _PG_ERRORS as exc:
            raise _query_error(exc, "inventory", where) from None
        inv_params = plain.get_parameters()
        if len(inv_params) != 1 or inv_params[0].kind != "array":
            raise ConfigError(
                "the warmup inventory query must take exactly one parameter, $1, the array "
                "of character ids of a batch (e.g. WHERE character_id = ANY($1::integer[]))"
            )
        element = inv_params[0].name.removeprefix("_").removesuffix("[]")
        ids_as_text = element in {"text", "varchar", "bpchar", "name"}
        names = [a.name for a in plain.get_attributes()]
        if INVENTORY_OWNER_COLUMN not in names:
            raise ConfigError(
                "the warmup inventory query returns no character_id column "
                f"(it returns: {', '.join(names) or 'nothing'})",
                hint="alias the owner column: SELECT owner AS character_id, ...",
            )
        try:
            inventory = await conn.prepare(INVENTORY_WRAPPER.format(query=query))
        except _PG_ERRORS as exc:
            raise _query_error(exc, "inventory", where) from None
    return _Source(
        where=where,
        characters=characters,
        inventory=inventory,
        columns=columns,
        characters_args=(minutes,) if params else (),
        ids_as_text=ids_as_text,
    )


@dataclass
class _Batch:
    characters: list[Any]
    inventory: dict[int, list[str]]
    inventory_rows: int


async def _read_batch(source: _Source, cursor: Any, size: int) -> _Batch | None:
    """The next characters (and their inventories), or None at the end."""
    try:
        rows = await cursor.fetch(size)
    except _PG_ERRORS as exc:
        raise _query_error(exc, "characters", source.where) from None
    if not rows:
        return None
    inventory: dict[int, list[str]] = {}
    count = 0
    if source.inventory is not None:
        id_index = source.columns.id_index
        ids = [row[id_index] for row in rows]
        if source.ids_as_text:
            ids = [str(i) for i in ids]
        try:
            grouped = await source.inventory.fetch(ids)
        except _PG_ERRORS as exc:
            raise _query_error(exc, "inventory", source.where) from None
        for owner, joined in grouped:
            if type(owner) is not int:
                try:
                    owner = check_character_id(owner)
                except ValueError:
                    continue  # not a character id: no player of this batch owns it
            items = joined.split(ITEM_SEPARATOR)
            count += len(items)
            bucket = inventory.get(owner)
            if bucket is None:
                inventory[owner] = items
            else:  # ids that differ only in form ("5" and "05")
                bucket += items
    return _Batch(rows, inventory, count)


# -- building script calls ----------------------------------------------------------------


@dataclass
class _Encoded:
    commands: list[Command]
    calls: list[list[int]]  # the character ids of each command, in order
    characters: int  # rows of the batch, valid or not
    inventory_rows: int


def _encode_batch(
    batch: _Batch,
    columns: CharacterColumns,
    report: WarmupReport,
    *,
    sha: str,
    header: Sequence[str],
    do_inventories: bool,
    script_batch: int,
    max_epoch: float,
) -> _Encoded:
    """The batch's EVALSHA calls (``script_batch`` players each); invalid rows are counted
    in ``report`` and left out."""
    id_index, stamp_index, fields = columns.id_index, columns.stamp_index, columns.fields
    owned = batch.inventory
    min_epoch = codec.MIN_PLAUSIBLE_EPOCH
    commands: list[Command] = []
    calls: list[list[int]] = []
    keys_part: list[str] = []
    args_part: list[Any] = []
    call_ids: list[int] = []
    no_rows: list[str] = []
    # name, value for each field, then last_heartbeat <time>, websocket_connected false
    template: list[str] = []
    for _, name, _ in fields:
        template += (name, "")
    template += ("last_heartbeat", "", "websocket_connected", "false")
    values_slice = slice(1, 2 * len(fields), 2)
    stamp_at = 2 * len(fields) + 1
    # integer fields take a fast path for int values (most of them)
    plan = [(index, name, encode, encode is _enc_int) for index, name, encode in fields]

    for row in batch.characters:
        raw_id = row[id_index]
        column = ID_COLUMN
        try:
            cid = raw_id if type(raw_id) is int else check_character_id(raw_id)
            session_key, inventory_key = keys.player_cache_keys(cid)
            column = STAMP_COLUMN
            stamp = _epoch(row[stamp_index])
            if not min_epoch <= stamp <= max_epoch:
                raise _bad(row[stamp_index], "a plausible time")
            values: list[str] = []
            for index, name, encode, whole in plan:
                column = name
                value = row[index]
                values.append(str(value) if whole and type(value) is int else encode(value))
        except (DecodeError, ValueError) as exc:
            report.invalid += 1
            report.example("invalid", {"id": str(raw_id), "why": f"{column}: {exc}"})
            continue
        text_stamp = repr(stamp)
        pairs = template.copy()
        pairs[values_slice] = values
        pairs[stamp_at] = text_stamp
        keys_part.append(session_key)
        keys_part.append(inventory_key)
        args_part.append(text_stamp)
        args_part.append(str(values.count("")))
        args_part.extend(pairs)
        if do_inventories:
            items = owned.get(cid, no_rows)
            args_part.append(str(len(items)))
            args_part.extend(items)
        else:
            args_part.append("-1")
        call_ids.append(cid)
        if len(call_ids) >= script_batch:
            commands.append(("EVALSHA", sha, len(keys_part), *keys_part, *header, *args_part))
            calls.append(call_ids)
            keys_part, args_part, call_ids = [], [], []
    if call_ids:
        commands.append(("EVALSHA", sha, len(keys_part), *keys_part, *header, *args_part))
        calls.append(call_ids)
    return _Encoded(commands, calls, len(batch.characters), batch.inventory_rows)


async def _encode_yielding(
    batch: _Batch, columns: CharacterColumns, report: WarmupReport, **options: Any
) -> _Encoded:
    """:func:`_encode_batch`, one script call at a time, giving the event loop a turn
    between calls: the next batch's PostgreSQL reads are sent (and their replies taken in)
    while this one is encoded, so PostgreSQL, Redis and this process work at the same time."""
    rows, step = batch.characters, options["script_batch"]
    whole = _Encoded([], [], len(rows), batch.inventory_rows)
    for start in range(0, len(rows), step):
        part = _Batch(rows[start : start + step], batch.inventory, 0)
        encoded = _encode_batch(part, columns, report, **options)
        whole.commands += encoded.commands
        whole.calls += encoded.calls
        await asyncio.sleep(0)
    return whole


def _tally(report: WarmupReport, calls: list[list[int]], replies: list[Any]) -> None:
    s, inv = report.sessions, report.inventories
    for ids, reply in zip(calls, replies, strict=True):
        session_codes, inventory_codes = reply[0], reply[1]
        s.written += session_codes.count("W")
        s.unchanged += session_codes.count("U")
        s.skipped_fresher += session_codes.count("F")
        inv.written += inventory_codes.count("W")
        inv.removed += inventory_codes.count("D")
        inv.unchanged += inventory_codes.count("U")
        inv.skipped_fresher += inventory_codes.count("F")
        unknown = session_codes.count("X")
        s.skipped_unknown += unknown
        inv_unknown = inventory_codes.count("X")
        inv.skipped_unknown += inv_unknown
        if unknown or inv_unknown:
            for i, cid in enumerate(ids):
                if session_codes[i] == "X" or inventory_codes[i] == "X":
                    report.example("skipped_unknown", {"id": cid})


async def _run_scripts(r: Redis, encoded: _Encoded, sha: str) -> list[Any]:
    """Send the batch's script calls; reload the script once if the server lost it."""
    replies = await bulk(r, encoded.commands, raise_on_error=False)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        # no call that failed with NOSCRIPT ran; the script is idempotent anyway
        await r.script_load(scripts.WARMUP_PLAYERS)
        retried = await bulk(r, [encoded.commands[i] for i in missing], raise_on_error=False)
        for i, reply in zip(missing, retried, strict=True):
            replies[i] = reply
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies


# -- the operation ------------------------------------------------------------------------


async def warmup(
    r: Redis,
    database_url: str,
    *,
    operator: str,
    what: Collection[str] = WHAT_CHOICES,
    active_within: int = 30,
    characters_query: str | None = None,
    inventory_query: str | None = None,
    gamedata: GameData | None = None,
    dry_run: bool = False,
    max_seconds: float | None = None,
    batch_size: int = BATCH_SIZE,
    script_batch: int = SCRIPT_BATCH,
    session_ttl: int = keys.SESSION_TTL,
    inventory_ttl: int = keys.INVENTORY_TTL,
    clock: Callable[[], float] = time.time,
    progress: Progress | None = None,
) -> WarmupReport:
    """Warm sessions and inventories of characters active in the last ``active_within``
    minutes (and, with ``"static"`` in ``what``, re-preload ``gamedata`` if it changed).

    Raises :class:`PostgresError` / :class:`ConfigError` before writing anything when
    PostgreSQL is unreachable or a query does not fit the schema, and :class:`BusyError`
    when another warmup holds the lock. Stops after the batch during which ``max_seconds``
    passed and reports ``partial``.
    """
    chosen = parse_what(list(what))
    if active_within < 1:
        raise ConfigError(f"--active-within must be at least 1 minute, got {active_within}")
    if batch_size < 1 or not 1 <= script_batch <= MAX_SCRIPT_BATCH:
        raise ConfigError(f"batch sizes must be positive (script batch at most {MAX_SCRIPT_BATCH})")
    if "static" in chosen and gamedata is None:
        raise ConfigError("warming static data needs gamedata")
    started = time.perf_counter()
    report = WarmupReport(
        dry_run=dry_run,
        what=chosen,
        active_within_minutes=active_within,
        started_at=clock(),
        max_seconds=max_seconds,
    )
    do_sessions = "sessions" in chosen
    do_inventories = "inventories" in chosen
    do_players = do_sessions or do_inventories

    conn = None
    if do_players:
        # PostgreSQL first: if it is unreachable or a query does not fit, nothing is written
        conn = await connect_postgres(database_url)
    try:
        source = None
        where = target_of(database_url) or "?"
        if conn is not None:
            # one read-only snapshot for every read (characters and inventories agree); the
            # statements are prepared inside it. Closing the connection ends it. No parallel
            # workers: each batch's inventory query is small, and a background job should not
            # start worker processes on the game's database (they cost more than they save).
            try:
                await conn.execute(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;"
                    " SET LOCAL max_parallel_workers_per_gather = 0"
                )
            except _PG_ERRORS as exc:
                reason = (str(exc).splitlines() or [type(exc).__name__])[0]
                raise PostgresError(f"PostgreSQL at {where} failed: {reason}") from None
            source = await _prepare(
                conn,
                where,
                characters_query or DEFAULT_CHARACTERS_QUERY,
                (inventory_query or DEFAULT_INVENTORY_QUERY) if do_inventories else None,
                active_within,
            )
            report.ignored_columns = list(source.columns.ignored)
        handle = None
        if not dry_run:
            handle = await lock.try_acquire(
                r, WARMUP_LOCK, lock.operator_owner(operator), _lock_ttl(max_seconds)
            )
            if handle is None:
                holder = await r.get(keys.lock_key(WARMUP_LOCK))
                who = f" by {lock.owner_of(str(holder))}" if holder else ""
                raise BusyError(
                    f"another warmup is running (lock:{WARMUP_LOCK} is held{who}); skipped"
                )
        try:
            if "static" in chosen:
                assert gamedata is not None
                report.static = await _static(r, gamedata, operator=operator, dry_run=dry_run)
            if source is not None:
                await _players(
                    r,
                    source,
                    report,
                    handle=handle,
                    dry_run=dry_run,
                    do_sessions=do_sessions,
                    do_inventories=do_inventories,
                    batch_size=batch_size,
                    script_batch=script_batch,
                    session_ttl=session_ttl,
                    inventory_ttl=inventory_ttl,
                    deadline=None if max_seconds is None else started + max_seconds,
                    clock=clock,
                    progress=progress,
                )
        finally:
            if handle is not None:
                await lock.release(r, handle.key, handle.token)
    finally:
        if conn is not None:
            await _close(conn)
    report.elapsed_s = time.perf_counter() - started
    return report


def _lock_ttl(max_seconds: float | None) -> float:
    return LOCK_TTL if max_seconds is None else max(LOCK_TTL, max_seconds + 60.0)


async def _close(conn: Any) -> None:
    try:
        await conn.close(timeout=5.0)
    except (*_PG_ERRORS, TimeoutError):
        conn.terminate()


async def _static(r: Redis, data: GameData, *, operator: str, dry_run: bool) -> dict[str, Any]:
    from echoes_ops.operations.preload import preload

    try:
        result = await preload(r, data, operator=operator, dry_run=dry_run)
    except BusyError:
        return {"result": "busy", "detail": "a preload is running (its lock is held)"}
    outcome = "unchanged" if result.skipped else ("would_load" if dry_run else "loaded")
    return {
        "result": outcome,
        "version": result.version,
        "previous_version": result.previous_version,
        "keys_written": result.keys_written,
        "keys_removed": result.keys_removed,
    }


async def _players(
    r: Redis,
    source: _Source,
    report: WarmupReport,
    *,
    handle: lock.LockHandle | None,
    dry_run: bool,
    do_sessions: bool,
    do_inventories: bool,
    batch_size: int,
    script_batch: int,
    session_ttl: int,
    inventory_ttl: int,
    deadline: float | None,
    clock: Callable[[], float],
    progress: Progress | None,
) -> None:
    """Stream the characters and write them. Three stages overlap: PostgreSQL reads the
    next batch and Redis runs the previous batch's scripts while this batch is encoded."""
    sha = str(await r.script_load(scripts.WARMUP_PLAYERS))
    max_epoch = clock() + codec.MAX_FUTURE_SKEW
    header = (
        "1" if dry_run else "0",
        repr(codec.MIN_PLAUSIBLE_EPOCH),
        repr(max_epoch),
        str(session_ttl),
        str(inventory_ttl),
        "1" if do_sessions else "0",
        str(len(source.columns.fields)),
        *(name for _, name, _ in source.columns.fields),
    )
    last_extend = time.perf_counter()
    try:
        cursor = await source.characters.cursor(*source.characters_args)
    except _PG_ERRORS as exc:
        raise _query_error(exc, "characters", source.where) from None

    reading: asyncio.Future[_Batch | None] | None = None
    writing: asyncio.Future[list[Any]] | None = None
    written: _Encoded | None = None
    try:
        reading = asyncio.ensure_future(_read_batch(source, cursor, batch_size))
        while True:
            batch = await reading
            reading = None
            if batch is None:
                break
            reading = asyncio.ensure_future(_read_batch(source, cursor, batch_size))
            encoded = await _encode_yielding(
                batch,
                source.columns,
                report,
                sha=sha,
                header=header,
                do_inventories=do_inventories,
                script_batch=script_batch,
                max_epoch=max_epoch,
            )
            if writing is not None:
                assert written is not None
                task, writing = writing, None
                _done(report, written, await task, progress)
                stop = None
                if deadline is not None and time.perf_counter() >= deadline:
                    stop = "max_seconds"
                elif handle is not None and time.perf_counter() - last_extend > LOCK_TTL / 3:
                    if await lock.extend(r, handle.key, handle.token, handle.ttl_ms / 1000):
                        last_extend = time.perf_counter()
                    else:
                        stop = "lock_lost"
                if stop is not None:
                    # this batch is read but not written: stop here
                    report.partial = True
                    report.stopped_because = stop
                    break
            writing = asyncio.ensure_future(_run_scripts(r, encoded, sha))
            written = encoded
        if writing is not None:
            assert written is not None
            task, writing = writing, None
            _done(report, written, await task, progress)
    finally:
        # never leave a read or a write running behind an error
        if reading is not None:
            await _settle(reading, cancel=True)
        if writing is not None:
            await _settle(writing, cancel=False)  # let sent scripts finish and be read


def _done(
    report: WarmupReport, encoded: _Encoded, replies: list[Any], progress: Progress | None
) -> None:
    _tally(report, encoded.calls, replies)
    report.characters += encoded.characters
    report.inventories.rows += encoded.inventory_rows
    report.batches += 1
    report.script_calls += len(encoded.commands)
    if progress is not None:
        progress(report.characters)


async def _settle(task: asyncio.Future[Any], *, cancel: bool) -> None:
    """Wait for a read or write that an error or the deadline overtook; its own outcome no
    longer matters (the error that stopped the run, if any, is the one reported)."""
    if cancel and not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, OpsError, ResponseError, *_PG_ERRORS):
        await task
