"""The ACL role matrix the role tests verify (test_acl_roles.py runs it, test_acl_rules.py
checks docs/team.md shows it): each command of the tool, which roles may run it, and what an
allowed run meets by design."""

from __future__ import annotations

from dataclasses import dataclass

from echoes_ops.operations.roles import ROLES
from tests.conftest import BUNDLED_GAMEDATA

ROLE_NAMES = list(ROLES)
COLUMNS = ["default", *ROLE_NAMES]  # default: the unrestricted user, the baseline
LOCATION = "bunker_entrance"
HELD_TOKEN = "operator.carol#0123456789abcdef01234567"
FOREIGN_KEY = "otherapp:config"  # a key of another application on the same server
DROPPED_ITEM = "canned_beans"


@dataclass(frozen=True)
class Cell:
    """One command of the tool and which roles may run it."""

    label: str
    args: tuple[str, ...]
    allowed: frozenset[str]
    ok: tuple[int, ...] = (0,)  # exit codes of an allowed run
    writes: bool = False
    # refusals an allowed run meets by design and reports as such (ACL LOG objects):
    # doctor's CONFIG GET / ACL GETUSER checks are "unknown", stats cannot measure another
    # application's keys
    tolerated: frozenset[str] = frozenset()
    # on a cluster too: the cluster health's CONFIG GET of cluster-require-full-coverage
    # and cluster-node-timeout (shown as not readable)
    cluster_tolerated: frozenset[str] = frozenset()
    # a refused run on a cluster may leave this much changed, as docs/design.md's
    # guarantees per topology allow (cache invalidate clears the content hash first)
    cluster_cut_off: bool = False

    def tolerates(self, topology: str) -> frozenset[str]:
        return self.tolerated | (self.cluster_tolerated if topology == "cluster" else frozenset())


def cell(
    label: str,
    *args: str,
    allow: str,
    ok: tuple[int, ...] = (0,),
    writes: bool = False,
    tolerated: tuple[str, ...] = (),
    cluster_tolerated: tuple[str, ...] = (),
    cluster_cut_off: bool = False,
) -> Cell:
    roles = frozenset(allow.split()) | {"default"}
    assert roles <= set(COLUMNS), roles
    return Cell(
        label,
        args,
        roles,
        ok,
        writes,
        frozenset(tolerated),
        frozenset(cluster_tolerated),
        cluster_cut_off,
    )


INSPECT = "reader operator"
CONFIG_GET = "config|get"
OPERATE = "operator"
# The matrix as the tests verify it (docs/team.md shows the same table).
MATRIX: tuple[Cell, ...] = (
    cell("status", "status", allow=INSPECT, cluster_tolerated=(CONFIG_GET,)),
    cell(
        "cache status",
        *("cache", "status", "--gamedata", str(BUNDLED_GAMEDATA)),
        allow=f"{INSPECT} warmup worker",
        ok=(1,),  # the dropped item
    ),
    cell("sessions list", "sessions", "list", allow=f"{INSPECT} worker"),
    cell("sessions show", "sessions", "show", "1", allow=INSPECT),
    cell("locations list", "locations", "list", allow=INSPECT),
    cell("locations show", "locations", "show", LOCATION, allow=INSPECT),
    cell("workers list", "workers", "list", allow=INSPECT),
    cell("locks list", "locks", "list", allow=INSPECT),
    cell("locks show", "locks", "show", "maint", allow=INSPECT),
    cell("reconcile (dry run)", "reconcile", allow=INSPECT, ok=(1,)),
    cell("audit", "audit", allow=INSPECT),
    cell(
        "stats", "stats", allow=INSPECT, tolerated=(FOREIGN_KEY,), cluster_tolerated=(CONFIG_GET,)
    ),
    cell(
        "doctor",
        *("doctor", "--gamedata", str(BUNDLED_GAMEDATA)),
        allow=INSPECT,
        ok=(0, 1),
        tolerated=("config|get", "acl|getuser"),
    ),
    cell(
        "dashboard --read-only --json",
        *("dashboard", "--json", "--read-only"),
        allow=INSPECT,
        cluster_tolerated=(CONFIG_GET,),
    ),
    cell("tail", "tail", "--timeout", "0.3", allow=f"{INSPECT} worker"),
    cell(
        "tail otherapp:events (not a tier channel)",
        "tail",
        "otherapp:events",
        "--timeout",
        "0.3",
        allow="",
    ),
    cell("broadcast global", "broadcast", "global", "hello", "--yes", allow=OPERATE, writes=True),
    cell("broadcast location", "broadcast", "location", LOCATION, "hi", allow=OPERATE, writes=True),
    cell("broadcast player", "broadcast", "player", "1", "hi", allow=OPERATE, writes=True),
    cell(
        "locks hold",
        *("locks", "hold", "event", "--ttl", "60", "--reason", "test"),
        allow=OPERATE,
        writes=True,
    ),
    cell(
        "locks extend --token",
        *("locks", "extend", "maint", "--ttl", "120", "--token", HELD_TOKEN),
        allow=OPERATE,
        writes=True,
    ),
    cell(
        "locks release --token",
        *("locks", "release", "maint", "--token", HELD_TOKEN),
        allow=OPERATE,
        writes=True,
    ),
    cell(
        "locks release --force",
        *("locks", "release", "spawn_manager", "--force", "--yes"),
        allow=OPERATE,
        writes=True,
    ),
    cell("sessions kick", "sessions", "kick", "1", "--yes", allow=OPERATE, writes=True),
    # --grace 0: on a cluster the confirming pass waits --grace (60 s by default) first
    cell(
        "reconcile --fix", "reconcile", "--fix", "--yes", "--grace", "0", allow=OPERATE, writes=True
    ),
    cell("workers cleanup", "workers", "cleanup", "sim-2", "--yes", allow=OPERATE, writes=True),
    cell(
        "cache invalidate",
        *("cache", "invalidate", "location", LOCATION, "--yes"),
        allow=OPERATE,
        writes=True,
        cluster_cut_off=True,
    ),
    cell(
        "preload --force",
        *("preload", "--force", "--gamedata", str(BUNDLED_GAMEDATA)),
        allow=f"{OPERATE} warmup",
        writes=True,
        cluster_tolerated=("time",),  # warmup has no TIME: the online steps do without
    ),
    cell(
        "warmup --what static",
        *("warmup", "--what", "static", "--gamedata", str(BUNDLED_GAMEDATA)),
        allow=f"{OPERATE} warmup",
        writes=True,
        cluster_tolerated=("time",),  # warmup has no TIME: the online steps do without
    ),
)
CASES = [(c, role) for c in MATRIX for role in COLUMNS]


def matrix_rows() -> list[str]:
    """The allow/deny table of docs/team.md, one row per cell of MATRIX."""
    rows = []
    for entry in MATRIX:
        marks = ["yes" if role in entry.allowed else "no" for role in ROLE_NAMES]
        rows.append(f"| `{entry.label}` | " + " | ".join(marks) + " |")
    return rows
