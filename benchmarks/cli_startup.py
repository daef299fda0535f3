"""Start-up time of ``echoes-ops --help`` (heavy imports must stay lazy).

Run:  .venv/bin/python benchmarks/cli_startup.py [--runs 21]

Prints the median wall time of ``echoes-ops --help`` and, measured in the same run as a
baseline, of a bare ``python -c pass`` from the same interpreter; plus whether textual,
asyncpg, redis or rich were imported by ``--help``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(cmd: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    help_s = timed([str(BIN / "echoes-ops"), "--help"], args.runs)
    bare_s = timed([sys.executable, "-c", "pass"], args.runs)
    probe = (
        "import sys; from echoes_ops.cli.main import app; "
        "print(' '.join(m for m in ('textual', 'asyncpg', 'redis', 'rich') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout.strip()
    print(f"echoes-ops --help: median {help_s * 1000:.0f} ms over {args.runs} runs")
    print(f"python -c pass:    median {bare_s * 1000:.0f} ms (baseline, same run)")
    print(
        f"CLI overhead:      {(help_s - bare_s) * 1000:.0f} ms ({help_s / bare_s:.1f}x the bare interpreter)"
    )
    print(f"heavy modules imported by the CLI entry point: {loaded or 'none'}")


if __name__ == "__main__":
    main()
