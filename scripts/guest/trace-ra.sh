#!/bin/sh
# Linux 6.12 readahead on the raw namespace, run INSIDE the QEMU guest: buffered sequential
# reads (busybox dd, 16 KiB and 128 KiB requests, 2 MiB each, cold page cache) with the
# block_rq_issue trace event on. Prints the device requests ("R SECTOR + N") between
# @@RA-<bs>-BEGIN@@ and @@RA-<bs>-END@@, for comparison with aether-sim's linux-ra model
# (rust/aether-sim/tests/model.rs: linux_ra_matches_the_guest_trace). From the host:
#   scripts/qemu-run.sh --quiet --log build/trace-ra.log scripts/guest/trace-ra.sh
. /aether/guest/lib.sh

TR=/sys/kernel/debug/tracing
MAJMIN=$(tr ':' ',' < /sys/block/nvme0n1/dev)
echo "# read_ahead_kb=$(cat /sys/block/nvme0n1/queue/read_ahead_kb) max_sectors_kb=$(cat /sys/block/nvme0n1/queue/max_sectors_kb)"
for bs in 16 128; do
    sync
    echo 3 > /proc/sys/vm/drop_caches
    echo > $TR/trace
    echo 1 > $TR/events/block/block_rq_issue/enable
    dd if=/dev/nvme0n1 of=/dev/null bs=${bs}k count=$((2048 / bs)) 2>/dev/null
    echo 0 > $TR/events/block/block_rq_issue/enable
    echo "@@RA-$bs-BEGIN@@"
    awk -v d="$MAJMIN" '$0 ~ "block_rq_issue: " d " R" { for (i = 1; i < NF; i++) if ($i == "+") print "R", $(i-1), $(i+1) }' $TR/trace
    echo "@@RA-$bs-END@@"
    n=$(awk -v d="$MAJMIN" '$0 ~ "block_rq_issue: " d " R"' $TR/trace | wc -l)
    t_check "bs=${bs}k: the device saw read requests ($n)" test "$n" -gt 0
done
t_done
