"""Secrets and URLs (echoes_ops/config/urls.py): a secret never prints its value, URLs are
shown redacted, REDIS_URL is built with its password escaped."""

from __future__ import annotations

import pytest

from echoes_ops.config import Secret, Settings, build_redis_url, redact_url, url_has_password

SECRET = "s3cr3t-Pw"


def test_secret_never_prints_its_value() -> None:
    secret = Secret(SECRET)
    assert SECRET not in repr(secret)
    assert SECRET not in str(secret)
    assert SECRET not in f"{secret}"
    assert secret.reveal() == SECRET
    assert secret == Secret(SECRET)
    assert secret != Secret("other")
    assert not Secret("")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://user:{SECRET}@host:6379/0", "redis://user:***@host:6379/0"),
        (f"redis://:{SECRET}@host:6379", "redis://:***@host:6379"),
        (f"rediss://default:{SECRET}@h:6380/1", "rediss://default:***@h:6380/1"),
        (f"postgresql://ops:{SECRET}@db:5432/game", "postgresql://ops:***@db:5432/game"),
        (
            f"postgres://ops:{SECRET}@db/game?sslmode=require",
            "postgres://ops:***@db/game?sslmode=require",
        ),
        (f"redis://u:{SECRET}@ss@host/0", "redis://u:***@host/0"),  # unescaped '@'
        (f"redis://u:{SECRET}@[::1]:6379", "redis://u:***@[::1]:6379"),
        (f"unix://:{SECRET}@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
        ("redis://user@host:6379", "redis://user@host:6379"),
        ("redis://host:6379/0", "redis://host:6379/0"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert SECRET not in redact_url(url)


def test_redact_url_unparseable() -> None:
    assert SECRET not in redact_url(f"redis://:{SECRET}@[bad")


def test_url_has_password() -> None:
    assert url_has_password(f"redis://:{SECRET}@h")
    assert not url_has_password("redis://user@h")
    assert not url_has_password("redis://:@h")
    assert not url_has_password("redis://[bad")


def test_build_redis_url_escapes_the_password() -> None:
    url = build_redis_url("127.0.0.1", 6390, 1, "p@ss/w:rd")
    assert url == "redis://:p%40ss%2Fw%3Ard@127.0.0.1:6390/1"
    target = Settings.from_dsn(url).redis_target()
    assert target.password is not None
    assert target.password.reveal() == "p@ss/w:rd"
    assert build_redis_url("h", 1) == "redis://h:1/0"
