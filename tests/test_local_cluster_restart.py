"""`local up --cluster` when some nodes of the recorded cluster are down: the missing nodes
come back on their recorded ports and rejoin the survivors, or (their ports taken by another
process) the survivors are stopped and a new cluster starts; never a running node orphaned."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

from echoes_ops.local.ports import port_in_use
from echoes_ops.local.redis_server import RedisServer, process_alive
from tests.cli_helpers import cli
from tests.waiting import wait_until


def _bound(sock: socket.socket, port: int) -> bool:
    """Bind ``sock`` to ``port`` as another program would take it; False while in use."""
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def _nodes(root: str) -> dict[int, RedisServer]:
    """The recorded cluster's nodes by port (the state file's ports, its data folders)."""
    ports = json.loads((Path(root) / "state.json").read_text())["cluster_ports"]
    return {
        port: RedisServer(Path(root) / "cluster" / f"node-{i + 1}", port=port)
        for i, port in enumerate(ports)
    }


def _up(root: str) -> dict:
    up = cli("local", "up", "--cluster", "--no-postgres", "--dir", root, "--json")
    assert up.code == 0, up.stderr
    return json.loads(up.stdout)


def _down_leaves_nothing(root: str, pids: list[int]) -> None:
    down = cli("local", "down", "--dir", root, "--json")
    assert down.code == 0, down.stderr
    assert all(n["status"] == "stopped" for n in json.loads(down.stdout)["cluster_nodes"])
    left = [pid for pid in pids if process_alive(pid)]
    for pid in left:  # a failing run leaves no orphan behind either
        os.kill(pid, signal.SIGKILL)
    assert left == []  # no node left behind


def test_up_restarts_the_missing_nodes_on_their_recorded_ports(tmp_path: Path) -> None:
    root = str(tmp_path / "local")
    first = _up(root)
    ports = [n["port"] for n in first["cluster_nodes"]]
    nodes = _nodes(root)
    pids = {port: node.pid() for port, node in nodes.items()}
    try:
        killed = ports[0], ports[4]  # a primary and a replica, as a crash would
        for port in killed:
            nodes[port].kill()
        assert [p for p in killed if nodes[p].running()] == []

        again = _up(root)
        assert [n["port"] for n in again["cluster_nodes"]] == ports  # the same ports
        assert all(n["status"] == "running" for n in again["cluster_nodes"])
        survivors = [p for p in ports if p not in killed]
        # the running nodes were kept, not orphaned beside a new cluster
        assert all(nodes[p].pid() == pids[p] and process_alive(pids[p]) for p in survivors)
        assert any("restarted them on their recorded ports" in n for n in again["notes"])
        env = json.loads(cli("local", "env", "--dir", root, "--json").stdout)
        status = cli("status", "--json", env=env)
        assert status.code == 0, status.stderr
        assert json.loads(status.stdout)["target"]["topology"] == (
            "cluster 3 primaries / 3 replicas"
        )
    finally:
        every = [n.pid() for n in _nodes(root).values()] + list(pids.values())
        _down_leaves_nothing(root, [pid for pid in every if pid is not None])


def test_up_stops_the_survivors_when_a_missing_node_port_is_taken(tmp_path: Path) -> None:
    root = str(tmp_path / "local")
    first = _up(root)
    ports = [n["port"] for n in first["cluster_nodes"]]
    old = _nodes(root)
    old_pids = [pid for pid in (n.pid() for n in old.values()) if pid is not None]
    holder = socket.socket()
    try:
        killed = old[ports[1]].pid()
        old[ports[1]].kill()
        # the kill is asynchronous: the node's port is free once its process is gone
        wait_until(lambda: killed is None or not process_alive(killed), what="the node to exit")
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        wait_until(lambda: _bound(holder, ports[1]), what="the dead node's port to be free")
        holder.listen()
        assert port_in_use(ports[1])

        again = _up(root)
        new_ports = [n["port"] for n in again["cluster_nodes"]]
        assert ports[1] not in new_ports
        assert all(n["status"] == "running" for n in again["cluster_nodes"])
        # the old cluster's running nodes were stopped, and the operator is told
        assert [pid for pid in old_pids if process_alive(pid)] == []
        note = [n for n in again["notes"] if "stopped its 5 running node(s)" in n]
        assert note, again["notes"]
        assert str(ports[1]) in note[0]
    finally:
        holder.close()
        new_pids = [pid for pid in (n.pid() for n in _nodes(root).values()) if pid is not None]
        _down_leaves_nothing(root, old_pids + new_pids)
