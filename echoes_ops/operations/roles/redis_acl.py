"""Least-privilege Redis ACL roles for the tier: ``reader``, ``operator``, ``warmup``, ``worker``.

Each role is an allow-list: ``-@all`` and then the commands the operations of that role send
(read from the operations and the Lua scripts they run: a script's own calls are checked
against the same rules), key patterns built from the contract's patterns (never retyped
here) and the pub/sub channels of the contract. No role gets ``FLUSHALL``, ``FLUSHDB``,
``KEYS``, ``CONFIG`` (``CONFIG GET requirepass`` would hand out the default user's
password), ``DEBUG``, ``ACL SETUSER``/``GETUSER``, ``SHUTDOWN`` or ``MONITOR``.

Key patterns use ``~`` (read and write) even for a role that only reads: ``EVALSHA``
declares its keys as read-write, so a reader running a read-only script needs them; the
commands, not the key patterns, keep a reader from writing. ``%R~`` (read only, Redis 7)
marks what a role that writes may read but never change (the worker and the static
caches). Rules need Redis 7.0 or newer.

Redis ACLs have no groups: one ACL user per person, each given the rules of a role
(``echoes-ops acl roles --role operator --user alice``). Rules never carry a password: a
new user cannot log in until one is added (``ACL SETUSER alice >password``); re-applying
the ``ACL SETUSER`` line to an existing user keeps its passwords.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from echoes_ops.contract import keys
from echoes_ops.contract.ids import check_name
from echoes_ops.operations.preload import PRELOAD_LOCK
from echoes_ops.operations.warmup import WARMUP_LOCK

# -- commands, by what needs them -------------------------------------------------------
# every connection: redis-py's handshake (HELLO, CLIENT SETNAME for named clients, SELECT
# for a non-zero database), its health checks, and ACL WHOAMI (the audit trail records the
# ACL user; doctor warns about the default user). CLIENT SETINFO is left out: Redis 7.0
# does not know it (the rule would not load) and redis-py ignores its refusal.
CONNECTION: Final = ("hello", "ping", "select", "client|setname", "acl|whoami")
# Redis Cluster (ACL users live on each node: load the same rules on every node). Every
# role: redis-py's cluster client reads the slot map (CLUSTER SLOTS) and the command table
# (COMMAND) when it connects
CLUSTER_CLIENT: Final = ("cluster|slots", "command")
# the walks on every node (client/walk.py, client/budget.py): the node list (CLUSTER
# NODES), the keys of slots that moved during a walk (COUNTKEYSINSLOT/GETKEYSINSLOT),
# ASKING before a step on a node importing a slot, and on a replica (--read-from replicas)
# READONLY with the scripts run read-only
CLUSTER_WALKS: Final = (
    "cluster|nodes",
    "cluster|countkeysinslot",
    "cluster|getkeysinslot",
    "asking",
    "readonly",
    "evalsha_ro",
)
# Lua: every script is a named constant run with EVALSHA, loaded on NOSCRIPT
SCRIPTS: Final = ("evalsha", "script|load", "script|exists")
# reading tier keys: SCAN walks (never KEYS), hashes, sets, lists, the audit stream, TTLs;
# HEXISTS counts the connections behind a broadcast's reach (operations/reach.py)
READ_KEYS: Final = (
    "scan",
    "exists",
    "type",
    "ttl",
    "pttl",
    "get",
    "hget",
    "hmget",
    "hgetall",
    "hexists",
    "hlen",
    "hscan",
    "scard",
    "sismember",
    "smembers",
    "sscan",
    "llen",
    "lrange",
    "xrange",
    "xrevrange",
    "memory|usage",
)
# inspecting the server: INFO/TIME (status, stats, doctor), CLIENT LIST/INFO (worker
# liveness, doctor), PUBSUB counts (stats, broadcast's audience), ACL DRYRUN (the
# dashboard asks what this user may write)
INSPECT_SERVER: Final = (
    "info",
    "dbsize",  # preload's memory pre-flight (keyspace table growth)
    "time",
    "client|list",
    "client|info",
    "pubsub|channels",
    "pubsub|numsub",
    "pubsub|numpat",
    "acl|dryrun",
    "cluster|info",  # cluster health (status, stats, doctor, the dashboard)
    "pubsub|shardnumsub",  # a broadcast's audience in the sharded pub/sub mode
)
# SSUBSCRIBE/SUNSUBSCRIBE: the sharded pub/sub mode (ECHOES_OPS_PUBSUB_MODE=sharded, Redis
# 7.0+), which publishes location and player channels with SPUBLISH
SUBSCRIBE: Final = (
    "subscribe",
    "psubscribe",
    "unsubscribe",
    "punsubscribe",
    "ssubscribe",
    "sunsubscribe",
)
# transactions (preload's swap, lock hold info, flags mirror, the worker's moves)
TRANSACTIONS: Final = ("multi", "exec", "discard")
# writing audit records: XADD to the stream, and the records PostgreSQL did not take named
# in echoes:audit:unsynced, copied in later by whoever reaches both (SRANDMEMBER, XRANGE,
# SREM)
AUDIT_WRITES: Final = ("xadd", "sadd", "srandmember", "xrange", "srem")
# the writes of warmup: sessions (HSET/HDEL/EXPIRE), inventories (DEL/RPUSH/EXPIRE), static
# data (preload: DEL/HSET/SADD/SET in MULTI), its locks (SET NX PX, compare-and-delete)
WARMUP_WRITES: Final = (
    "set",
    "del",
    "hset",
    "hdel",
    "sadd",
    "expire",
    "pexpire",
    "rpush",
    *AUDIT_WRITES,
)
# the operator's on top: removals (kick, reconcile, cleanup, invalidate), presence repairs,
# broadcasts and config_changed messages
OPERATOR_WRITES: Final = (*WARMUP_WRITES, "srem", "unlink", "publish", "spublish")
# the reference worker (runtime/): sessions, presence, connections, liveness, inventories,
# leases on lock:*, and messages on the game's channels
WORKER_WRITES: Final = (
    "set",
    "del",
    "hset",
    "hdel",
    "sadd",
    "srem",
    "expire",
    "pexpire",
    "rpush",
    "publish",
    "spublish",
)
# never granted to any role (checked by the tests against every role)
FORBIDDEN: Final = (
    "flushall",
    "flushdb",
    "keys",
    "config|set",
    "config|get",
    "debug",
    "shutdown",
    "monitor",
    "acl|setuser",
    "acl|getuser",
    "script|flush",
    "eval",
    "client|kill",
)

# -- key patterns, from the contract ----------------------------------------------------
PLAYER_KEYS: Final = (keys.SESSION_PATTERN, keys.INVENTORY_PATTERN)
PRESENCE_KEYS: Final = (keys.PRESENCE_PATTERN,)
WORKER_KEYS: Final = (keys.WORKER_CONNECTIONS_PATTERN, keys.WORKER_META_PATTERN)
STATIC_KEYS: Final = (
    keys.LOCATION_CACHE_PATTERN,
    keys.ITEM_DEF_PATTERN,
    keys.NPC_DEF_PATTERN,
    keys.GAMEDATA_VERSION_KEY,
    keys.LOCATION_INDEX_KEY,
)
OURS: Final = (f"{keys.NAMESPACE_PREFIX}*",)  # audit, flags mirror, lock info, gamedata keys
ALL_TIER_KEYS: Final = (
    *PLAYER_KEYS,
    *PRESENCE_KEYS,
    *WORKER_KEYS,
    keys.LOCATION_CACHE_PATTERN,
    keys.ITEM_DEF_PATTERN,
    keys.NPC_DEF_PATTERN,
    keys.LOCK_PATTERN,
    *OURS,
)
TIER_CHANNELS: Final = (
    keys.BROADCAST_CHANNEL,
    keys.WORKERS_CHANNEL,
    keys.LOCATION_CHANNEL_PATTERN,
    keys.PLAYER_CHANNEL_PATTERN,
)


def _unique(*groups: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item for group in groups for item in group))


@dataclass(frozen=True)
class RedisRole:
    """One role: the commands it may run, the keys it may read and write, the channels."""

    name: str
    summary: str
    commands: tuple[str, ...]
    keys: tuple[str, ...]  # read and write (``~``)
    read_keys: tuple[str, ...]  # read only (``%R~``)
    channels: tuple[str, ...]  # publish and/or subscribe, as the commands allow

    def default_user(self) -> str:
        return f"echoes-{self.name}"

    def rules(self) -> list[str]:
        """The ACL rules, without user name or password (order matters: reset first)."""
        out = ["on", "resetkeys", "resetchannels", "-@all"]
        out += [f"+{command}" for command in self.commands]
        out += [f"~{pattern}" for pattern in self.keys]
        out += [f"%R~{pattern}" for pattern in self.read_keys]
        out += [f"&{channel}" for channel in self.channels]
        return out

    def setuser_args(self, user: str | None = None) -> list[str]:
        """Arguments of ``ACL SETUSER`` (after the command name)."""
        return [check_name(user or self.default_user(), "ACL user name"), *self.rules()]

    def aclfile_line(self, user: str | None = None) -> str:
        return " ".join(["user", *self.setuser_args(user)])

    def setuser_line(self, user: str | None = None) -> str:
        """One ``ACL SETUSER`` line, as redis-cli reads it from stdin."""
        return " ".join(["ACL", "SETUSER", *self.setuser_args(user)])

    def as_dict(self, user: str | None = None) -> dict[str, Any]:
        return {
            "role": self.name,
            "user": user or self.default_user(),
            "summary": self.summary,
            "commands": list(self.commands),
            "keys": list(self.keys),
            "read_keys": list(self.read_keys),
            "channels": list(self.channels),
            "rules": self.rules(),
            "aclfile": self.aclfile_line(user),
            "setuser": self.setuser_line(user),
        }


READER: Final = RedisRole(
    name="reader",
    summary="every inspection command and the dashboard read-only; writes nothing",
    commands=_unique(
        CONNECTION, CLUSTER_CLIENT, CLUSTER_WALKS, SCRIPTS, READ_KEYS, INSPECT_SERVER, SUBSCRIBE
    ),
    keys=ALL_TIER_KEYS,
    read_keys=(),
    channels=TIER_CHANNELS,
)
OPERATOR: Final = RedisRole(
    name="operator",
    summary=(
        "the reader's commands plus broadcasts, locks under lock:*, kicks, reconcile --fix, "
        "workers cleanup, cache invalidate, preload, warmup and the flags mirror; audited"
    ),
    commands=_unique(READER.commands, TRANSACTIONS, OPERATOR_WRITES),
    keys=ALL_TIER_KEYS,
    read_keys=(),
    channels=TIER_CHANNELS,
)
WARMUP: Final = RedisRole(
    name="warmup",
    summary=(
        "echoes-ops warmup from cron: session, inventory and static data writes, its lock "
        "(and preload's), its audit records; no inspection, no channels"
    ),
    # reads: preload's diff (SCAN, HGETALL, EXISTS), its memory check (INFO, DBSIZE, MEMORY
    # USAGE of its probe keys), the lock's holder (GET), and what WARMUP_PLAYERS compares
    # (EXISTS over a call's keys, HMGET of a session, LRANGE, TTL; INFO cpu for the call's
    # own server time, which sizes the next calls)
    commands=_unique(
        CONNECTION,
        CLUSTER_CLIENT,
        CLUSTER_WALKS,
        SCRIPTS,
        ("scan", "exists", "get", "hgetall", "hmget", "lrange", "ttl", "info"),
        # preload --online (always on a cluster): its verify pass re-reads the sets it
        # wrote. No TIME (it would let this role run stats): the step script then sizes
        # its steps by their round trips (operations/preload_online.py)
        ("sscan",),
        ("dbsize", "memory|usage"),
    )
    + _unique(TRANSACTIONS, WARMUP_WRITES),
    keys=(
        *PLAYER_KEYS,
        *STATIC_KEYS,
        keys.lock_key(WARMUP_LOCK),
        keys.lock_key(PRELOAD_LOCK),
        keys.lock_info_key(PRELOAD_LOCK),  # who holds preload's lock (host, pid)
        keys.PROBE_PATTERN,  # preload's memory probes, deleted at once
        keys.AUDIT_STREAM_KEY,
        keys.AUDIT_UNSYNCED_KEY,
    ),
    read_keys=(),
    channels=(),
)
WORKER: Final = RedisRole(
    name="worker",
    summary=(
        "the reference game worker (runtime/, echoes-ops simulate): sessions, presence, "
        "connections, liveness, inventories, leases on lock:*, the game's channels; reads "
        "the static caches and the flags mirror, never writes them"
    ),
    commands=_unique(
        CONNECTION,
        CLUSTER_CLIENT,
        CLUSTER_WALKS,
        SCRIPTS,
        ("scan", "exists", "ttl", "get", "hget", "hmget", "hgetall", "scard", "smembers"),
        ("lrange",),
        ("info",),  # run_id and drop counter: why its subscription was dropped
        SUBSCRIBE,
        TRANSACTIONS,
        WORKER_WRITES,
    ),
    keys=(*PLAYER_KEYS, *PRESENCE_KEYS, *WORKER_KEYS, keys.LOCK_PATTERN),
    read_keys=(*STATIC_KEYS, keys.FLAGS_KEY),
    channels=TIER_CHANNELS,
)

ROLES: Final[dict[str, RedisRole]] = {
    role.name: role for role in (READER, OPERATOR, WARMUP, WORKER)
}


def redis_roles(name: str | None = None) -> list[RedisRole]:
    """Every role, or the one named (``KeyError`` for an unknown name)."""
    if name is None:
        return list(ROLES.values())
    return [ROLES[name]]
