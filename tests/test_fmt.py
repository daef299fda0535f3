"""One way to write a duration, a size, a TTL, a count and a time, for both faces."""

from __future__ import annotations

import re
import time

import pytest

from echoes_ops import fmt
from tests.cli_helpers import cli


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "?"),
        (-3, "0s"),
        (0, "0s"),
        (45.9, "45s"),
        (60, "1m00s"),
        (1799.0, "29m59s"),
        (1798.4, "29m58s"),
        (3600, "1h00m"),
        (7800, "2h10m"),
        (3 * 86400 + 4 * 3600 + 59, "3d04h"),
    ],
)
def test_duration(seconds, text):
    assert fmt.duration(seconds) == text


def test_timing_keeps_sub_second_precision():
    assert fmt.timing(0.4213) == "0.42s"
    assert fmt.timing(75) == "1m15s"
    assert fmt.age(12.2) == "12s ago"
    assert fmt.age(None) == "unknown"


@pytest.mark.parametrize(
    ("value", "text"),
    [(-1, "no TTL"), (-2, "gone"), (1800, "30m00s"), (2.5, "2.5s"), (None, "?")],
)
def test_ttl(value, text):
    assert fmt.ttl(value) == text


def test_ttl_ms():
    assert fmt.ttl_ms(-1) == "no TTL"
    assert fmt.ttl_ms(-2) == "gone"
    assert fmt.ttl_ms(2500) == "2.5s"
    assert fmt.ttl_ms(600_000) == "10m00s"


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (3 * 2**20, "3.0 MiB"),
        (5 * 2**40, "5.0 TiB"),
    ],
)
def test_size(n, text):
    assert fmt.size(n) == text


def test_numbers_and_percent():
    assert fmt.number(1234567) == "1,234,567"
    assert fmt.number(1234.56) == "1,234.6"
    assert fmt.percent(0.975) == "97.5%"
    assert fmt.percent(None) == "-"


def test_timestamp_names_its_zone(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert fmt.timestamp(0) == "1970-01-01 00:00:00 UTC"
        assert fmt.timestamp(None) == "-"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


UPTIME = re.compile(r"up (\d+s|\d+m\d\ds|\d+h\d\dm|\d+d\d\dh)\b")


def test_status_and_stats_word_uptime_the_same_way(redis_url):
    """``status`` said ``up 0m 12s`` and ``stats`` ``up 12 s``: both now say ``up 12s``."""
    env = {"REDIS_URL": redis_url}
    status = cli("status", env=env)
    stats = cli("stats", env=env)
    assert status.code == 0, status.stderr
    assert stats.code == 0, stats.stderr
    assert UPTIME.search(status.stdout), status.stdout
    assert UPTIME.search(stats.stdout), stats.stdout
    assert not re.search(r"\d s\b", stats.stdout.split("\n", 1)[0]), stats.stdout
