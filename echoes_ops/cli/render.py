"""Human-readable rendering of operation results (rich). One function per result type."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from echoes_ops import fmt
from echoes_ops.cli.output import print_table
from echoes_ops.cli.running import stdout_console

if TYPE_CHECKING:
    from rich.text import Text

    from echoes_ops.local.stack import LocalState
    from echoes_ops.operations.cache import CacheStatus, InvalidateResult
    from echoes_ops.operations.cluster_health import ClusterHealth
    from echoes_ops.operations.preload import PreloadResult
    from echoes_ops.operations.status import Status
    from echoes_ops.runtime.failover import FailoverReport
    from echoes_ops.runtime.simulate import SimResult


def _short(version: str | None) -> str:
    return version[:12] if version else "none"


def preload(result: PreloadResult) -> None:
    if result.skipped:  # one plain line: not worth importing rich for
        sys.stdout.write(
            f"gamedata unchanged (version {_short(result.version)}); nothing written. "
            "Use --force to rewrite.\n"
        )
        return
    from rich.table import Table

    console = stdout_console()
    table = Table(title="dry run: nothing written" if result.dry_run else None)
    for column in ("kind", "added", "changed", "removed", "unchanged"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind, diff in result.diffs.items():
        table.add_row(
            kind,
            str(len(diff.added)),
            str(len(diff.changed)),
            str(len(diff.removed)),
            str(diff.unchanged),
        )
    print_table(table, console)
    for kind, diff in result.diffs.items():
        for label, ids in (("+", diff.added), ("~", diff.changed), ("-", diff.removed)):
            if ids and result.dry_run:
                shown = ", ".join(ids[:10]) + (
                    f", ... ({len(ids) - 10} more)" if len(ids) > 10 else ""
                )
                console.print(f"  {label} {kind}: {shown}")
    if result.dry_run:
        console.print(
            f"would write {sum(len(d.to_write) for d in result.diffs.values())} keys "
            f"(~{fmt.size(result.estimated_bytes)}) and remove "
            f"{sum(len(d.removed) for d in result.diffs.values())}; "
            f"version {_short(result.previous_version)} -> {_short(result.version)}"
        )
    elif result.online is None:
        checked = (
            "not verified (the preload lock was lost before the check)"
            if result.verified.get("verify") == "not run"
            else f"verified {result.verified.get('verified_keys', 0)} keys present after the swap"
        )
        console.print(
            f"preloaded version {_short(result.version)}: wrote {result.keys_written} keys, "
            f"removed {result.keys_removed}, in {fmt.timing(result.elapsed_s)}; {checked}"
        )
    else:
        online = result.online
        longest = (
            f"longest step {online.longest_step_us / 1000:.2f} ms on the server"
            if online.longest_step_us >= 0
            else "step times unmeasured (this user may not run TIME; sized by round trips)"
        )
        checked = (
            f"verified {result.verified.get('verified_keys', 0)} keys re-read equal to what "
            "was written"
            if result.verified.get("verify") == "content"
            else "not verified (the preload lock was lost before the check)"
            if result.verified.get("verify") == "not run"
            else "not verified (--no-verify)"
        )
        console.print(
            f"preloaded version {_short(result.version)} online"
            f"{' (per-slot steps, Redis Cluster)' if online.per_slot else ''}: wrote "
            f"{result.keys_written} keys, removed {result.keys_removed}, in "
            f"{fmt.timing(result.elapsed_s)}; {online.steps} steps, {longest}; {checked}"
        )
        console.print(
            f"readers could see a mix of old and new entries for "
            f"{online.mixed_window_s:.3f}s (first step to the version record; each "
            "entry was replaced whole)"
        )


def cache_status(status: CacheStatus) -> None:
    from rich.table import Table

    console = stdout_console()
    verdict = "in sync" if status.in_sync else "DRIFT"
    console.print(
        f"static caches: {verdict}  (gamedata {_short(status.gamedata_version)}, "
        f"loaded {_short(status.loaded_version)})"
    )
    table = Table()
    for column in ("kind", "expected", "loaded", "missing", "stale", "extra", "malformed"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind, k in status.kinds.items():
        table.add_row(
            kind,
            str(k.expected),
            str(k.loaded),
            str(len(k.diff.added)),
            str(len(k.diff.changed)),
            str(len(k.diff.removed)),
            str(len(k.malformed)),
        )
    print_table(table, console)
    for kind, k in status.kinds.items():
        for label, ids in (
            ("missing", k.diff.added),
            ("stale", k.diff.changed),
            ("extra", k.diff.removed),
            ("malformed", k.malformed),
        ):
            if ids:
                console.print(
                    f"  {kind} {label}: {', '.join(ids[:10])}" + (" ..." if len(ids) > 10 else "")
                )


def invalidate(result: InvalidateResult) -> None:
    console = stdout_console()
    if result.dry_run:
        console.print(f"dry run: would delete {len(result.keys)} key(s)")
        for key in result.keys[:20]:
            console.print(f"  {key}")
    else:
        console.print(f"deleted {result.deleted} key(s); the next preload will rewrite them")


def cluster_lines(h: ClusterHealth) -> list[tuple[str, Text]]:
    """The cluster's state, one line per node, then its problems (red): status, stats."""
    from rich.text import Text

    share = f"{h.slots_ok:,}/16,384 slots served"
    state = Text(f"{h.state}, {share}", style="bold green" if h.ok else "bold red")
    lines: list[tuple[str, Text]] = [("cluster", state)]
    for n in sorted(h.nodes, key=lambda n: (n.primary or n.address, n.role != "primary")):
        if not n.up:
            lines.append(
                (
                    "",
                    Text(
                        f"{n.address} {n.role} DOWN: {n.error or ','.join(n.flags)}",
                        style="bold red",
                    ),
                )
            )
            continue
        if n.role == "primary":
            what = f"primary {n.slot_ranges or '-'} ({n.slots:,} slots)"
        else:
            lag = f"lag {fmt.size(n.lag_bytes)}" if n.lag_bytes is not None else "lag ?"
            what = f"replica of {n.primary}, link {n.link}, {lag}, last I/O {n.lag_s}s ago"
        usage = f"{n.used_memory_human}, {n.ops_per_sec} ops/s, {n.connected_clients} clients"
        flags = f" [{','.join(n.flags)}]" if n.flags else ""
        lines.append(("", Text(f"{n.address} {what}; {usage}{flags}")))
    for problem in h.problems:
        lines.append(("", Text(problem, style="bold red")))
    return lines


