"""Settings: echoes_ops/config (the dataclass, reading and checking, targets; secrets and URLs
alone: test_config_urls.py)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from echoes_ops.config import (
    REDACTED,
    RedisTarget,
    Secret,
    Settings,
    redact_url,
)
from echoes_ops.errors import ConfigError

SECRET = "s3cr3t-Pw"


def _config(tmp_path: Path, text: str, name: str = "echoes.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _all_output(settings: Settings) -> str:
    target = settings.redis_target()
    return " ".join(
        [
            repr(settings),
            str(settings),
            repr(target),
            str(target),
            target.url,
            target.display,
            settings.database_display or "",
        ]
    )


# -- defaults and precedence ------------------------------------------------------------


def test_defaults() -> None:
    settings = Settings.load(env={})
    assert settings.redis_url is None
    assert (settings.redis_host, settings.redis_port, settings.redis_db) == ("localhost", 6379, 0)
    assert settings.redis_password is None
    assert settings.redis_tls is False
    assert settings.redis_timeout == 5.0
    assert settings.config_file is None
    target = settings.redis_target()
    assert target == RedisTarget(url="redis://localhost:6379/0")


def test_load_ignores_the_process_environment_when_env_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_PORT", "7777")
    assert Settings.load(env={}).redis_port == 6379
    assert Settings.load().redis_port == 7777


def test_config_file_over_defaults(tmp_path: Path) -> None:
    path = _config(tmp_path, "redis_host: cache.internal\nredis_port: 6380\n")
    settings = Settings.load(env={}, config_file=path)
    assert settings.redis_host == "cache.internal"
    assert settings.redis_port == 6380
    assert settings.config_file == str(path)


def test_env_over_config_file(tmp_path: Path) -> None:
    path = _config(tmp_path, "redis_host: from-file\nredis_port: 6380\n")
    settings = Settings.load(env={"REDIS_HOST": "from-env"}, config_file=path)
    assert settings.redis_host == "from-env"
    assert settings.redis_port == 6380


def test_flags_over_env_over_file(tmp_path: Path) -> None:
    path = _config(tmp_path, "redis_host: from-file\nredis_db: 1\nredis_port: 6380\n")
    settings = Settings.load(
        flags={"redis_host": "from-flag"},
        env={"REDIS_HOST": "from-env", "REDIS_DB": "2"},
        config_file=path,
    )
    assert settings.redis_host == "from-flag"
    assert settings.redis_db == 2
    assert settings.redis_port == 6380


def test_unset_flags_do_not_override() -> None:
    settings = Settings.load(flags={"redis_host": None}, env={"REDIS_HOST": "from-env"})
    assert settings.redis_host == "from-env"


def test_config_file_from_env_var_and_from_flag(tmp_path: Path) -> None:
    by_env = _config(tmp_path, "redis_port: 6390\n", "env.yaml")
    by_flag = _config(tmp_path, "redis_port: 6391\n", "flag.yaml")
    assert Settings.load(env={"ECHOES_OPS_CONFIG": str(by_env)}).redis_port == 6390
    settings = Settings.load(
        flags={"config_file": str(by_flag)}, env={"ECHOES_OPS_CONFIG": str(by_env)}
    )
    assert settings.redis_port == 6391
    assert settings.config_file == str(by_flag)


def test_config_file_accepts_dashed_keys(tmp_path: Path) -> None:
    path = _config(tmp_path, "redis-host: dashed\nredis-tls: true\n")
    settings = Settings.load(env={}, config_file=path)
    assert settings.redis_host == "dashed"
    assert settings.redis_tls is True


def test_empty_config_file_is_all_defaults(tmp_path: Path) -> None:
    path = _config(tmp_path, "# nothing yet\n")
    assert Settings.load(env={}, config_file=path).redis_port == 6379


# -- REDIS_HOST / PORT / DB / PASSWORD --------------------------------------------------


def test_plan_variables_compose_the_target() -> None:
    env = {"REDIS_HOST": "redis", "REDIS_PORT": "6380", "REDIS_DB": "2", "REDIS_PASSWORD": SECRET}
    target = Settings.load(env=env).redis_target()
    assert target.url == "redis://redis:6380/2"
    assert target.password == Secret(SECRET)
    assert target.password is not None
    assert target.password.reveal() == SECRET
    assert SECRET not in target.display


def test_tls_and_ipv6_host() -> None:
    target = Settings.load(env={"REDIS_HOST": "::1", "REDIS_TLS": "true"}).redis_target()
    assert target.url == "rediss://[::1]:6379/0"


def test_username_from_env() -> None:
    target = Settings.load(env={"REDIS_USERNAME": "ops"}).redis_target()
    assert target.username == "ops"


def test_empty_redis_password_means_none() -> None:
    settings = Settings.load(env={"REDIS_PASSWORD": ""})
    assert settings.redis_password is None
    assert settings.redis_target().password is None


def test_password_file_is_read_and_stripped(tmp_path: Path) -> None:
    secret_file = tmp_path / "redis.pass"
    secret_file.write_text(f"{SECRET}\n", encoding="utf-8")
    settings = Settings.load(env={"REDIS_PASSWORD_FILE": str(secret_file)})
    target = settings.redis_target()
    assert target.password is not None
    assert target.password.reveal() == SECRET
    assert SECRET not in _all_output(settings)


def test_empty_password_file_means_none(tmp_path: Path) -> None:
    secret_file = tmp_path / "redis.pass"
    secret_file.write_text("\n", encoding="utf-8")
    settings = Settings.load(env={"REDIS_PASSWORD_FILE": str(secret_file)})
    assert settings.redis_target().password is None


def test_unreadable_password_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pass"
    settings = Settings.load(env={"REDIS_PASSWORD_FILE": str(missing)})
    with pytest.raises(ConfigError, match="REDIS_PASSWORD_FILE") as info:
        settings.redis_target()
    assert str(missing) in str(info.value)


# -- REDIS_URL --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "clean", "username"),
    [
        (f"redis://:{SECRET}@cache:6379/0", "redis://cache:6379/0", None),
        (f"redis://ops:{SECRET}@cache:6379/3", "redis://cache:6379/3", "ops"),
        (
            f"rediss://default:{SECRET}@cache.example:6380/1",
            "rediss://cache.example:6380/1",
            "default",
        ),
        (f"redis://ops:{SECRET}@[::1]:6379", "redis://[::1]:6379", "ops"),
    ],
)
def test_url_password_is_split_out(url: str, clean: str, username: str | None) -> None:
    settings = Settings.load(env={"REDIS_URL": url})
    target = settings.redis_target()
    assert target.url == clean
    assert target.username == username
    assert target.password is not None
    assert target.password.reveal() == SECRET
    assert SECRET not in _all_output(settings)


def test_unix_socket_url_password_is_split_out() -> None:
    settings = Settings.load(env={"REDIS_URL": f"unix://:{SECRET}@/run/redis.sock?db=2"})
    target = settings.redis_target()
    parts = urlsplit(target.url)
    assert (parts.scheme, parts.netloc, parts.path, parts.query) == (
        "unix",
        "",
        "/run/redis.sock",
        "db=2",
    )
    assert target.password == Secret(SECRET)
    assert SECRET not in _all_output(settings)


def test_url_password_is_percent_decoded() -> None:
    target = Settings.load(env={"REDIS_URL": "redis://u:p%40ss%2Fw@h:6379/0"}).redis_target()
    assert target.password is not None
    assert target.password.reveal() == "p@ss/w"
    assert target.url == "redis://h:6379/0"


def test_url_without_password_keeps_env_password() -> None:
    env = {"REDIS_URL": "redis://cache:6379/0", "REDIS_PASSWORD": SECRET}
    target = Settings.load(env=env).redis_target()
    assert target.password == Secret(SECRET)


def test_empty_redis_url_falls_back_to_host_and_port() -> None:
    target = Settings.load(env={"REDIS_URL": "", "REDIS_HOST": "h"}).redis_target()
    assert target.url == "redis://h:6379/0"


@pytest.mark.parametrize(
    "url", ["http://cache:6379", "cache:6379", f"postgresql://u:{SECRET}@db/x", "ftp://x"]
)
def test_bad_redis_url_schemes_are_rejected_without_leaking(url: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_URL") as info:
        Settings.load(env={"REDIS_URL": url})
    assert SECRET not in str(info.value)


def test_database_url() -> None:
    url = f"postgresql://game:{SECRET}@db:5432/echoes"
    settings = Settings.load(env={"DATABASE_URL": url})
    assert settings.database_dsn() == url
    assert settings.database_display == f"postgresql://game:{REDACTED}@db:5432/echoes"
    assert SECRET not in _all_output(settings)


@pytest.mark.parametrize("url", [f"mysql://u:{SECRET}@db/x", "db:5432", "redis://db"])
def test_bad_database_url_scheme_is_rejected_without_leaking(url: str) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL") as info:
        Settings.load(env={"DATABASE_URL": url})
    assert SECRET not in str(info.value)


def test_from_dsn() -> None:
    settings = Settings.from_dsn(f"redis://:{SECRET}@h:1/0", f"postgres://u:{SECRET}@d/x")
    assert settings.redis_target().url == "redis://h:1/0"
    assert settings.database_dsn() == f"postgres://u:{SECRET}@d/x"
    assert SECRET not in _all_output(settings)


# -- secrets never shown ----------------------------------------------------------------


def test_repr_and_str_never_show_secrets() -> None:
    settings = Settings.load(
        env={
            "REDIS_URL": f"redis://ops:{SECRET}@cache:6379/0",
            "REDIS_PASSWORD": SECRET + "-2",
            "DATABASE_URL": f"postgresql://game:{SECRET}-3@db/echoes",
        }
    )
    for text in (repr(settings), str(settings), f"{settings}", f"{settings!r}"):
        assert SECRET not in text
        assert "ops" in text  # the user name stays visible


@pytest.mark.parametrize("password", ["pa#ss", "pa?ss", "pa/ss"])
def test_unescaped_special_characters_in_password_never_leak(password: str) -> None:
    url = f"redis://:{password}@cache:6379/0"
    assert password not in redact_url(url)
    assert password not in _all_output(Settings.load(env={"REDIS_URL": url}))


# -- invalid values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("REDIS_PORT", "abc"),
        ("REDIS_PORT", "0"),
        ("REDIS_PORT", "65536"),
        ("REDIS_PORT", "-1"),
        ("REDIS_PORT", "6379.5"),
        ("REDIS_PORT", ""),
        ("REDIS_DB", "x"),
        ("REDIS_DB", "-1"),
        ("REDIS_DB", "10001"),
        ("REDIS_TLS", "maybe"),
        ("REDIS_TLS", "2"),
        ("REDIS_TIMEOUT", "soon"),
        ("REDIS_TIMEOUT", "0"),
        ("REDIS_TIMEOUT", "-1"),
    ],
)
def test_invalid_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var) as info:
        Settings.load(env={var: value})
    assert repr(value) in str(info.value) or value.strip() in str(info.value)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_timeouts_are_rejected(value: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_TIMEOUT"):
        Settings.load(env={"REDIS_TIMEOUT": value})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        ("on", True),
        ("0", False),
        ("off", False),
        ("", False),
    ],
)
def test_tls_spellings(value: str, expected: bool) -> None:
    assert Settings.load(env={"REDIS_TLS": value}).redis_tls is expected


def test_values_are_coerced_from_text() -> None:
    settings = Settings.load(env={"REDIS_PORT": " 6380 ", "REDIS_DB": "15", "REDIS_TIMEOUT": "0.5"})
    assert (settings.redis_port, settings.redis_db, settings.redis_timeout) == (6380, 15, 0.5)


def test_invalid_value_in_config_file_names_the_variable(tmp_path: Path) -> None:
    path = _config(tmp_path, "redis_port: lots\n")
    with pytest.raises(ConfigError, match="REDIS_PORT"):
        Settings.load(env={}, config_file=path)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = _config(tmp_path, "redis_host: ok\n  redis_port: 6379\nredis_db: 1\n")
    with pytest.raises(ConfigError, match="YAML") as info:
        Settings.load(env={}, config_file=path)
    assert str(info.value).startswith(f"{path}:2: ")


def test_yaml_tab_error_names_its_line(tmp_path: Path) -> None:
    path = _config(tmp_path, "redis_host: ok\nredis_port: 6379\n\tredis_db: 1\n")
    with pytest.raises(ConfigError, match=rf"^{path}:3: "):
        Settings.load(env={}, config_file=path)


def test_config_file_must_be_a_mapping(tmp_path: Path) -> None:
    path = _config(tmp_path, "- redis_host\n- redis_port\n")
    with pytest.raises(ConfigError, match="mapping"):
        Settings.load(env={}, config_file=path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        Settings.load(env={}, config_file=tmp_path / "missing.yaml")


def test_unknown_config_keys_are_rejected(tmp_path: Path) -> None:
    path = _config(tmp_path, "redis_hots: typo\nREDIS_PORT: 6380\n")
    with pytest.raises(ConfigError, match="unknown setting") as info:
        Settings.load(env={}, config_file=path)
    assert "redis_hots" in str(info.value)
    assert "REDIS_PORT" in str(info.value)


def test_unknown_flags_are_rejected() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        Settings.load(flags={"bogus": 1}, env={})


def test_unrelated_env_vars_are_ignored() -> None:
    assert Settings.load(env={"REDIS_SOMETHING_ELSE": "x", "PATH": "/bin"}).redis_port == 6379


# -- sentinel ---------------------------------------------------------------------------


def test_sentinel_parsing() -> None:
    env = {
        "REDIS_SENTINELS": "s1:26379, s2.example:26380,[::1]:26381",
        "REDIS_SENTINEL_MASTER": "mymaster",
    }
    target = Settings.load(env=env).redis_target()
    assert target.sentinels == (("s1", 26379), ("s2.example", 26380), ("::1", 26381))
    assert target.sentinel_master == "mymaster"
    assert target.display == "sentinel://s1:26379,s2.example:26380,::1:26381/mymaster"


def test_sentinels_need_a_master_name() -> None:
    with pytest.raises(ConfigError, match="REDIS_SENTINEL_MASTER"):
        Settings.load(env={"REDIS_SENTINELS": "s1:26379"})


@pytest.mark.parametrize("sentinels", ["s1", "s1:", ":26379", "s1:port", "s1:70000"])
def test_bad_sentinel_entries(sentinels: str) -> None:
    settings = Settings.load(
        env={"REDIS_SENTINELS": sentinels, "REDIS_SENTINEL_MASTER": "mymaster"}
    )
    with pytest.raises(ConfigError, match=r"(?i)sentinel"):
        settings.redis_target()


def test_sentinel_password_stays_secret() -> None:
    env = {
        "REDIS_SENTINELS": "s1:26379",
        "REDIS_SENTINEL_MASTER": "mymaster",
        "REDIS_PASSWORD": SECRET,
    }
    settings = Settings.load(env=env)
    assert settings.redis_target().password == Secret(SECRET)
    assert SECRET not in _all_output(settings)


# -- misc -------------------------------------------------------------------------------


def test_with_overrides_coerces() -> None:
    settings = Settings.load(env={}).with_overrides(redis_port="6390", redis_tls="yes")
    assert settings.redis_port == 6390
    assert settings.redis_tls is True
    with pytest.raises(ConfigError, match="REDIS_PORT"):
        settings.with_overrides(redis_port="x")


def test_operator_name() -> None:
    assert Settings.load(env={"ECHOES_OPS_OPERATOR": "alice"}).operator_name() == "alice"
    assert Settings.load(env={}).operator_name()


def test_a_cluster_url_naming_another_database_is_refused() -> None:
    """redis://h:7000/3?cluster=true would silently run against database 0."""
    with pytest.raises(ConfigError, match="only database 0, REDIS_URL names database 3"):
        Settings.load(env={"REDIS_URL": "redis://127.0.0.1:7000/3?cluster=true"})
    settings = Settings.load(env={"REDIS_URL": "redis://127.0.0.1:7000/0?cluster=true"})
    assert settings.is_cluster


def test_a_trailing_comma_in_the_cluster_nodes_is_no_node() -> None:
    settings = Settings.load(
        env={"REDIS_URL": "redis://127.0.0.1:7000?cluster=true", "REDIS_CLUSTER_NODES": "h:7001,"}
    )
    assert settings.is_cluster
