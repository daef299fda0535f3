"""Warmup's client work per character in instructions, this tree against a git revision.

Run:  .venv/bin/python -m benchmarks.warmup_encode_instructions --base 60e2e18
      [--characters 5000]

CPU time on the shared two-core machine moves by a third between identical runs; the
instructions a process executes for the same work do not. This counts, under valgrind's
callgrind, the instructions of taking a batch's inventory rows (as the revision's
``read_batch`` receives them: texts to split, or rows already in the wire protocol) and
encoding the players for one server (``encode_rows``, packed), for ``--characters``
synthetic characters shaped like the demo's (a name, a location, six integers, a float, a
timestamp; 2-8 inventory rows of ~90 bytes). Each side runs twice in a fresh process, once
only building the rows and once building and encoding them: the difference is the stage.
Both sides must write the same bytes (checked). Instructions are not time (cache misses
are left out): read them beside ``--client-split``'s CPU time, not instead of it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.warmup_ab import extract

REPO = Path(__file__).resolve().parent.parent

# the stage, in a process of its own; argv: package folder, "setup", "measure" or "check"
# (measure, then say what was written), characters
STAGE = r"""
import hashlib, inspect, random, sys
from datetime import datetime, timedelta, timezone
sys.path.insert(0, sys.argv[1])
from echoes_ops.operations.warmup import encoding
from echoes_ops.operations.warmup.report import WarmupReport
measure, n = sys.argv[2] in ("measure", "check"), int(sys.argv[3])
packed_rows = "packed_owned" in inspect.signature(encoding.encode_rows).parameters
rng = random.Random(5)
columns = encoding.CharacterColumns.resolve(["id", "username", "location_id", "hp", "max_hp",
    "stamina", "max_stamina", "level", "xp", "last_movement_time", "last_active_at"])
now = datetime(2026, 12, 6, 9, tzinfo=timezone.utc)
rows, texts, packed = [], [], []
for cid in range(1, n + 1):
    moment = now - timedelta(seconds=rng.randrange(20000), microseconds=rng.randrange(10**6))
    place = rng.choice(["bunker_approach", "old_market", "tunnels"])
    rows.append((cid, f"Name {cid}", place, 116, 116, 33, 59, 3, 363, 1.7965e9 + cid / 1e3, moment))
    items = ['{"character_id":%d,"item_id":"bolts","quantity":%d,"durability":37,'
             '"is_equipped":true}' % (cid, k) for k in range(rng.randrange(2, 9))]
    texts.append((cid, "\x1e".join(items)))
    packed.append((cid, len(items), "".join(f"${len(i.encode())}\r\n{i}\r\n" for i in items)))
if measure:
    report = WarmupReport(False, ["inventories"], 1, 0.0)
    if packed_rows:
        owned, by_text = {c: (m, t.encode()) for c, m, t in packed}, {}
    else:
        owned, by_text = None, {c: t.split("\x1e") for c, t in texts}
    encoded = encoding.Encoded(2, packed=True)
    for start in range(0, n, 25):
        extra = {"packed_owned": owned} if packed_rows else {}
        encoding.encode_rows(encoded, rows[start:start + 25], by_text, columns, report,
                             max_epoch=2e9, **extra)
if sys.argv[2] == "check":  # run without callgrind: what was written
    blobs = b"".join(encoded.key_blobs) + b"".join(encoded.arg_blobs)
    print(len(blobs), hashlib.sha256(blobs).hexdigest()[:16])
"""


def _run(
    package: Path, mode: str, characters: int, tool: list[str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*tool, sys.executable, "-c", STAGE, str(package), mode, str(characters)],
        env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(package)},
        cwd=package,
        capture_output=True,
        text=True,
        check=True,
    )


def instructions(package: Path, mode: str, characters: int) -> int:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("this needs valgrind (apt-get install valgrind)")
    tool = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    out = _run(package, mode, characters, tool)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from callgrind:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--characters", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="echoes-encode-instr-") as tmp:
        sides = {"base": extract(args.base, Path(tmp)), "new": REPO}
        written = {}
        print(f"{args.characters:,} characters; base {args.base}; instructions per character "
              "of taking the inventory rows and encoding (callgrind):")  # fmt: skip
        for side, package in sides.items():
            setup = instructions(package, "setup", args.characters)
            total = instructions(package, "measure", args.characters)
            written[side] = _run(package, "check", args.characters, []).stdout.strip()
            print(f"  {side:<5} {(total - setup) / args.characters:>9,.0f}")
        if written["base"] != written["new"]:
            raise SystemExit(f"the sides wrote different bytes: {written}")
        size, digest = written["new"].split()
        print(f"  both sides wrote the same bytes ({int(size):,} bytes of keys and arguments, "
              f"sha256 {digest}...)")  # fmt: skip


if __name__ == "__main__":
    main()
