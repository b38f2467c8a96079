#!/bin/sh
# Guest job for `make demo` (scripts/demo.sh ships aether-stat and collects the samples): aether
# stacked on an emulated NVMe, in about a minute, on a 100-column terminal.
# [SECONDS_PER_PHASE] (default 5) via /aether/job.args.
[ -f /aether/job.args ] && set -- $(cat /aether/job.args)
SECS=${1:-5}
B=$(printf '\033[1m') N=$(printf '\033[0m')
say() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
run() { echo "\$ $*"; "$@"; }
DEV=demo
M=/dev/mapper/$DEV
D=/sys/kernel/debug/aether/$DEV
OUT=/tmp/samples.jsonl
st() { sed -n "s/^$1: //p" $D/stats; }
# Sectors read from the NVMe namespace so far (/sys/block/*/stat field 3).
devsec() { awk '{ print $3 }' /sys/block/nvme0n1/stat; }
# fio_iops NAME FILE RW [fio args...]: one O_DIRECT psync pass; prints its read IOPS.
fio_iops() {
    n=$1 f=$2 rw=$3; shift 3
    fio --name=$n --filename=$f --rw=$rw --bs=4k --direct=1 --ioengine=psync --output-format=terse \
        --terse-version=3 "$@" | awk -F';' '{ print $8 }'
}

say "Load aether.ko and create an aether device on the emulated NVMe namespace"
dmesg -n 1
insmod /aether/aether.ko || exit 1
SZ=$(cat /sys/block/nvme0n1/size)
# Reads below hit written blocks of the image, not holes.
fio --name=fill --filename=/dev/nvme0n1 --rw=write --bs=1M --direct=1 --size=96M --eta=never --output=/dev/null
run dmsetup create $DEV --table "0 $SZ aether /dev/nvme0n1" || exit 1
run dmsetup table $DEV

say "A phase-changing reader (${SECS} s each), watched live by aether-stat"
: > $OUT
aether-stat --json --interval 1 >> $OUT 2>/dev/null &
jpid=$!
aether-stat --interval 1 &
tpid=$!
sleep 1
for phase in sequential:read random:randread strided:read:28k sequential:read; do
    name=${phase%%:*}
    echo "{\"phase\": \"$name\", \"unix_time\": $(date +%s)}" >> $OUT
    gap=; [ $name = strided ] && gap=", 28 KiB gaps"
    echo "-- phase: $name (4 KiB O_DIRECT reads$gap)"
    fio --name=$name --filename=$M --rw=${phase#*:} --bs=4k --direct=1 --ioengine=psync --size=96M \
        --runtime=$SECS --time_based --eta=never --output=/dev/null
done
sleep 1
kill $tpid $jpid; wait $tpid $jpid 2>/dev/null
echo "(the gate closes on random reads and reopens; hit% is the share served from RAM)"

say "Raw NVMe vs aether: one 16 MiB O_DIRECT pass each, cache dropped before each"
printf '%-12s %-7s %9s %12s %10s\n' workload path IOPS 'device MiB' 'IOPS/raw'
for w in sequential:read strided:read:28k; do
    name=${w%%:*} raw=0
    for p in raw aether; do
        f=/dev/nvme0n1; [ $p = aether ] && f=$M
        dmsetup message $DEV 0 drop_cache
        s0=$(devsec)
        iops=$(fio_iops $name $f ${w#*:} --size=16M --offset=64M)
        mib=$(awk -v s=$(( $(devsec) - s0 )) 'BEGIN { printf "%.1f", s / 2048 }')
        [ $p = raw ] && raw=$iops
        printf '%-12s %-7s %9s %12s %9sx\n' $name $p $iops $mib \
            "$(awk -v a=$iops -v r=$raw 'BEGIN { printf "%.2f", r ? a / r : 0 }')"
    done
done

say "Tune epsilon (the gate fires when P > epsilon) through debugfs, on the strided reader"
printf '%-9s %9s %13s %16s %8s\n' epsilon IOPS 'gate open %' 'prefetched MiB' 'hit %'
for eps in 0.625 0.99; do
    echo "\$ echo $eps > $D/epsilon"
    echo $eps > $D/epsilon
    dmsetup message $DEV 0 drop_cache
    dmsetup message $DEV 0 reset_stats
    iops=$(fio_iops eps $M read:28k --size=16M --offset=32M)
    printf '%-9s %9s %13s %16s %8s\n' "$(cat $D/epsilon)" $iops \
        "$(awk -v o=$(st gate_open) -v c=$(st gate_closed) 'BEGIN { printf "%.1f", o + c ? 100 * o / (o + c) : 0 }')" \
        "$(awk -v b=$(st prefetch_bytes) 'BEGIN { printf "%.2f", b / 1048576 }')" \
        "$(awk -v h=$(st prefetch_hits) -v r=$(st read_bytes) 'BEGIN { printf "%.1f", r ? 100 * h * 4096 / r : 0 }')"
done
echo "(this stream's P is under 0.99, so the gate closes; back to the default)"
echo 0.625 > $D/epsilon

say "Remove the device and unload the module"
run dmsetup remove $DEV
run rmmod aether && echo "unloaded cleanly"

echo "@@SAMPLES-BEGIN@@"
cat $OUT
echo "@@SAMPLES-END@@"
