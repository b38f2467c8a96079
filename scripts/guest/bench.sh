#!/bin/sh
# Guest job for `make bench` (scripts/bench.sh): fio randread 4 KiB O_DIRECT at
# QD1 and QD32 on the raw NVMe namespace and through an aether device stacked
# on it, in the same boot.
#
#   scripts/qemu-run.sh --nvme 1 scripts/guest/bench.sh [ROUNDS [SECONDS]]
#
# TCG timings drift, so raw and aether alternate: every round runs each depth
# on both, the order flipping from round to round, and the ratio aether/raw is
# taken per round and then the median over rounds. Prints one line per run, a
# summary table between @@BENCH-TABLE-BEGIN/END@@ and the same as JSON between
# @@BENCH-JSON-BEGIN@@ and @@BENCH-JSON-END@@ (scripts/bench.sh saves it).
. /aether/guest/lib.sh

[ -f /aether/job.args ] && set -- $(cat /aether/job.args)
ROUNDS=${1:-5}
SECS=${2:-5}
DEPTHS="1 32"
RAW=/dev/nvme0n1
NAME=abench
AE=/dev/mapper/$NAME
SPAN=128M          # the region read at random (prefilled, so no holes)
ENGINE=io_uring
GOAL=0.98

fail() { echo "# bench: $*"; t_fail "$*"; t_done; exit 1; }

echo "# bench: $(uname -r), $(nproc) CPUs, fio $(fio --version), $ROUNDS rounds x $SECS s, depths $DEPTHS, $ENGINE"
insmod /aether/aether.ko || fail "insmod aether.ko"
sectors=$(cat /sys/block/nvme0n1/size)
dmsetup create $NAME --table "0 $sectors aether $RAW" || fail "create aether device on $RAW"
[ "$(dmsetup message $NAME 0 get enabled)" = 1 ] || fail "aether gate is not enabled"
t_ok "aether device $NAME on $RAW, gate enabled"

# Prefill the span so reads hit written blocks of the image file, not holes.
fio --name=fill --filename=$RAW --rw=write --bs=1M --direct=1 --ioengine=$ENGINE --iodepth=8 \
    --size=$SPAN --output=/dev/null || fail "prefill"

# iops DEV QD: one timed fio run; prints read IOPS (terse v3 field 8).
iops() {
    fio --name=randread --filename="$1" --rw=randread --bs=4k --direct=1 --ioengine=$ENGINE \
        --iodepth="$2" --size=$SPAN --runtime="$SECS" --time_based --ramp_time=1 --norandommap \
        --randrepeat=0 --output-format=terse --terse-version=3 2>/tmp/fio.err |
        awk -F';' '$1 == 3 { print $8; exit }'
}

: > /tmp/runs          # qd round raw aether
dmsetup message $NAME 0 reset_stats
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for qd in $DEPTHS; do
        if [ $((r % 2)) = 1 ]; then
            raw=$(iops $RAW "$qd"); ae=$(iops $AE "$qd")
        else
            ae=$(iops $AE "$qd"); raw=$(iops $RAW "$qd")
        fi
        case "$raw$ae" in *[!0-9]*|'') fail "fio run failed (round $r, QD$qd): $(head -3 /tmp/fio.err)" ;; esac
        [ "$raw" -gt 0 ] && [ "$ae" -gt 0 ] || fail "fio reported 0 IOPS (round $r, QD$qd)"
        echo "$qd $r $raw $ae" >> /tmp/runs
        echo "# round $r QD$qd: raw $raw IOPS, aether $ae IOPS, ratio $(awk -v a="$ae" -v b="$raw" 'BEGIN { printf "%.3f", a / b }')"
    done
    r=$((r + 1))
done
reads=$(dmsetup status $NAME | tr ' ' '\n' | sed -n 's/^reads=//p')
gopen=$(dmsetup status $NAME | tr ' ' '\n' | sed -n 's/^gate_open=//p')
gclosed=$(dmsetup status $NAME | tr ' ' '\n' | sed -n 's/^gate_closed=//p')
t_check "aether counted the benchmark's reads (reads=$reads)" test "$reads" -gt 0
t_eq "the gate decided once per read (gate_open+gate_closed == reads)" "$reads" $((gopen + gclosed))

# summary QD: "raw_list aether_list ratio_list raw_med ae_med ratio_med" for depth QD.
summary() {
    awk -v qd="$1" '
        function med(a, n,   i, j, t) {
            for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        $1 == qd { n++; raw[n] = $3; ae[n] = $4; rat[n] = $4 / $3
                   rl = rl (n > 1 ? "," : "") $3; al = al (n > 1 ? "," : "") $4
                   ql = ql (n > 1 ? "," : "") sprintf("%.4f", $4 / $3) }
        END { printf "%s %s %s %d %d %.4f\n", rl, al, ql, med(raw, n), med(ae, n), med(rat, n) }' /tmp/runs
}

echo "@@BENCH-TABLE-BEGIN@@"
printf '%-6s %-36s %-36s %-12s %-12s %-8s %s\n' depth "raw IOPS per round" "aether IOPS per round" "raw median" "aeth median" ratio "goal>=$GOAL"
json_rows=""
allmet=1
for qd in $DEPTHS; do
    set -- $(summary "$qd")
    met=$(awk -v x="$6" -v g="$GOAL" 'BEGIN { print (x >= g) ? "yes" : "no" }')
    [ "$met" = yes ] || allmet=0
    printf '%-6s %-36s %-36s %-12s %-12s %-8s %s\n' "QD$qd" "$1" "$2" "$4" "$5" "$6" "$met"
    row="{\"iodepth\": $qd, \"raw_iops\": [$1], \"aether_iops\": [$2], \"ratios\": [$3], \"raw_median_iops\": $4, \"aether_median_iops\": $5, \"median_ratio\": $6, \"meets_goal\": $( [ "$met" = yes ] && echo true || echo false )}"
    json_rows="$json_rows${json_rows:+, }$row"
done
echo "@@BENCH-TABLE-END@@"
echo "@@BENCH-JSON-BEGIN@@"
cat <<EOF
{
  "benchmark": "fio randread 4KiB O_DIRECT, raw $RAW vs aether on it, alternating rounds",
  "kernel": "$(uname -r)",
  "cpus": $(nproc),
  "accel": "tcg",
  "fio": "$(fio --version)",
  "ioengine": "$ENGINE",
  "block_size": 4096,
  "span": "$SPAN",
  "rounds": $ROUNDS,
  "seconds_per_run": $SECS,
  "ratio": "median over rounds of aether_iops / raw_iops within the round",
  "goal_ratio": $GOAL,
  "aether_counters": {"reads": $reads, "gate_open": $gopen, "gate_closed": $gclosed},
  "results": [$json_rows]
}
EOF
echo "@@BENCH-JSON-END@@"
[ $allmet = 1 ] && t_ok "aether IOPS >= $GOAL x raw at every depth (median ratio)" || echo "# bench: goal not met at some depth (see table)"
dmsetup remove $NAME
rmmod aether
t_done
