#!/bin/sh
# Guest job (`make soak`): concurrency soak (issue 12). 8 fio jobs on 2 aether devices: per device,
# 2 random writers that verify what they wrote (crc32c, verify_backlog: the verify reads go through
# aether's cache) while 2 sequential readers keep prefetching over the same regions. Runs in
# ROUND_S-second rounds (default 60) until at least TARGET I/Os completed on the two devices;
# 0 verify mismatches. Reports gate_skipped / reads (try_lock misses on the gate's spinlock) as the contention figure.
#
#   scripts/qemu-run.sh --smp 4 --nvme 2 --timeout 3600 scripts/guest/soak-tests.sh [TARGET [MAX_ROUNDS [ROUND_S]]]
# `make soak` runs 2,000,000 I/Os in 60 s rounds; `make test` a trimmed run per flavor.
. /aether/guest/lib.sh
[ -f /aether/job.args ] && set -- $(cat /aether/job.args)
TARGET=${1:-2000000}
MAX_ROUNDS=${2:-40}
ROUND_S=${3:-60}
KO=/aether/aether.ko
st() { dmsetup status "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# Reads + writes completed on mapped device $1 (/sys/block/dm-N/stat fields 1 and 5).
ios() { awk '{ print $1 + $5 }' "/sys/block/$(dm_blkdev "$1")/stat"; }

echo "# aether concurrency soak: $(uname -r), $(nproc) CPUs, target $TARGET I/Os, ${ROUND_S} s rounds"
t_check "insmod aether.ko" insmod $KO
t_check "create 's0' on /dev/nvme0n1" dmsetup create s0 --table "0 $(cat /sys/block/nvme0n1/size) aether /dev/nvme0n1 2 cache_mb 16"
t_check "create 's1' on /dev/nvme1n1" dmsetup create s1 --table "0 $(cat /sys/block/nvme1n1/size) aether /dev/nvme1n1 2 cache_mb 16"
# The fio job lines for round $1 (each round writes with its own seeds).
fio_jobs() {
    for d in s0 s1; do
        D=/dev/mapper/$d
        echo "--name=${d}w0 --filename=$D --rw=randwrite --bs=4k --offset=0 --size=32M --iodepth=8 --ioengine=io_uring
            --verify=crc32c --verify_backlog=64 --verify_fatal=1 --randseed=$(($1 * 10 + 1))
          --name=${d}w1 --filename=$D --rw=randwrite --bsrange=4k-32k --offset=32M --size=32M --iodepth=4 --ioengine=io_uring
            --verify=crc32c --verify_backlog=64 --verify_fatal=1 --randseed=$(($1 * 10 + 2))
          --name=${d}r0 --filename=$D --rw=read --bs=4k --offset=0 --size=64M --ioengine=psync
          --name=${d}r1 --filename=$D --rw=read --bs=16k --offset=0 --size=64M --iodepth=4 --ioengine=io_uring"
    done
}
round=0 total=0 bad=0
start=$(cut -d' ' -f1 /proc/uptime)
while [ "$total" -lt "$TARGET" ] && [ $round -lt "$MAX_ROUNDS" ]; do
    round=$((round + 1))
    fio --direct=1 --time_based --runtime="$ROUND_S" $(fio_jobs $round) --output=/tmp/fio.soak.$round >/dev/null 2>&1 || bad=$((bad + 1))
    grep -E "verify: bad|crc32c: verify failed|err= *[1-9]" /tmp/fio.soak.$round | head -3 | sed "s/^/# round $round: /"
    total=$(( $(ios s0) + $(ios s1) ))
    echo "# round $round: $total I/Os so far"
done
secs=$(awk -v a="$start" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { print int(b - a) }')
for d in s0 s1; do
    echo "# $d: reads=$(st $d reads) writes=$(st $d writes) gate_skipped=$(st $d gate_skipped) gate_open=$(st $d gate_open) prefetch_hits=$(st $d prefetch_hits) cache_read_hits=$(st $d cache_read_hits) stale_dropped=$(st $d prefetch_stale_dropped) invalidated=$(st $d cache_invalidated)"
done
reads=$(( $(st s0 reads) + $(st s1 reads) ))
skipped=$(( $(st s0 gate_skipped) + $(st s1 gate_skipped) ))
echo "# soak: $total I/Os in ${secs}s over $round rounds ($((total / (secs + 1))) IOPS); gate_skipped/reads = $skipped/$reads = $(awk -v s=$skipped -v r=$reads 'BEGIN { printf "%.4f", r ? s / r : 0 }')"
t_check "at least $TARGET I/Os through the 2 devices ($total)" test "$total" -ge "$TARGET"
t_eq "every fio round (8 jobs, crc32c verify) finished without a verify mismatch or error" 0 "$bad"
t_check "remove 's0' and 's1'" sh -c 'dmsetup remove s0 && dmsetup remove s1'
t_check "rmmod aether" rmmod aether
t_dmesg_clean "concurrency soak"
t_done
