#!/bin/sh
# Guest job for `make demo`: shows what aether does today, step by step.
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { echo "\$ $*"; "$@"; }

say "Guest kernel and the emulated NVMe namespace aether stacks on"
run uname -r
run cat /sys/block/nvme0n1/size
run cat /sys/block/nvme0n1/queue/logical_block_size

say "Load aether.ko"
run insmod /aether/aether.ko || exit 1
dmesg | grep -E 'aether' | tail -3
run ls -la /sys/kernel/debug/aether/

say "aether's KUnit suites ran inside the kernel at load"
for s in /sys/kernel/debug/kunit/aether*; do
    echo "--- ${s##*/}"; cat "$s/results"
done

say "Unload"
run rmmod aether
dmesg | grep -E 'aether' | tail -1
