#!/usr/bin/env bash
# `make bench-vfio`: boots QEMU (TCG) with intel-iommu and two emulated NVMe
# controllers, nvme.poll_queues=1 on the kernel command line, and runs
# scripts/guest/bench-vfio.sh: the same read patterns through kernel io_uring
# (interrupts), kernel io_uring polled (hipri), aether-part bench (VFIO,
# user-space polled) and, for QD1 cells, aether-part bench --prefetch
# (aether-core's engine reading ahead into a user-space cache). Prints one
# table and saves the JSON in
# build/bench-vfio/results.json (console log: build/bench-vfio/console.log).
#
#   scripts/bench-vfio.sh [SECONDS [ROUNDS [CELLS]]]
#       SECONDS per run (default 2), ROUNDS (default 3), CELLS a comma list of
#       PATTERN:BS:QD[+THINK_US] (default random:4k:1,random:4k:32,seq:4k:1,
#       seq:4k:32,seq:128k:1,seq:128k:32,stride:4:4k:1,stride:4:4k:32,
#       seq:4k:1+50,stride:4:4k:1+50). About 8 minutes with the defaults.
#
# Ratios are reported, not asserted: under TCG they are indicative only (see
# Documentation/aether-part.rst, "Read path"). Exit status: 0 when the run
# completed; non-zero when the guest failed or produced no results.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

secs=${1:-2} rounds=${2:-3} cells=${3:-}
[[ $secs =~ ^[0-9]+$ && $rounds =~ ^[0-9]+$ ]] || die "usage: bench-vfio.sh [SECONDS [ROUNDS [CELLS]]]"
out=$AETHER_ROOT/build/bench-vfio
mkdir -p "$out"
rm -f "$out/results.json"
(cd "$AETHER_ROOT" && cargo build -q --release -p aether-part) || die "building aether-part"
log "bench-vfio: ${secs}s per run, $rounds round(s) (console: $out/console.log)"
set +e
"$AETHER_ROOT/scripts/qemu-run.sh" --iommu --nvme 2 --timeout 1800 --quiet \
    --append "nvme.poll_queues=1 kunit.enable=0 kmemleak=off" --log "$out/console.log" \
    --bin "$AETHER_ROOT/target/release/aether-part" \
    "$AETHER_ROOT/scripts/guest/bench-vfio.sh" "$secs" "$rounds" ${cells:+"$cells"}
rc=$?
set -e

grep -E '^# (bench|round|kernel)|^not ok' "$out/console.log" >&2 || true
sed -n '/^@@BENCH-TABLE-BEGIN@@$/,/^@@BENCH-TABLE-END@@$/p' "$out/console.log" | sed '1d;$d'
sed -n '/^@@BENCH-JSON-BEGIN@@$/,/^@@BENCH-JSON-END@@$/p' "$out/console.log" | sed '1d;$d' > "$out/results.json.tmp"
if [ ! -s "$out/results.json.tmp" ]; then
    rm -f "$out/results.json.tmp"
    die "no results from the guest (exit $rc); see $out/console.log"
fi
if command -v python3 >/dev/null && ! python3 -m json.tool "$out/results.json.tmp" >/dev/null; then
    die "guest printed malformed JSON; see $out/results.json.tmp"
fi
mv "$out/results.json.tmp" "$out/results.json"
log "results: $out/results.json"
exit "$rc"
