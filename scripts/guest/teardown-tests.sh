#!/bin/sh
# Guest job: teardown under load (issue 12). CYCLES rounds, with fio running against device 'ld', of:
# suspend/resume, reload with changed arguments, a `remove --force` attempt (it swaps in an error
# table while fio holds the device; aether is then reloaded), an rmmod attempt (refused while a
# device exists), and a second device created, read, and removed while debugfs files of it are held
# open. Then: no oops, no leak, no lockdep splat, no stale debugfs entry.
#
#   scripts/qemu-run.sh --nvme 2 --timeout 1800 scripts/guest/teardown-tests.sh [CYCLES]
# `make test` runs 20 cycles, `make soak` 100.
. /aether/guest/lib.sh
[ -f /aether/job.args ] && set -- $(cat /aether/job.args)
CYCLES=${1:-20}
KO=/aether/aether.ko
DBG=/sys/kernel/debug/aether
N0=/dev/nvme0n1
N1=/dev/nvme1n1
S0=$(cat /sys/block/nvme0n1/size)
S1=$(cat /sys/block/nvme1n1/size)
st() { dmsetup status "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
sec() { echo "# --- $* (t=$(cut -d' ' -f1 /proc/uptime)s)"; }

echo "# aether teardown tests: $(uname -r), $(nproc) CPUs, $CYCLES cycles"
t_check "insmod aether.ko" insmod $KO
t_check "create 'ld' on $N0" dmsetup create ld --table "0 $S0 aether $N0 2 cache_mb 8"
fio --name=seq --filename=/dev/mapper/ld --rw=read --bs=4k --direct=1 --ioengine=io_uring --iodepth=4 \
    --time_based --runtime=7200 --continue_on_error=all \
    --name=mix --filename=/dev/mapper/ld --rw=randrw --bsrange=4k-64k --direct=1 --ioengine=psync --offset=128M --size=32M \
    --time_based --runtime=7200 --continue_on_error=all --output=/tmp/fio.td >/dev/null 2>/tmp/fio.td.err &
FIO=$!
# The cycles need fio holding 'ld' open and reading: a remove --force of a device nobody holds
# removes it. After the fixed 2 s this used to sleep, twice on the debug kernel nobody held 'ld'
# at cycle 1's remove (force-removed-open-device), and fio ended with 0 reads and no error.
reads() { awk '{ print $1 }' /sys/block/nvme0n1/stat; }
r0=$(reads)
i=0
until [ "$(dmsetup info -c --noheadings -o open ld)" -ge 2 ] && [ "$(reads)" -gt "$r0" ]; do
    [ $i -ge 1200 ] || ! kill -0 $FIO 2>/dev/null && break
    sleep 0.1; i=$((i + 1))
done
t_check "fio holds 'ld' open and reads it ($((i / 10)).$((i % 10))s after its start)" \
    sh -c "[ \$(dmsetup info -c --noheadings -o open ld) -ge 2 ] && [ \$(awk '{ print \$1 }' /sys/block/nvme0n1/stat) -gt $r0 ]"
r0=$(reads)

sec "$CYCLES cycles"
fails=""
i=1
while [ $i -le "$CYCLES" ]; do
    step=suspend;  dmsetup suspend ld || fails="$fails $i:$step"
    step=empty;    [ "$(st ld cache_bytes)" = 0 ] || fails="$fails $i:$step"
    step=resume;   dmsetup resume ld || fails="$fails $i:$step"
    step=reload;   echo "0 $S0 aether $N0 4 cache_mb $((4 + i % 13)) epsilon 0.$((1 + i % 9))" | dmsetup reload ld && dmsetup resume ld \
                       || fails="$fails $i:$step"
    step=args;     [ "$(dmsetup table ld | cut -d' ' -f5-)" = "4 cache_mb $((4 + i % 13)) epsilon 0.$((1 + i % 9))" ] || fails="$fails $i:$step"
    step=rmmod;    ! rmmod aether 2>/dev/null && grep -q '^aether ' /proc/modules || fails="$fails $i:$step"
    # --force on an open device swaps in an error table and cannot remove it; put aether back.
    step=force;    dmsetup remove --force ld >/dev/null 2>&1
    if dmsetup info ld >/dev/null 2>&1; then
        step=restore; echo "0 $S0 aether $N0 2 cache_mb 8" | dmsetup reload ld && dmsetup resume ld || fails="$fails $i:$step"
        step=aether;  dmsetup table ld | grep -q ' aether ' || fails="$fails $i:$step"
    else
        fails="$fails $i:force-removed-open-device"
        dmsetup create ld --table "0 $S0 aether $N0 2 cache_mb 8"
    fi
    # A second device, removed while debugfs files of it are open (one read side, one write side).
    step=create2;  dmsetup create tb --table "0 $S1 aether $N1" || fails="$fails $i:$step"
    dd if=/dev/mapper/tb of=/dev/null bs=4k count=64 iflag=direct 2>/dev/null
    exec 4<$DBG/tb/stats 5>$DBG/tb/epsilon 6<$DBG/tb/latency_histogram
    step=remove2;  dmsetup remove tb || fails="$fails $i:$step"
    step=stale;    [ ! -e $DBG/tb ] || fails="$fails $i:$step"
    step=heldread; ! cat <&4 >/dev/null 2>&1 || fails="$fails $i:$step"
    step=heldwrite; ! (echo 0.5 >&5) 2>/dev/null || fails="$fails $i:$step"
    cat <&6 >/dev/null 2>&1
    exec 4<&- 5>&- 6<&-
    step=alive;    kill -0 $FIO 2>/dev/null || fails="$fails $i:fio-died"
    i=$((i + 1))
done
echo "# failures: ${fails:-none}"
# If fio stopped, say why (its report and errors).
kill -0 $FIO 2>/dev/null || cat /tmp/fio.td /tmp/fio.td.err 2>/dev/null | grep -v '^ *$' | head -15 | sed 's/^/#   fio: /'
t_eq "$CYCLES teardown cycles under fio (suspend/resume, reload, remove --force, rmmod refused, held debugfs fds)" "" "$fails"
r1=$(reads)
kill $FIO 2>/dev/null; wait $FIO 2>/dev/null
t_check "fio kept reading through the cycles ($((r1 - r0)) reads completed on $N0)" test $((r1 - r0)) -ge $((CYCLES * 20))
t_check "remove 'ld'" dmsetup remove ld
t_eq "no stale debugfs entries" "" "$(ls $DBG 2>&1)"
t_check "rmmod aether once no device is left" rmmod aether
t_refuse "debugfs root gone" test -e $DBG
t_dmesg_clean "teardown tests"
t_done
