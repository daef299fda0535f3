"""benchmarks/impact_holds.py: a window's longest command of ours includes a transaction's whole
EXEC, which Redis 7.0's SLOWLOG never lists (the arithmetic on SLOWLOG-shaped rows, and on a
real redis-server the hold against INFO commandstats)."""

from __future__ import annotations

import redis

from benchmarks.impact_holds import (
    PERCENTILES,
    Entry,
    entries,
    latency_maxima,
    longest_any,
    longest_of_ours,
    transactions,
)
from echoes_ops.local.redis_server import RedisServer

OP, PROBE = "10.0.0.1:5000", "10.0.0.2:6000"


def _e(id_: int, micros: int, command: str, peer: str = OP, name: str = "") -> Entry:
    return Entry(id_, micros, command, peer, name)


def test_a_transaction_is_its_clients_run_of_entries_after_its_multi() -> None:
    log = [
        _e(1, 1, "MULTI"),
        _e(2, 30, "HSET", PROBE, "probe"),  # ran while ours queued: not in the EXEC
        _e(3, 200, "HSET"),
        _e(4, 5, "SET", "?:0"),  # a script's inner call inside the EXEC: its EVALSHA counts it
        _e(5, 300, "EVALSHA"),
        _e(6, 100, "DEL"),
        _e(7, 20, "SADD", PROBE, "probe"),  # the EXEC is over
        _e(8, 400, "SCAN"),  # ours, after the EXEC: not in it
        _e(9, 1, "MULTI", PROBE, "probe"),
        _e(10, 3, "SREM", PROBE, "probe"),
        _e(11, 1, "MULTI", PROBE, "probe"),  # the probe's next MULTI ends its first
        _e(12, 4, "SADD", PROBE, "probe"),
    ]
    ours, probe_first, probe_second = transactions(log)
    assert (ours.peer, ours.commands, ours.inner_micros) == (OP, 3, 600)
    assert (probe_first.name, probe_first.commands, probe_first.inner_micros) == ("probe", 1, 3)
    assert (probe_second.commands, probe_second.inner_micros) == (1, 4)


def test_the_exec_hold_from_latencystats_is_ours_when_we_ran_a_transaction() -> None:
    log = [_e(1, 1, "MULTI"), _e(2, 700, "HSET"), _e(3, 600, "HSET"), _e(4, 900, "SCAN")]
    stats = {"EXEC": (2400.0, 2500.0), "HSET": (2.0, 700.0), "SLOWLOG|GET": (9000.0, 9000.0)}
    top = longest_of_ours(entries_of(log), stats, {"probe"})
    # the longest single entry is 0.9 ms: the EXEC of both HSETs held the server 2.5 ms
    assert (top.ms, top.name, top.transactions, top.exec_ms) == (2.5, "EXEC", 1, 2.5)
    assert top.over_budget == 1
    assert top.count == 5  # MULTI, 2 HSET, SCAN (entries) and the transaction
    assert longest_any(stats) == (2.5, "EXEC")  # the benchmark's SLOWLOG read left out


def test_the_probes_transactions_alone_are_not_charged_to_the_operation() -> None:
    log = [
        _e(1, 1, "MULTI", PROBE, "probe"),
        _e(2, 30, "SREM", PROBE, "probe"),
        _e(3, 800, "SCAN"),
        _e(4, 5, "SET", "?:0"),  # a script's inner call: not a command of ours by itself
    ]
    top = longest_of_ours(entries_of(log), {"EXEC": (3000.0, 3000.0)}, {"probe"})
    assert (top.ms, top.name, top.transactions, top.exec_ms, top.count) == (0.8, "SCAN", 0, 0, 1)


def entries_of(log: list[Entry]) -> list[Entry]:
    """The same entries through :func:`entries`, as SLOWLOG GET's raw rows, newest first."""
    raw = [
        [e.id, 0, e.micros, [e.command.encode(), b"k"], e.peer.encode(), e.name.encode()]
        for e in reversed(log)
    ]
    return entries(raw)


def test_on_a_real_server_the_exec_hold_is_the_servers_not_its_entries_sum(
    private_redis: RedisServer,
) -> None:
    private_redis.start()
    r = redis.Redis.from_url(private_redis.url)
    try:
        r.config_set("slowlog-log-slower-than", 0)
        r.config_set("slowlog-max-len", 100_000)
        r.config_set("latency-tracking-info-percentiles", PERCENTILES)
        r.client_setname("operation")
        r.slowlog_reset()
        r.config_resetstat()
        pipe = r.pipeline(transaction=True)
        for i in range(5_000):
            pipe.hset(f"h{i}", mapping={"a": "x" * 20, "b": i})
        pipe.execute()
        log = entries(r.execute_command("SLOWLOG", "GET", 100_000))
        stats = latency_maxima(r.info("latencystats"))
        exec_us = r.info("commandstats")["cmdstat_exec"]["usec"]
    finally:
        r.close()
    assert "EXEC" not in {e.command for e in log}  # what the measure has to make up for
    (ours,) = transactions(log)
    assert ours.commands == 5_000
    top = longest_of_ours(log, stats, {"probe"})
    assert top.name == "EXEC"
    # the server's own timing of the one EXEC (an HDR histogram: within a few per cent)
    assert abs(top.ms * 1000 - exec_us) <= 0.05 * exec_us
    assert top.ms * 1000 >= ours.inner_micros  # the entries' sum leaves part of it out
    assert top.ms > max(e.micros for e in log if e.command == "HSET") / 1000
