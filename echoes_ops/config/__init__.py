"""Settings: where Redis and PostgreSQL are, and how to reach them.

Sources, highest first: command-line flags > environment variables > the YAML config file
(``--config`` / ``ECHOES_OPS_CONFIG``) > defaults. Secrets are held in :class:`Secret`, which
never shows its value in ``str``/``repr``; URLs are only ever displayed through
:func:`redact_url`.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from echoes_ops.config.urls import (
    REDACTED,
    Secret,
    UrlParts,
    build_redis_url,
    check_url_options,
    pop_cluster_option,
    redact_url,
    url_has_password,
)
from echoes_ops.config.values import (
    FALSE_WORDS,
    TRUE_WORDS,
    as_bool,
    as_float,
    as_int,
    parse_bool,
)
from echoes_ops.config.walk import (
    DEFAULT_NICE,
    DEFAULT_STEP_GATE,
    DEFAULT_WALK_DUTY,
    as_nice,
    as_step_gate,
    as_walk_duty,
)
from echoes_ops.errors import ConfigError

__all__ = [
    "FALSE_WORDS",
    "REDACTED",
    "TRUE_WORDS",
    "PgTimeouts",
    "RedisTarget",
    "Secret",
    "Settings",
    "build_redis_url",
    "parse_bool",
    "redact_url",
    "url_has_password",
]


# How the game's per-location and per-player channels are published (contract/pubsub.py)
PubSubMode = Literal["classic", "sharded"]
PUBSUB_MODES: tuple[PubSubMode, ...] = ("classic", "sharded")


def check_pubsub_mode(value: object) -> PubSubMode:
    """``value`` as a pub/sub mode (any case, blanks ignored); ConfigError otherwise."""
    text = str(value).strip().lower()
    if text not in PUBSUB_MODES:
        raise ConfigError(
            f"REDIS_PUBSUB_MODE must be classic or sharded, got {value!r}",
            hint="classic is the plan's PUBLISH (the default); sharded uses SPUBLISH for "
            "location:<id> and player:<id> channels",
        )
    return text


# Environment variable for each setting (every setting has one).
ENV_VARS: dict[str, str] = {
    "redis_url": "REDIS_URL",
    "redis_host": "REDIS_HOST",
    "redis_port": "REDIS_PORT",
    "redis_db": "REDIS_DB",
    "redis_username": "REDIS_USERNAME",
    "redis_password": "REDIS_PASSWORD",
    "redis_password_file": "REDIS_PASSWORD_FILE",
    "redis_tls": "REDIS_TLS",
    "redis_tls_insecure": "REDIS_TLS_INSECURE",
    "redis_ca_file": "REDIS_CA_FILE",
    "redis_sentinels": "REDIS_SENTINELS",
    "redis_sentinel_master": "REDIS_SENTINEL_MASTER",
    "redis_cluster": "REDIS_CLUSTER",
    "redis_cluster_nodes": "REDIS_CLUSTER_NODES",
    "read_from": "ECHOES_OPS_READ_FROM",
    "redis_timeout": "REDIS_TIMEOUT",
    "dead_after": "ECHOES_OPS_DEAD_AFTER",
    "pubsub_mode": "REDIS_PUBSUB_MODE",
    "database_url": "DATABASE_URL",
    "gamedata_dir": "ECHOES_OPS_GAMEDATA",
    "cache_dir": "ECHOES_OPS_CACHE_DIR",
    "operator": "ECHOES_OPS_OPERATOR",
    "environment": "ECHOES_OPS_ENVIRONMENT",
    "env_file": "ECHOES_OPS_ENV_FILE",
    "pg_statement_timeout": "ECHOES_OPS_PG_STATEMENT_TIMEOUT",
    "pg_lock_timeout": "ECHOES_OPS_PG_LOCK_TIMEOUT",
    "flags_timeout": "ECHOES_OPS_FLAGS_TIMEOUT",
    "warmup_characters_query": "ECHOES_OPS_WARMUP_CHARACTERS_QUERY",
    "warmup_inventory_query": "ECHOES_OPS_WARMUP_INVENTORY_QUERY",
    "walk_duty": "ECHOES_OPS_WALK_DUTY",
    "nice": "ECHOES_OPS_NICE",
    "step_gate": "ECHOES_OPS_STEP_GATE",
}
CONFIG_ENV_VAR = "ECHOES_OPS_CONFIG"
READ_FROM = ("primaries", "replicas")


@dataclass(frozen=True)
class PgTimeouts:
    """How long one PostgreSQL statement may run, and wait for a lock, before the server
    cancels it (sent as ``statement_timeout`` / ``lock_timeout`` on every connection)."""

    statement: float = 60.0  # seconds
    lock: float = 10.0  # seconds

    def server_settings(self) -> dict[str, str]:
        return {
            "statement_timeout": str(max(1, round(self.statement * 1000))),
            "lock_timeout": str(max(1, round(self.lock * 1000))),
        }


_ENVIRONMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_PRODUCTION = re.compile(r"(?:^|[^a-z])(?:prod|production|prd|live)(?:$|[^a-z])", re.IGNORECASE)


def looks_like_production(environment: str | None) -> bool:
    """Whether an environment's name says production (``prod``, ``production``,
    ``eu-prod``, ``live``...): shown in red wherever it appears."""
    return bool(environment) and _PRODUCTION.search(environment or "") is not None


def on_environment(question: str, environment: str | None) -> str:
    """``question`` saying where it acts: ``Kick player 42?`` on ``prod`` becomes
    ``Kick player 42 on prod?`` (unchanged when no environment is named)."""
    if not environment:
        return question
    body = question[:-1] if question.endswith("?") else question
    return f"{body} on {environment}?"


FLAGS_TIMEOUT = 3.0  # seconds: the REDIS_ENABLED switch's wait for its row (lock_timeout)


def switch_timeouts(seconds: float = FLAGS_TIMEOUT) -> PgTimeouts:
    """The flag commands' timeouts: they must answer during an incident, so a short wait
    for the flag's row (``lock_timeout``) and twice that for any statement."""
    return PgTimeouts(statement=2 * seconds, lock=seconds)


