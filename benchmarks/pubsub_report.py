"""The pub/sub benchmark's figures (benchmarks/pubsub.py): the CPU other processes used while
it ran, the analysis of what publishers and workers recorded, and the printed tables. Also
used by benchmarks/pubsub_cluster.py."""

from __future__ import annotations

import argparse
import pstats
import statistics
from array import array
from collections import Counter
from typing import Any

from echoes_ops.runtime.simulate import percentiles

P99_LIMIT_MS = 10.0
NOISY = 0.15  # other processes using more than this many cores: figures are suspect


# -- CPU used by other processes (the machine is shared) ----------------------------------


# -- analysis ---------------------------------------------------------------------------


def _floats(raw: bytes) -> array[float]:
    values = array("d")
    values.frombytes(raw)
    return values


def analyse(pubs: list[dict[str, Any]], reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    expected: dict[str, int] = {}
    lateness = array("d")
    for pub in pubs:
        counts = array("l")
        counts.frombytes(pub["expected"])
        expected.update(zip(pub["ids"], counts, strict=True))
        lateness.extend(_floats(pub["lateness"]))
    published = len(expected)
    first = min(p["first"] for p in pubs)
    last = max(p["last"] for p in pubs)
    achieved = (published - 1) / (last - first) if published > 1 and last > first else 0.0

    delivered: Counter[str] = Counter()
    latencies, worker_latencies = array("d"), array("d")
    worker_lost = unexpected = duplicates = reconnects = 0
    cpu = []
    gc_max = gc_total = 0.0
    gc_gen2 = gc_collections = gc_tracked = 0
    for report in reports.values():
        received = set(report["received_ids"])
        worker_lost += sum(1 for msg_id in expected if msg_id not in received)
        unexpected += len(received.difference(expected))
        duplicates += report["duplicates"]
        reconnects += report["reconnects"]
        delivered.update(report["per_msg"])
        latencies.extend(_floats(report["latencies"]))
        worker_latencies.extend(_floats(report["worker_latencies"]))
        cpu.append(report["cpu_s"] * 1e6 / max(1, len(expected)))
        gc_max = max(gc_max, report["gc"]["max_ms"])
        gc_total += report["gc"]["total_ms"]
        gc_gen2 += report["gc"]["gen2"]
        gc_collections += report["gc"]["collections"]
        gc_tracked = max(gc_tracked, report["gc"]["tracked"])
    missing = sum(max(0, want - delivered.get(msg_id, 0)) for msg_id, want in expected.items())
    extra = sum(max(0, got - expected.get(msg_id, 0)) for msg_id, got in delivered.items())
    return {
        "published": published,
        "achieved": achieved,
        "publisher_late_ms": percentiles(lateness),
        "publisher_us": sum(p["cpu_s"] for p in pubs) * 1e6 / max(1, published),
        "per_write": published / max(1, sum(p["writes"] for p in pubs)),
        "redis_receivers": sum(p["receivers"] for p in pubs),
        "redis_expected_receivers": published * len(reports),
        "publish_errors": sum(p["errors"] for p in pubs),
        "message_bytes": max(p["bytes"] for p in pubs),
        "workers": len(reports),
        "worker_expected": published * len(reports),
        "worker_lost": worker_lost,
        "unexpected": unexpected,
        "duplicates": duplicates,
        "reconnects": reconnects,
        "inbox_expected": sum(expected.values()),
        "inbox_delivered": sum(delivered.values()),
        "inbox_missing": missing,
        "inbox_extra": extra,
        "latency": percentiles(latencies),
        "p999": _quantile(latencies, 0.999),
        "worker_latency": percentiles(worker_latencies),
        "worker_cpu": cpu,
        "gc_max_ms": gc_max,
        "gc_total_ms": gc_total,
        "gc_gen2": gc_gen2,
        "gc_collections": gc_collections,
        "gc_tracked": gc_tracked,
    }


def _quantile(samples: array[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def passed(result: dict[str, Any]) -> bool:
    return (
        result["latency"]["p99"] < P99_LIMIT_MS
        and result["worker_lost"] == 0
        and result["inbox_missing"] == 0
        and result["inbox_extra"] == 0
        and result["duplicates"] == 0
    )


# -- printing ---------------------------------------------------------------------------


def print_delivery(args: argparse.Namespace, rounds: list[dict[str, dict[str, Any]]]) -> None:
    sample = next(iter(rounds[0].values()))
    print(
        f"\nDelivery: {args.workers} worker processes, {args.players:,} players, "
        f"{args.location_count} locations, {args.duration:g} s at {args.rate:,.0f} msg/s, "
        f"{sample['message_bytes']} B envelopes, inbox_size {args.inbox_size}"
        + (", gc.freeze() in the workers" if args.gc_freeze else "")
    )
    head = (
        f"{'routing':<12}{'sent/s':>7}{'p50':>8}{'p95':>8}{'p99':>8}{'p99.9':>8}{'max':>8}"
        f"{'inbox deliveries':>20}{'missing':>8}{'dup':>5}{'worker loss':>13}{'µs/msg':>8}"
    )
    print(head)
    print("-" * len(head))
    for number, results in enumerate(rounds, 1):
        for routing, r in results.items():
            lat = r["latency"]
            cpu = sum(r["worker_cpu"]) / len(r["worker_cpu"])
            label = routing if len(rounds) == 1 else f"{routing} #{number}"
            print(
                f"{label:<12}{r['achieved']:>7,.0f}{lat['p50']:>8.2f}{lat['p95']:>8.2f}"
                f"{lat['p99']:>8.2f}{r['p999']:>8.2f}{lat['max']:>8.1f}"
                f"{r['inbox_delivered']:>10,}/{r['inbox_expected']:<9,}{r['inbox_missing']:>8}"
                f"{r['duplicates'] + r['inbox_extra']:>5}"
                f"{r['worker_lost']:>6}/{r['worker_expected']:<6,}{cpu:>8.0f}"
            )
    print(
        "(latency in ms, publish -> player's inbox, over every delivery; "
        "µs/msg: CPU of one worker process per published message)"
    )
    for number, results in enumerate(rounds, 1):
        for routing, r in results.items():
            wl = r["worker_latency"]
            label = routing if len(rounds) == 1 else f"{routing} #{number}"
            print(
                f"  {label}: worker's own stats.latencies_ms (read time, before decode and "
                f"routing) p50 {wl['p50']:.2f} p95 {wl['p95']:.2f} p99 {wl['p99']:.2f}; "
                f"publisher lateness p99 {r['publisher_late_ms']['p99']:.2f} ms; Redis counted "
                f"{r['redis_receivers']:,}/{r['redis_expected_receivers']:,} receivers"
                + (" (MISMATCH)" if r["redis_receivers"] != r["redis_expected_receivers"] else "")
                + "; "
                f"reconnects {r['reconnects']}; GC {r['gc_collections']:,} collections, "
                f"{r['gc_gen2']} full, {r['gc_total_ms']:.0f} ms in all, longest "
                f"{r['gc_max_ms']:.1f} ms, {r['gc_tracked']:,} objects tracked at the end; "
                f"other processes on the machine used {r['foreign_cores'] * 100:.0f}% of a core"
                + (" (NOISY: rerun)" if r["foreign_cores"] > NOISY else "")
            )
    ratios = []
    for results in rounds:
        if "local" in results and "plan" in results:
            ours, plan = results["local"]["latency"]["p95"], results["plan"]["latency"]["p95"]
            ratios.append((plan / ours if ours else float("nan"), ours, plan))
    for ratio, ours, plan in ratios:
        print(
            f"p95 plan/ours: {ratio:.2f}x  (ours {ours:.2f} ms, goal < 1 ms; "
            f"plan {plan:.2f} ms, KPI 2 ms)"
        )
    if len(rounds) > 1:
        clean = {
            routing: [
                r[routing] for r in rounds if routing in r and r[routing]["foreign_cores"] <= NOISY
            ]
            for routing in ("local", "plan")
        }
        for routing, results in clean.items():
            if results:
                med = {
                    q: statistics.median(r["latency"][q] for r in results)
                    for q in ("p50", "p95", "p99")
                }
                print(
                    f"{routing}: median of {len(results)} quiet window(s) (other processes "
                    f"< {NOISY * 100:.0f}% of a core): p50 {med['p50']:.2f} p95 "
                    f"{med['p95']:.2f} p99 {med['p99']:.2f} ms"
                )
        if clean["local"] and clean["plan"]:
            ours = statistics.median(r["latency"]["p95"] for r in clean["local"])
            plan = statistics.median(r["latency"]["p95"] for r in clean["plan"])
            print(f"p95 plan/ours over quiet windows: {plan / ours:.2f}x")


STEP_HEAD = (
    f"{'target/s':>9}{'sent/s':>9}{'late p99':>9}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}"
    f"{'lost':>6}{'miss':>6}{'dup':>5}{'recon':>6}{'wrk µs':>9}{'pub µs':>8}{'/write':>7}{'GC max':>8}{'other':>7}"
    "  verdict"
)


def print_step(r: dict[str, Any]) -> None:
    lat = r["latency"]
    verdict = "ok" if passed(r) else "FAIL"
    if r["foreign_cores"] > NOISY:
        verdict += " (NOISY: other processes were busy)"
    if (
        r.get("receivers_comparable", True)
        and r["redis_receivers"] != r["redis_expected_receivers"]
    ):
        verdict += " (Redis counted other subscribers)"
    if r["achieved"] < 0.9 * r["target"]:
        verdict += " (publisher short of target)"
    print(
        f"{r['target']:>9,.0f}{r['achieved']:>9,.0f}{r['publisher_late_ms']['p99']:>9.2f}"
        f"{lat['p50']:>8.2f}{lat['p95']:>8.2f}{lat['p99']:>8.2f}{lat['max']:>8.1f}"
        f"{r['worker_lost']:>6}{r['inbox_missing']:>6}{r['duplicates'] + r['inbox_extra']:>5}"
        f"{r['reconnects']:>6}{r['worker_cpu'][0]:>9.0f}{r['publisher_us']:>8.0f}"
        f"{r['per_write']:>7.1f}{r['gc_max_ms']:>8.1f}{r['foreign_cores'] * 100:>6.0f}%"
        f"  {verdict}",
        flush=True,
    )


def print_ceiling(steps: list[dict[str, Any]]) -> None:
    good = [s for s in steps if passed(s)]
    if good:
        best = max(good, key=lambda s: s["achieved"])
        print(
            f"ceiling (1 worker, local routing): {best['achieved']:,.0f} msg/s sustained with "
            f"p99 {best['latency']['p99']:.2f} ms < {P99_LIMIT_MS:g} ms and nothing lost"
        )
    else:
        print("ceiling: no step passed")


def print_profile(path: str) -> None:
    print(f"\ncProfile of worker 1 during the measured window ({path}), by own time:")
    stats = pstats.Stats(path)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(25)
