"""`echoes-ops simulate` on a real Redis Cluster, in both pub/sub modes, and with a primary
killed mid-run (``--kill-primary``)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.cluster_coverage import note_subprocess
from tests.test_simulate import BIN

pytestmark = pytest.mark.timeout(180)


def simulate(url: str, mode: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": url, "REDIS_PUBSUB_MODE": mode}
    note_subprocess(["simulate", *args], env)
    return subprocess.run(
        [str(BIN), "simulate", "--json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


@pytest.mark.parametrize("mode", ["classic", "sharded"])
def test_simulate_on_the_cluster_loses_nothing(cluster_url, mode):
    out = simulate(cluster_url, mode, "--workers", "2", "--players", "80", "--duration", "4",
                   "--move-rate", "1")  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["pubsub_mode"] == mode
    assert report["expected"] == report["received"] > 0
    assert (report["lost"], report["duplicated"]) == (0, 0)
    nodes = report["publish_by_node"]
    assert len(nodes) == 3  # every primary, by the server's own count
    spublish = sum(n["spublish"] for n in nodes.values())
    if mode == "sharded":
        # every location and personal message is an SPUBLISH, spread over the primaries
        published = report["published"]["location"] + report["published"]["personal"]
        assert spublish >= published
        assert sum(1 for n in nodes.values() if n["spublish"]) >= 2
    else:
        assert spublish == 0
    assert report["failover"] is None
    assert report["leftover"] == dict.fromkeys(report["leftover"], 0)


def test_kill_primary_loss_is_confined_to_the_failover_window(private_cluster):
    private_cluster.start()
    out = simulate(private_cluster.url, "sharded", "--workers", "2", "--players", "60",
                   "--duration", "14", "--kill-primary", "2")  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    failover = report["failover"]
    assert failover["node"] in private_cluster.seeds
    assert failover["new_primary"] not in (None, failover["node"])  # its replica took over
    assert failover["workers_resubscribed"] >= 1
    assert failover["subscriber_gap_s"] > 0
    start, end = failover["window_s"]
    assert start <= failover["killed_at_s"] < end
    assert failover["lost_outside_window"] == 0
    assert failover["lost_in_window"] == report["lost"]
    assert report["duplicated"] == 0
    killed = report["publish_by_node"][failover["node"]]
    assert killed == {"publish": None, "spublish": None}


def test_kill_primary_needs_a_cluster(redis_url):
    out = simulate(redis_url, "classic", "--workers", "1", "--players", "2", "--duration", "2",
                   "--kill-primary", "1")  # fmt: skip
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.startswith("echoes-ops: error:")]
    assert lines, out.stderr
    assert "--kill-primary needs a Redis Cluster" in lines[0]
    assert "Traceback" not in out.stderr