def status(s: Status) -> None:
    from rich.table import Table
    from rich.text import Text

    from echoes_ops.config import looks_like_production

    console = stdout_console()
    server = s.server
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    if s.target is not None:
        table.add_row("target", f"{s.target.url} ({s.target.topology})")
        name = s.target.environment
        loud = "bold red" if looks_like_production(name) else "bold"
        table.add_row(
            "environment",
            Text(name, style=loud) if name else Text("not named (ECHOES_OPS_ENVIRONMENT)"),
        )
    flag = s.redis_enabled
    if flag is not None:
        shown = Text(flag.text)
        if flag.value is not None:
            shown.stylize(
                "bold green" if flag.value == "true" else "bold red",
                0,
                len(flag.name) + 1 + len(flag.value),
            )
        table.add_row(flag.name, shown)
        if flag.alarms:
            table.add_row(
                Text("ALARM", style="bold reverse red"),
                Text("; ".join(flag.alarms), style="bold red"),
            )
        if flag.note:
            table.add_row("", Text(flag.note, style="yellow"))
    maxmem = fmt.size(server.maxmemory) if server.maxmemory else "unlimited"
    table.add_row(
        "server",
        f"Redis {server.version} ({server.mode}, {server.role}), up {fmt.duration(server.uptime_s)}",
    )
    table.add_row(
        "memory",
        f"{fmt.size(server.used_memory)} used, maxmemory {maxmem}, policy {server.maxmemory_policy}",
    )
    table.add_row("clients", str(server.connected_clients))
    table.add_row("keys", f"{server.keys:,}")
    if s.cluster is not None:
        for label, line in cluster_lines(s.cluster):
            table.add_row(label, line)
    version = s.gamedata
    if version:
        loaded_at = float(version.get("loaded_at", "0") or 0)
        age = fmt.age(time.time() - loaded_at) if loaded_at else "?"
        table.add_row(
            "gamedata",
            f"{_short(version.get('content_hash'))} loaded {age} by {version.get('operator', '?')}: "
            f"{version.get('locations', '?')} locations, {version.get('items', '?')} items, "
            f"{version.get('npcs', '?')} npcs",
        )
    else:
        table.add_row("gamedata", "not preloaded (run: echoes-ops preload)")
    c = s.counts
    table.add_row("sessions", f"{c.sessions:,}")
    table.add_row(
        "presence", f"{c.players_in_locations:,} players in {c.locations_with_players:,} locations"
    )
    table.add_row("workers", f"{c.workers_alive} alive of {c.workers} known")
    table.add_row("locks", str(c.locks))
    print_table(table, console)


def _service_line(status: str, user: dict[str, object] | None) -> str:
    if user is None:
        return status
    where = f", in {user['cwd']}" if user.get("cwd") else ""
    return f"{status}: {user['name']} (pid {user['pid']}{where})"


