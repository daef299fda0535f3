#!/usr/bin/env bash
# The quiet-machine run of record (docs/benchmarks.md, "Run of record"): one benchmark after
# another, nothing else running. Run from the repo root after scripts/setup:
#   benchmarks/run_of_record.sh OUT_DIR WORLDS_DIR
# OUT_DIR gets one log per benchmark and summary.log (start, end, exit code and load average
# of each); WORLDS_DIR holds the 22k/220k worlds of benchmarks/worldgen.py (wall.py makes them
# there when missing). Takes about 50 minutes on the project's 2-CPU machine.
# WARMUP_BASE: the revision warmup_ab compares against (default: the start of session 8);
# SKIP_WALL=1 leaves out wall.py (#17's preload wall times, about 8 minutes).
set -u
out=${1:?usage: benchmarks/run_of_record.sh OUT_DIR WORLDS_DIR}
worlds=${2:?usage: benchmarks/run_of_record.sh OUT_DIR WORLDS_DIR}
mkdir -p "$out"
py=.venv/bin/python
run() {
  local name=$1; shift
  echo "=== $name: $* (start $(date +%T), load $(cut -d' ' -f1-3 /proc/loadavg))" >> "$out/summary.log"
  "$@" > "$out/$name.log" 2>&1
  echo "=== $name: rc=$? (end $(date +%T), load $(cut -d' ' -f1-3 /proc/loadavg))" >> "$out/summary.log"
}
run warmup $py -m benchmarks.warmup --no-naive --runs 3
run warmup-ab $py -m benchmarks.warmup_ab --base "${WARMUP_BASE:-f0b02b3}" --characters 100000 --rounds 2
run warmup-split $py -m benchmarks.warmup --no-naive --runs 1 --server-split --client-split --split-rounds 3
run inspect $py benchmarks/inspect_scale.py
run dashboard $py benchmarks/dashboard.py --ui-only --ui-seconds 20
[ "${SKIP_WALL:-0}" = 1 ] || run wall220 $py benchmarks/wall.py --worlds 220k --big-runs 3 --big-plan-runs 0 --worlds-dir "$worlds"
run impact $py benchmarks/impact.py --poll-cycles 1 --repeat 2 --realtime plain,rt+probe
echo "=== all done $(date +%T)" >> "$out/summary.log"
