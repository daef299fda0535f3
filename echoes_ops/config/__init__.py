"""Settings: where Redis and PostgreSQL are, and how to reach them.

Sources, highest first: command-line flags > environment variables > the YAML config file
(``--config`` / ``ECHOES_OPS_CONFIG``) > defaults. Secrets are held in :class:`Secret`, which
never shows its value in ``str``/``repr``; URLs are only ever displayed through
:func:`redact_url`.

This module holds the :class:`Settings` dataclass; by concern, the rest lives beside it and
is importable from here as before: ``parsing.py`` (each setting's env var, the config file,
coercion, the checks across settings), ``targets.py`` (what the layers below get:
``RedisTarget``, ``PgTimeouts``), ``environment.py`` (the environment's name), ``urls.py``
(secrets, redaction, REDIS_URL options), ``values.py`` (words as values) and ``walk.py`` (the
walk, priority and gate settings).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from echoes_ops.config.environment import looks_like_production, on_environment
from echoes_ops.config.parsing import (
    CONFIG_ENV_VAR,
    ENV_VARS,
    READ_FROM,
    check_pubsub_mode,
    check_settings,
    coerce,
    parse_hostport,
    read_config_file,
)
from echoes_ops.config.targets import (
    FLAGS_TIMEOUT,
    PUBSUB_MODES,
    PgTimeouts,
    PubSubMode,
    RedisTarget,
    switch_timeouts,
)
from echoes_ops.config.urls import (
    REDACTED,
    Secret,
    UrlParts,
    build_redis_url,
    pop_cluster_option,
    redact_url,
    url_has_password,
)
from echoes_ops.config.urls import check_url_options as check_url_options
from echoes_ops.config.values import FALSE_WORDS, TRUE_WORDS, parse_bool
from echoes_ops.config.values import as_bool as as_bool
from echoes_ops.config.values import as_float as as_float
from echoes_ops.config.values import as_int as as_int
from echoes_ops.config.walk import DEFAULT_NICE, DEFAULT_STEP_GATE, DEFAULT_WALK_DUTY
from echoes_ops.config.walk import as_nice as as_nice
from echoes_ops.config.walk import as_step_gate as as_step_gate
from echoes_ops.config.walk import as_walk_duty as as_walk_duty
from echoes_ops.errors import ConfigError

__all__ = [
    "CONFIG_ENV_VAR",
    "ENV_VARS",
    "FALSE_WORDS",
    "FLAGS_TIMEOUT",
    "PUBSUB_MODES",
    "READ_FROM",
    "REDACTED",
    "TRUE_WORDS",
    "PgTimeouts",
    "PubSubMode",
    "RedisTarget",
    "Secret",
    "Settings",
    "build_redis_url",
    "check_pubsub_mode",
    "looks_like_production",
    "on_environment",
    "parse_bool",
    "redact_url",
    "switch_timeouts",
    "url_has_password",
]


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
            merged.update(read_config_file(Path(path)))
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
            values[name] = coerce(name, value)
        settings = cls(**values)
        check_settings(settings)
        return settings

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: coerce(k, v) for k, v in changes.items()})

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
                parse_hostport(item, what="REDIS_CLUSTER_NODES")
                for item in self.redis_cluster_nodes.split(",")
                if item.strip()
            )
        if self.redis_sentinels:
            sentinels = tuple(parse_hostport(item) for item in self.redis_sentinels.split(","))
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
