#!/bin/sh
# A phase-changing run sampled once a second by aether-stat, run INSIDE the QEMU guest:
# sequential -> random -> strided (4 KiB every 32 KiB) -> sequential, 4 KiB O_DIRECT psync reads
# on one aether device. Prints the samples between @@SAMPLES-BEGIN@@ and @@SAMPLES-END@@ in the
# format scripts/plot-bench.py --timeseries reads (aether-stat --json lines and phase markers).
# From the host:
#   cargo build --release -p aether-stat
#   scripts/qemu-run.sh --quiet --log build/phase.log --bin target/release/aether-stat \
#       scripts/guest/phase-series.sh [SECONDS_PER_PHASE]
#   sed -n '/^@@SAMPLES-BEGIN@@$/,/^@@SAMPLES-END@@$/p' build/phase.log | sed '1d;$d' > build/samples.jsonl
#   scripts/plot-bench.py --timeseries build/samples.jsonl
. /aether/guest/lib.sh

[ -f /aether/job.args ] && set -- $(cat /aether/job.args)
SECS=${1:-10}
SPAN=96M
OUT=/tmp/samples.jsonl

insmod /aether/aether.ko || { t_fail "insmod"; t_done; exit 1; }
S=$(cat /sys/block/nvme0n1/size)
dmsetup create ps --table "0 $S aether /dev/nvme0n1" || { t_fail "create ps"; t_done; exit 1; }
# Reads hit written blocks of the image, not holes.
fio --name=fill --filename=/dev/nvme0n1 --rw=write --bs=1M --direct=1 --size=$SPAN --output=/dev/null ||
    t_fail "prefill"

: > $OUT
aether-stat --json --interval 1 >> $OUT 2>/tmp/stat.err &
pid=$!
for phase in sequential:read random:randread strided:read:28k sequential:read; do
    name=${phase%%:*}
    # Appended with >> like aether-stat's lines, so the two never interleave within a line.
    echo "{\"phase\": \"$name\", \"unix_time\": $(date +%s)}" >> $OUT
    fio --name=$name --filename=/dev/mapper/ps --rw=${phase#*:} --bs=4k --direct=1 --ioengine=psync \
        --size=$SPAN --runtime="$SECS" --time_based --output=/dev/null || t_fail "fio $phase"
done
sleep 1
kill $pid
wait $pid 2>/dev/null
n=$(grep -c '"device":"ps"' $OUT)
t_check "aether-stat sampled the run ($n samples, about $((4 * SECS)) expected)" test "$n" -ge $((3 * SECS))
[ -s /tmp/stat.err ] && sed 's/^/# aether-stat: /' /tmp/stat.err
echo "@@SAMPLES-BEGIN@@"
cat $OUT
echo "@@SAMPLES-END@@"
dmsetup remove ps
rmmod aether
t_done