@dataclass(frozen=True)
class RedisTarget:
    """Everything needed to open a Redis connection. ``url`` never holds a password."""

    url: str
    password: Secret | None = None
    username: str | None = None
    ca_file: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str | None = None
    timeout: float = 5.0
    # a subscribed connection silent this long (PINGed after a third of it) is dead
    dead_after: float = 6.0
    tls_insecure: bool = False  # --insecure: the server certificate is not verified
    # classic (PUBLISH everywhere, the plan's) or sharded (SPUBLISH for location:<id> and
    # player:<id>): see contract/pubsub.py
    pubsub_mode: PubSubMode = "classic"
    # Redis Cluster: ``url``'s host is one seed node, ``cluster_nodes`` the others
    cluster: bool = False
    cluster_nodes: tuple[tuple[str, int], ...] = ()
    # where keyspace walks read on a cluster: "primaries", or "replicas" to spare them
    read_from: str = "primaries"
    walk_duty: float = DEFAULT_WALK_DUTY  # Settings.walk_duty / step_gate (config/walk.py)
    step_gate: str = DEFAULT_STEP_GATE

    @property
    def display(self) -> str:
        if self.sentinels:
            hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"sentinel://{hosts}/{self.sentinel_master}"
        return redact_url(self.url)


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with :meth:`load`; ``repr`` never shows a secret."""

    redis_url: str | None = None
    redis_host: str = "localhost"
    redis_port: int = 6379
    redis_db: int = 0
    redis_username: str | None = None
    redis_password: Secret | None = field(default=None)
    redis_password_file: str | None = None
    redis_tls: bool = False
    redis_tls_insecure: bool = False
    redis_ca_file: str | None = None
    redis_sentinels: str | None = None
    redis_sentinel_master: str | None = None
    # Redis Cluster (REDIS_CLUSTER=true, or ?cluster=true on REDIS_URL): REDIS_URL's host is a
    # seed node; REDIS_CLUSTER_NODES lists more seeds (host:port,...)
    redis_cluster: bool = False
    redis_cluster_nodes: str | None = None
    # keyspace walks on a cluster read the primaries, or their replicas (--read-from)
    read_from: str = "primaries"
    redis_timeout: float = 5.0
    dead_after: float = 6.0
    pubsub_mode: PubSubMode = "classic"
    database_url: Secret | None = None
    # PostgreSQL: statement_timeout and lock_timeout of every connection, and the shorter
    # wait of the REDIS_ENABLED switch (flags commands: lock_timeout, statement twice that)
    pg_statement_timeout: float = 60.0
    pg_lock_timeout: float = 10.0
    flags_timeout: float = FLAGS_TIMEOUT
    gamedata_dir: str | None = None
    # parsed-gamedata cache (None: $XDG_CACHE_HOME/echoes-ops; "off": no cache)
    cache_dir: str | None = None
    operator: str | None = None
    # a name for the tier these settings reach (prod, staging, ...): status, the dashboard's
    # header and every confirmation show it, in red when it looks like production
    environment: str | None = None
    env_file: str | None = None
    config_file: str | None = None
    # SQL run by `echoes-ops warmup` (None: the defaults for the reference schema)
    warmup_characters_query: str | None = None
    warmup_inventory_query: str | None = None
    # keeping out of the game's way (config/walk.py, docs/design.md decision 11): the
    # walks' duty cycle, the CLI's CPU priority (0-19 or idle), the cluster walks' CPU gate
    walk_duty: float = DEFAULT_WALK_DUTY
    nice: str = str(DEFAULT_NICE)
    step_gate: str = DEFAULT_STEP_GATE

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "redis_url" and value is not None:
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    # -- construction -------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        flags: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        config_file: str | os.PathLike[str] | None = None,
    ) -> Settings:
        """Merge flags > env > config file > defaults into validated settings."""
        env = os.environ if env is None else env
        flags = {k: v for k, v in (flags or {}).items() if v is not None}
        path = config_file or flags.pop("config_file", None) or env.get(CONFIG_ENV_VAR)
        merged: dict[str, Any] = {}
        if path:
            merged.update(_read_config_file(Path(path)))
        for name, var in ENV_VARS.items():
            if var in env:
                merged[name] = env[var]
        merged.update(flags)
        if path:
            merged["config_file"] = str(path)
        return cls._from_raw(merged)

    @classmethod
    def from_dsn(cls, redis_url: str, database_url: str | None = None) -> Settings:
        return cls._from_raw({"redis_url": redis_url, "database_url": database_url})

    @classmethod
    def _from_raw(cls, raw: Mapping[str, Any]) -> Settings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s) in config: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if value is None:
                continue
            values[name] = _coerce(name, value)
        settings = cls(**values)
        settings._check()
        return settings

    def _check(self) -> None:
        if self.redis_url is not None:
            scheme = urlsplit(self.redis_url).scheme
            if scheme not in {"redis", "rediss", "unix"}:
                raise ConfigError(
                    f"REDIS_URL must start with redis://, rediss:// or unix://, got "
                    f"{redact_url(self.redis_url)!r}"
                )
            check_url_options(self.redis_url, insecure=self.redis_tls_insecure)
        if self.environment is not None and not _ENVIRONMENT.fullmatch(self.environment):
            raise ConfigError(
                "ECHOES_OPS_ENVIRONMENT must be a short name (letters, digits, '-', '_', '.'; "
                f"at most 32), got {self.environment!r}"
            )
        if self.redis_sentinels and not self.redis_sentinel_master:
            raise ConfigError("REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not")
        if self.is_cluster and self.redis_sentinels:
            raise ConfigError(
                "REDIS_CLUSTER and REDIS_SENTINELS are both set: a tier is a cluster or a "
                "Sentinel group, not both"
            )
        if self.is_cluster and self.redis_url and self.redis_url.startswith("unix://"):
            raise ConfigError("REDIS_CLUSTER needs host:port seed nodes, not a unix:// socket")
        if self.is_cluster and self.redis_db:
            raise ConfigError(f"Redis Cluster has only database 0, REDIS_DB is {self.redis_db}")
        if self.is_cluster and self.redis_url:
            path_db = urlsplit(UrlParts.parse(self.redis_url).without_credentials()).path
            if path_db.strip("/") not in ("", "0"):
                raise ConfigError(
                    f"Redis Cluster has only database 0, REDIS_URL names database "
                    f"{path_db.strip('/')}: {redact_url(self.redis_url)}"
                )
        if self.read_from not in READ_FROM:
            raise ConfigError(
                f"ECHOES_OPS_READ_FROM must be one of {', '.join(READ_FROM)}, got {self.read_from!r}"
            )
        if self.redis_cluster_nodes:
            for item in self.redis_cluster_nodes.split(","):
                if item.strip():  # a trailing comma is no node (as redis_target reads it)
                    _parse_hostport(item, what="REDIS_CLUSTER_NODES")
        if self.database_url is not None:
            scheme = urlsplit(self.database_url.reveal()).scheme
            if scheme not in {"postgres", "postgresql"}:
                raise ConfigError(
                    "DATABASE_URL must start with postgresql://, got "
                    f"{redact_url(self.database_url.reveal())!r}"
                )

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: _coerce(k, v) for k, v in changes.items()})

    # -- derived ------------------------------------------------------------------------

    def redis_target(self) -> RedisTarget:
        """Where and how to connect to Redis, password split out of the URL."""
        password = self._password()
        if self.redis_url:
            parts = UrlParts.parse(self.redis_url)
            username = parts.username or self.redis_username
            if parts.secret:
                password = Secret(parts.secret)
            clean, _ = pop_cluster_option(parts.without_credentials())
        else:
            scheme = "rediss" if self.redis_tls else "redis"
            host = f"[{self.redis_host}]" if ":" in self.redis_host else self.redis_host
            clean = f"{scheme}://{host}:{self.redis_port}/{self.redis_db}"
            username = self.redis_username
        sentinels: tuple[tuple[str, int], ...] = ()
        seeds: tuple[tuple[str, int], ...] = ()
        if self.redis_cluster_nodes:
            seeds = tuple(
                _parse_hostport(item, what="REDIS_CLUSTER_NODES")
                for item in self.redis_cluster_nodes.split(",")
                if item.strip()
            )
        if self.redis_sentinels:
            sentinels = tuple(_parse_hostport(item) for item in self.redis_sentinels.split(","))
        return RedisTarget(
            url=clean,
            password=password,
            username=username or None,
            ca_file=self.redis_ca_file,
            sentinels=sentinels,
            sentinel_master=self.redis_sentinel_master,
            timeout=self.redis_timeout,
            dead_after=self.dead_after,
            tls_insecure=self.redis_tls_insecure,
            pubsub_mode=self.pubsub_mode,
            cluster=self.is_cluster,
            cluster_nodes=seeds,
            read_from=self.read_from,
            walk_duty=self.walk_duty,
            step_gate=self.step_gate,
        )

    @property
    def is_cluster(self) -> bool:
        """Redis Cluster: REDIS_CLUSTER=true, or ``?cluster=true`` on REDIS_URL (either says so)."""
        if self.redis_cluster:
            return True
        if not self.redis_url:
            return False
        return bool(pop_cluster_option(self.redis_url)[1])

    @property
    def tls_unverified(self) -> bool:
        """TLS is used and the server certificate is not verified (--insecure)."""
        tls = self.redis_tls or bool(self.redis_url and self.redis_url.startswith("rediss://"))
        return tls and self.redis_tls_insecure

    def _password(self) -> Secret | None:
        if self.redis_password_file:
            try:
                text = Path(self.redis_password_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read REDIS_PASSWORD_FILE {self.redis_password_file}: {exc.strerror}"
                ) from None
            return Secret(text) if text else None
        if self.redis_password:
            return self.redis_password
        return None

    def pg_timeouts(self) -> PgTimeouts:
        return PgTimeouts(statement=self.pg_statement_timeout, lock=self.pg_lock_timeout)

    def flag_timeouts(self) -> PgTimeouts:
        return switch_timeouts(self.flags_timeout)

    def database_dsn(self) -> str | None:
        return self.database_url.reveal() if self.database_url else None

    @property
    def database_display(self) -> str | None:
        return redact_url(self.database_url.reveal()) if self.database_url else None

    def operator_name(self) -> str:
        if self.operator:
            return self.operator
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "unknown"


_SECRETS = {"redis_password", "database_url"}
_INTS = {"redis_port": (1, 65535), "redis_db": (0, 10_000)}
_SECONDS = {
    "redis_timeout",
    "dead_after",
    "pg_statement_timeout",
    "pg_lock_timeout",
    "flags_timeout",
}

_WALK = {"walk_duty": as_walk_duty, "nice": as_nice, "step_gate": as_step_gate}


def _coerce(name: str, value: Any) -> Any:
    if name in _SECRETS:
        if isinstance(value, Secret):
            return value if value else None
        text = str(value)
        return Secret(text) if text else None  # empty REDIS_PASSWORD means none
    if name in _INTS:
        low, high = _INTS[name]
        return as_int(ENV_VARS.get(name, name).upper(), value, low=low, high=high)
    if name in {"redis_tls", "redis_tls_insecure", "redis_cluster"}:
        return as_bool(ENV_VARS[name], value)
    if name in _SECONDS:
        return as_float(ENV_VARS[name], value)
    if name == "pubsub_mode":
        return check_pubsub_mode(value)
    if name in _WALK:
        return _WALK[name](ENV_VARS[name], value)
    text = str(value)
    return text if text != "" else None


def _parse_hostport(item: str, *, what: str = "REDIS_SENTINELS") -> tuple[str, int]:
    host, sep, port = item.strip().rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{what} entries must be host:port, got {item!r}")
    return host.strip("[]"), as_int(f"{what} port", port, low=1, high=65535)


def _read_config_file(path: Path) -> dict[str, Any]:
    import yaml  # only with a config file: most runs have none

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: config file is not valid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: config file must be a mapping of setting: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}
