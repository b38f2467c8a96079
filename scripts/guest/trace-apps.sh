#!/bin/sh
# Block traces of real programs on ext4, run INSIDE the QEMU guest: the bios the page cache sends
# to the namespace (block_bio_queue: what a dm target stacked there, such as aether, receives) while
#   sqlite  - an SQLite index range scan (sqlite3, index on a random key, 2% of 120k rows),
#   tar     - tar of a source tree (linux mm/ and fs/ext4/),
#   loader  - a chunked O_DIRECT load of a 32 MiB file (dd iflag=direct bs=1M),
# each from a cold page cache. The file system image (fs.img) is made on the host:
#   mke2fs -t ext4 -d ROOT fs.img 128M   (ROOT holds src/, db.sqlite, weights.bin)
#   scripts/qemu-run.sh --quiet --log build/apps.log --file fs.img --bin /usr/bin/sqlite3 \
#       scripts/guest/trace-apps.sh
# Prints "ts_us,op,lba,sectors" CSV between @@TRACE-<name>-BEGIN@@ and @@TRACE-<name>-END@@.
. /aether/guest/lib.sh

TR=/sys/kernel/debug/tracing
dd if=/aether/fs.img of=/dev/nvme0n1 bs=1M oflag=direct 2>/dev/null || { t_fail "write fs.img"; t_done; exit 1; }
mkdir -p /mnt
t_check "mount ext4" mount -t ext4 -o ro,noatime /dev/nvme0n1 /mnt
MAJMIN=$(tr ':' ',' < /sys/block/nvme0n1/dev)
run() {
    name=$1; shift
    sync
    echo 3 > /proc/sys/vm/drop_caches
    echo > $TR/trace
    echo 1 > $TR/events/block/block_bio_queue/enable
    "$@" > /dev/null 2>&1
    rc=$?
    echo 0 > $TR/events/block/block_bio_queue/enable
    echo "@@TRACE-$name-BEGIN@@"
    echo "ts_us,op,lba,sectors"
    # "  comm-pid [cpu] flags  123.456789: block_bio_queue: 259,0 RA 2048 + 8 [comm]"
    awk -v d="$MAJMIN" '$0 ~ "block_bio_queue: " d " " {
        for (i = 1; i < NF; i++) { if ($i ~ /^[0-9]+\.[0-9]+:$/) ts = $i; if ($i == "block_bio_queue:") k = i }
        op = substr($(k + 2), 1, 1); if (op != "R" && op != "W" && op != "D") next
        sub(":", "", ts); split(ts, p, "."); us = p[1] * 1000000 + substr(p[2] "000000", 1, 6)
        if (t0 == "") t0 = us
        print us - t0 "," op "," $(k + 3) "," $(k + 5) }' $TR/trace
    echo "@@TRACE-$name-END@@"
    t_check "$name ran (exit $rc) and reached the device" sh -c "[ $rc = 0 ] && grep -q 'block_bio_queue: $MAJMIN R' $TR/trace"
}
run sqlite sqlite3 /mnt/db.sqlite "select count(*), sum(length(v)) from t where k between 300000000 and 320000000;"
run tar tar cf - -C /mnt src
run loader dd if=/mnt/weights.bin of=/dev/null bs=1M iflag=direct
umount /mnt
t_done
