#!/bin/sh
# Guest job for `make demo`: aether stacked on an emulated NVMe, step by step.
B=$(printf '\033[1m') N=$(printf '\033[0m')
say() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
run() { echo "\$ $*"; "$@"; }
D=/sys/kernel/debug/aether/fast

say "The NVMe namespace aether stacks on (QEMU's emulated NVMe, TCG)"
run cat /sys/block/nvme0n1/device/model
SZ=$(cat /sys/block/nvme0n1/size); echo "nvme0n1: $SZ sectors"

say "Load aether.ko: its KUnit suites run in the kernel at load"
# The suites exercise refusals on purpose; keep their log lines off the console.
dmesg -n 1
run insmod /aether/aether.ko || exit 1
dmesg -n 4
for s in /sys/kernel/debug/kunit/aether*; do
    printf '  %-24s %s\n' "${s##*/}" "$(grep -E '^# Totals' "$s/results" | sed 's/# Totals: //')"
done
run dmsetup targets

say "Create a device-mapper device with the aether target"
run dmsetup create fast --table "0 $SZ aether /dev/nvme0n1 2 epsilon 0.6"
run dmsetup table fast

say "An O_DIRECT sequential reader (what page-cache readahead never sees) through aether"
run fio --name=seq --filename=/dev/mapper/fast --direct=1 --rw=read --bs=16k --size=32m \
    --ioengine=io_uring --iodepth=1 --output-format=terse --terse-version=3 | tail -1 | \
    awk -F';' '{printf "  read: %d IOPS, %.1f MiB/s, mean latency %.0f us\n", $8, $7/1024, $40}'
echo "The gate's decisions, per read (prefetches are counted, not yet issued):"
run dmsetup status fast

say "A random reader: the gate should mostly stay closed"
run dmsetup message fast 0 reset_stats
run fio --name=rand --filename=/dev/mapper/fast --direct=1 --rw=randread --bs=4k --size=32m \
    --io_size=8m --ioengine=io_uring --iodepth=1 --output-format=terse --terse-version=3 >/dev/null
grep -E '^(reads|gate_open|gate_closed):' $D/stats

say "Tune it: debugfs, dmsetup message and module parameters share one parser"
echo "(refusals are logged from a budget of 10 lines per 5 s, which the KUnit suites"
echo " spent at load on purpose; waiting for it to refill so the log lines show)"
sleep 5
run cat $D/epsilon
echo "\$ echo 0.7 > $D/epsilon"; echo 0.7 > $D/epsilon
run dmsetup message fast 0 get epsilon
echo "\$ echo banana > $D/epsilon   # refused, unchanged"
echo banana > $D/epsilon
run cat $D/epsilon
run dmsetup message fast 0 set lambda2 99
run cat /sys/module/aether/parameters/epsilon

say "Latency histogram (log2 buckets, per-CPU, summed on read)"
run cat $D/latency_histogram

say "Lifetime: unloading is refused while the device exists"
run rmmod aether
run dmsetup remove fast
run rmmod aether && echo "unloaded cleanly"
