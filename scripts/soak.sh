#!/usr/bin/env bash
# `make soak`: the long hardening runs (issue 12) that `make test` trims: 100 teardown cycles under
# fio on both kernel flavors, and the concurrency soak (4 vCPUs, 8 fio jobs with crc32c verify on
# 2 aether devices, >= 2M I/Os; reports gate_skipped/reads). Ends with "N passed, N failed".
#   scripts/soak.sh [TARGET_IOS]     default 2000000
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
out=$AETHER_ROOT/build/soak
rm -rf "$out"; mkdir -p "$out"
passed=0 failed=0
started=$SECONDS
run_setup || { echo "0 passed, 1 failed"; exit 1; }
job() {
    local name=$1; shift
    log "QEMU job $name"
    local t=$SECONDS rc p f
    "$AETHER_ROOT/scripts/qemu-run.sh" --quiet --log "$out/$name.console.log" "$@"; rc=$?
    p=$(grep -c '^ok ' "$out/$name.console.log"); f=$(grep -c '^not ok ' "$out/$name.console.log")
    grep '^not ok \|^# soak\|^# s[01]:' "$out/$name.console.log" | sed "s/^/[$name] /" >&2
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then failed=$((failed + 1)); log "FAILED: $name exited $rc"; fi
    log "[$name] $p passed, $f failed, $((SECONDS - t))s"
}
for flavor in default debug; do
    if ! AETHER_KERNEL_FLAVOR=$flavor "$AETHER_ROOT/scripts/build-module.sh" > "$out/build-$flavor.log" 2>&1; then
        failed=$((failed + 1)); log "FAILED: building aether.ko ($flavor) - see $out/build-$flavor.log"; continue
    fi
    AETHER_KERNEL_FLAVOR=$flavor job "$flavor-teardown" --timeout 5400 --nvme 2 \
        "$AETHER_ROOT/scripts/guest/teardown-tests.sh" 100
done
job concurrency --timeout 5400 --smp 4 --nvme 2 "$AETHER_ROOT/scripts/guest/soak-tests.sh" "${1:-2000000}"
log "make soak took $((SECONDS - started))s; logs in $out"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
