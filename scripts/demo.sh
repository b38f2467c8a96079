#!/usr/bin/env bash
# `make demo`: installs what is missing, builds the kernel (cached), aether.ko and aether-stat,
# boots QEMU with an emulated NVMe and shows aether at work (scripts/guest/demo.sh), then plots
# the phase run's aether-stat samples. About a minute once built; 100 columns wide.
#   scripts/demo.sh [SECONDS_PER_PHASE]      (default 5)
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
out=$AETHER_ROOT/build/demo
mkdir -p "$out"
"$AETHER_ROOT/scripts/build-module.sh" ${KDIR:-} >"$out/build.log" 2>&1 || { tail -20 "$out/build.log" >&2; die "building aether.ko failed (see $out/build.log)"; }
(cd "$AETHER_ROOT" && cargo build -q -p aether-stat) || die "building aether-stat failed"
log "booting QEMU (TCG) with an emulated NVMe disk"
# The console shows the samples too; they are cut from the log below.
"$AETHER_ROOT/scripts/qemu-run.sh" --timeout 600 --log "$out/console.log" \
    --bin "$AETHER_ROOT/target/debug/aether-stat" "$AETHER_ROOT/scripts/guest/demo.sh" ${1:+"$1"} 2> >(grep -v '^\[aether\] toolchain:' >&2) |
    sed '/^@@SAMPLES-BEGIN@@/,/^@@SAMPLES-END@@/d'
sed -n '/^@@SAMPLES-BEGIN@@/,/^@@SAMPLES-END@@/p' "$out/console.log" | sed '1d;$d' | tr -d '\r' > "$out/samples.jsonl"
[ -s "$out/samples.jsonl" ] || die "the guest printed no samples (see $out/console.log)"
/usr/bin/python3 "$AETHER_ROOT/scripts/plot-bench.py" --timeseries "$out/samples.jsonl" --outdir "$out" >/dev/null
echo "samples: $out/samples.jsonl"
echo "plot:    $out/timeseries.png"
