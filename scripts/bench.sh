#!/usr/bin/env bash
# `make bench` and `make bench-contention`: build aether.ko, boot QEMU (TCG)
# once with one emulated NVMe namespace and run scripts/guest/bench.sh in it.
#
#   scripts/bench.sh [ROUNDS [SECONDS]]
#       issue 9: seq, strided, random QD1/QD32, 4 loaders, 8 interleaved
#       streams, 70/30 mixed and random p99 beside a stream, each on raw
#       O_DIRECT, Linux buffered readahead, aether (gate off) and aether;
#       2 vCPUs; default 3 rounds, at most 3 s per run (about 9 minutes).
#   scripts/bench.sh --contention [ROUNDS [SECONDS]]
#       issue 8: 8 fio jobs (random QD1, random QD32, sequential) on raw,
#       dm-linear, aether (gate off) and aether; 4 vCPUs; gate_skipped/reads
#       measures contention on the gate; default 3 rounds x 3 s (about 4 minutes).
#   scripts/bench.sh --cost [ROUNDS [SECONDS]]
#       issue 8: the random-read jobs of --contention on a null namespace
#       (no host disk behind it) in a guest booted with QEMU -icount, where
#       guest time counts instructions: the ratios are the per-I/O cost of
#       each layer, free of host load; default 3 rounds x 3 s of guest time
#       (about 15 minutes: one host thread runs all 4 vCPUs).
#
# Prints the table; saves the JSON (schema aether-bench/2, see
# scripts/plot-bench.py) as build/bench/results.json (build/bench-contention/
# for --contention, build/bench-cost/ for --cost), the per-run figures as
# runs.txt (workload round config IOPS demand_bytes device_bytes p99_us) and
# prefetch.txt (aether's counters per run, columns as in
# scripts/guest/bench.sh), the console as console.log, and plots the JSON
# with scripts/plot-bench.py next to it.
#
# Exit status: 0 when the run completed, whether or not aether met its goals
# (a missed goal is a result, printed in the table); non-zero when the guest
# failed or produced no results.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

mode=main smp=2 sub=bench qemu_opts=()
case ${1:-} in
    --contention) mode=contention smp=4 sub=bench-contention; shift ;;
    --cost) mode=cost smp=4 sub=bench-cost qemu_opts=(--icount --slow-nvme 0); shift ;;
esac
rounds=${1:-3} secs=${2:-3}
[[ $rounds =~ ^[1-9][0-9]*$ && $secs =~ ^[1-9][0-9]*$ ]] || die "usage: bench.sh [--contention | --cost] [ROUNDS [SECONDS]]"
# Host seconds a round may take: under -icount one host thread runs every
# vCPU, and a guest second took about ten host seconds here (8 runs a round).
per_run=$((30 * (secs + 4)))
[ "$mode" != cost ] || per_run=$((8 * (12 * secs + 15)))
out=$AETHER_ROOT/build/$sub
mkdir -p "$out"
rm -f "$out/results.json" "$out/runs.txt" "$out/prefetch.txt" "$out"/*.png

"$AETHER_ROOT/scripts/build-module.sh"
log "benchmark ($mode): $rounds rounds, at most $secs s per run, $smp vCPUs (console: $out/console.log)"
# One 1 GiB namespace: every run is one pass over a fresh span of it.
# No KUnit suites at insmod, and no kmemleak tracking: both cost CPU on every path.
set +e
"$AETHER_ROOT/scripts/qemu-run.sh" --nvme 1 --disk-size 1G "${qemu_opts[@]}" --smp "$smp" --timeout $((300 + rounds * per_run)) --quiet \
    --append "kunit.enable=0 kmemleak=off" --log "$out/console.log" \
    "$AETHER_ROOT/scripts/guest/bench.sh" "$mode" "$rounds" "$secs"
rc=$?
set -e

grep -E '^# (bench|round)|^not ok' "$out/console.log" >&2 || true
sed -n '/^@@BENCH-TABLE-BEGIN@@$/,/^@@BENCH-TABLE-END@@$/p' "$out/console.log" | sed '1d;$d'
sed -n '/^@@BENCH-RUNS-BEGIN@@$/,/^@@BENCH-RUNS-END@@$/p' "$out/console.log" | sed '1d;$d' > "$out/runs.txt"
sed -n '/^@@BENCH-PF-BEGIN@@$/,/^@@BENCH-PF-END@@$/p' "$out/console.log" | sed '1d;$d' > "$out/prefetch.txt"
sed -n '/^@@BENCH-JSON-BEGIN@@$/,/^@@BENCH-JSON-END@@$/p' "$out/console.log" | sed '1d;$d' > "$out/results.json.tmp"
if [ ! -s "$out/results.json.tmp" ]; then
    rm -f "$out/results.json.tmp"
    die "no results from the guest (exit $rc); see $out/console.log"
fi
if command -v python3 >/dev/null && ! python3 -m json.tool "$out/results.json.tmp" >/dev/null; then
    die "guest printed malformed JSON; see $out/results.json.tmp"
fi
mv "$out/results.json.tmp" "$out/results.json"
log "results: $out/results.json (per run: $out/runs.txt)"
if plots=$("$AETHER_ROOT/scripts/plot-bench.py" "$out/results.json"); then
    for p in $plots; do log "plot: $p"; done
else
    log "plotting $out/results.json failed (see above)"
    [ "$rc" != 0 ] || rc=1
fi
exit "$rc"
