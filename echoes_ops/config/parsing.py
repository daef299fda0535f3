"""Reading the settings: the environment variable of each setting, the YAML config file,
each raw value (a flag's, an env var's or the file's) coerced and checked, and the checks
across settings once they are read."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from echoes_ops.config.environment import check_environment
from echoes_ops.config.targets import PUBSUB_MODES, PubSubMode
from echoes_ops.config.urls import Secret, UrlParts, check_url_options, redact_url
from echoes_ops.config.values import as_bool, as_float, as_int
from echoes_ops.config.walk import as_nice, as_step_gate, as_walk_duty
from echoes_ops.errors import ConfigError

if TYPE_CHECKING:
    from echoes_ops.config import Settings

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


def coerce(name: str, value: Any) -> Any:
    """The raw ``value`` of setting ``name`` (text from the environment or a file, or a flag's
    value) as the type the setting holds; ConfigError naming its env var otherwise."""
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


def parse_hostport(item: str, *, what: str = "REDIS_SENTINELS") -> tuple[str, int]:
    """One ``host:port`` of a list setting (``[v6]:port`` too)."""
    host, sep, port = item.strip().rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{what} entries must be host:port, got {item!r}")
    return host.strip("[]"), as_int(f"{what} port", port, low=1, high=65535)


def read_config_file(path: Path) -> dict[str, Any]:
    """The YAML config file as ``setting: value`` (``-`` in names read as ``_``)."""
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


def check_settings(settings: Settings) -> None:
    """ConfigError for settings that are each valid but make no sense together (or a URL
    this tool refuses)."""
    if settings.redis_url is not None:
        scheme = urlsplit(settings.redis_url).scheme
        if scheme not in {"redis", "rediss", "unix"}:
            raise ConfigError(
                f"REDIS_URL must start with redis://, rediss:// or unix://, got "
                f"{redact_url(settings.redis_url)!r}"
            )
        check_url_options(settings.redis_url, insecure=settings.redis_tls_insecure)
    check_environment(settings.environment)
    if settings.redis_sentinels and not settings.redis_sentinel_master:
        raise ConfigError("REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not")
    if settings.is_cluster and settings.redis_sentinels:
        raise ConfigError(
            "REDIS_CLUSTER and REDIS_SENTINELS are both set: a tier is a cluster or a "
            "Sentinel group, not both"
        )
    if settings.is_cluster and settings.redis_url and settings.redis_url.startswith("unix://"):
        raise ConfigError("REDIS_CLUSTER needs host:port seed nodes, not a unix:// socket")
    if settings.is_cluster and settings.redis_db:
        raise ConfigError(f"Redis Cluster has only database 0, REDIS_DB is {settings.redis_db}")
    if settings.is_cluster and settings.redis_url:
        path_db = urlsplit(UrlParts.parse(settings.redis_url).without_credentials()).path
        if path_db.strip("/") not in ("", "0"):
            raise ConfigError(
                f"Redis Cluster has only database 0, REDIS_URL names database "
                f"{path_db.strip('/')}: {redact_url(settings.redis_url)}"
            )
    if settings.read_from not in READ_FROM:
        raise ConfigError(
            f"ECHOES_OPS_READ_FROM must be one of {', '.join(READ_FROM)}, got {settings.read_from!r}"
        )
    if settings.redis_cluster_nodes:
        for item in settings.redis_cluster_nodes.split(","):
            if item.strip():  # a trailing comma is no node (as redis_target reads it)
                parse_hostport(item, what="REDIS_CLUSTER_NODES")
    if settings.database_url is not None:
        scheme = urlsplit(settings.database_url.reveal()).scheme
        if scheme not in {"postgres", "postgresql"}:
            raise ConfigError(
                "DATABASE_URL must start with postgresql://, got "
                f"{redact_url(settings.database_url.reveal())!r}"
            )