def local_state(st: LocalState) -> None:
    console = stdout_console()
    console.print(f"local services in {st.root}")
    redis_line = _service_line(st.redis_status, st.redis_port_user)
    kind = "redis cluster" if st.cluster else "redis     "
    console.print(f"  {kind} {redis_line}  {st.redis_url}", soft_wrap=True, markup=False)
    for node in st.cluster_nodes:
        user = node.get("port_user")
        node_line = _service_line(str(node["status"]), user if isinstance(user, dict) else None)
        console.print(f"    node {node['port']}  {node_line}", soft_wrap=True, markup=False)
    if st.postgres:
        pg_line = _service_line(st.pg_status or "stopped", st.pg_port_user)
        console.print(f"  postgresql {pg_line}  {st.database_url}", soft_wrap=True, markup=False)
    if st.demo_characters is not None:
        console.print(
            f"  demo data  {st.demo_characters} characters, {st.demo_inventory_rows} inventory rows"
        )
    for note in st.notes:
        console.print(f"  note: {note}", soft_wrap=True, markup=False)
    if st.redis_running:
        console.print("use them with:")
        for line in st.env_lines():
            console.print(f"  {line}", soft_wrap=True, markup=False)


def simulation(result: SimResult) -> None:
    console = stdout_console()
    lat = result.latency_ms
    crashed = f", crashed {', '.join(result.crashed)}" if result.crashed else ""
    note = " (interrupted)" if result.interrupted else ""
    console.print(
        f"simulated {result.players} players on {result.workers} workers for "
        f"{fmt.duration(result.duration_s)}{crashed}{note}"
    )
    console.print(
        f"  activity   {result.moves} moves, {result.fights} fights, "
        f"{result.reconnects} player reconnects, {result.spawn_runs} spawn runs"
    )
    published = ", ".join(f"{n} {family}" for family, n in result.published.items())
    console.print(f"  published  {published} (pub/sub mode {result.pubsub_mode})")
    for node, calls in result.publish_by_node.items():
        shown = ", ".join(f"{'?' if n is None else n} {name.upper()}" for name, n in calls.items())
        gone = " (killed: its counts went with it)" if None in calls.values() else ""
        console.print(f"    {node:21} {shown}{gone}")
    console.print(
        f"  delivery   expected {result.expected}, received {result.received}, "
        f"lost {result.lost}, duplicated {result.duplicated} (per worker); "
        f"{result.delivered_to_inboxes} inbox deliveries"
    )
    console.print(
        f"  latency    p50 {lat['p50']:.2f} ms, p95 {lat['p95']:.2f} ms, "
        f"p99 {lat['p99']:.2f} ms, max {lat['max']:.2f} ms (publish to inbox)"
    )
    if result.worker_reconnects:
        console.print(f"  workers reconnected to Redis {result.worker_reconnects} time(s)")
    if result.failover is not None:
        _failover(console, result.failover)
    left = {k: v for k, v in result.leftover.items() if v}
    if left:
        console.print(
            "  left in Redis: "
            + ", ".join(f"{v} {k}" for k, v in left.items())
            + (
                " (from the crashed workers: see docs/runbook.md, presence drift)"
                if result.crashed
                else (
                    " (player writes cut part-way by the failover: run echoes-ops reconcile)"
                    if result.failover is not None
                    else ""
                )
            )
        )
    else:
        console.print("  left in Redis: nothing")


def _failover(console: Any, f: FailoverReport) -> None:
    start, end = f.window_s
    console.print(
        f"  failover   killed primary {f.node} (pid {f.pid}) at {f.killed_at_s:.1f}s; its "
        f"slots now served by {f.new_primary or 'nobody yet'}"
    )
    console.print(
        f"             window {start:.1f}s to {end:.1f}s (kill to the last worker back on its "
        "subscriptions, 0.5 s margin either side)"
    )
    gap = "none" if f.subscriber_gap_s is None else f"{f.subscriber_gap_s:.2f} s"
    console.print(
        f"             delivery stopped: longest subscriber gap {gap} "
        f"({f.workers_resubscribed} worker(s) resubscribed); {f.publish_errors} player "
        "step(s) failed while the node was away"
    )
    span = (
        ""
        if f.lost_span_s is None
        else (f", sent between {f.lost_span_s[0]:.1f}s and {f.lost_span_s[1]:.1f}s")
    )
    verdict = "confined to the window" if f.lost_outside_window == 0 else "NOT confined"
    console.print(
        f"             lost {f.lost_in_window} inside the window, "
        f"{f.lost_outside_window} outside{span}: {verdict}"
    )
