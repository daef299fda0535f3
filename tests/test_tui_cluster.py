"""The dashboard's Overview on Redis Cluster (#14 item 4): every node and its state, and a
node going down shown at the next refresh. Against a private cluster (a node is killed)."""

from __future__ import annotations

import io
from collections.abc import Callable

from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Static

from echoes_ops.config import Settings
from echoes_ops.local.redis_cluster import RedisCluster
from echoes_ops.tui.app import DashboardApp, create_app
from tests.waiting import eventually


def overview_text(app: DashboardApp) -> str:
    console = Console(width=220, file=io.StringIO(), record=True)
    console.print(app.query_one("#overview-table", Static).content)  # type: ignore[arg-type]
    return console.export_text()


async def until(pilot: Pilot, check: Callable[[], object], timeout: float = 20.0) -> None:
    """Wait for ``check`` (the suite's wait helper), then for the app to settle."""
    await eventually(lambda: bool(check()), timeout, getattr(check, "__qualname__", ""))
    await pilot.pause()


async def test_the_overview_shows_every_node_and_a_node_going_down(
    private_cluster: RedisCluster,
) -> None:
    private_cluster.start()
    settings = Settings.load(env={"REDIS_URL": private_cluster.url})
    app = create_app(settings, refresh=0.3, tier_every=3600, drift_every=3600)
    async with app.run_test(size=(220, 60)) as pilot:
        await until(pilot, lambda: app.state.snapshot and app.state.snapshot.cluster)
        snap = app.state.snapshot
        assert snap is not None
        health = snap.cluster
        assert health is not None
        text = overview_text(app)
        assert "cluster 3 primaries / 3 replicas, cluster_state ok" in text
        for node in health.nodes:
            assert node.address in text
        assert "DOWN" not in text
        replica = next(n for n in health.nodes if n.role == "replica")
        taken = snap.taken_at
        private_cluster.node(int(replica.address.rsplit(":", 1)[1])).kill()

        def next_reading() -> bool:
            now = app.state.snapshot
            return now is not None and now.taken_at > taken + 0.01

        await until(pilot, next_reading)  # the very next refresh started after the kill
        await until(pilot, next_reading)
        text = overview_text(app)
        down = [line for line in text.splitlines() if line.startswith("DOWN")]
        assert len(down) == 1, text
        assert replica.address in down[0]
        assert f"node {replica.address} (replica) is down" in text
