#!/bin/sh
# Guest job for `make bench` (scripts/bench.sh): fio randread 4 KiB O_DIRECT at
# QD1 and QD32 on four paths to the same NVMe namespace, in one boot:
#
#   raw         /dev/nvme0n1
#   linear      dm-linear on it: device-mapper's own cost, the floor for any target
#   aether_off  aether with its gate disabled (enabled=0): telemetry only
#   aether      aether as shipped: telemetry, stream detector and gate per read
#
# TCG timings drift, so every round runs each path at each depth, the order
# rotating from round to round, and ratios are taken within a round; the
# reported ratio is the median over rounds. Prints a table between
# @@BENCH-TABLE-BEGIN/END@@ and JSON between @@BENCH-JSON-BEGIN/END@@.
. /aether/guest/lib.sh

[ -f /aether/job.args ] && set -- $(cat /aether/job.args)
ROUNDS=${1:-5}
SECS=${2:-5}
DEPTHS="1 32"
PATHS="raw linear aether_off aether"
SPAN=128M
ENGINE=io_uring
GOAL=0.98

fail() { echo "# bench: $*"; t_fail "$*"; t_done; exit 1; }
dev() {
    case $1 in
        raw) echo /dev/nvme0n1 ;;
        *) echo /dev/mapper/b_$1 ;;
    esac
}

echo "# bench: $(uname -r), $(nproc) CPUs, $(fio --version), $ROUNDS rounds x $SECS s, depths $DEPTHS, $ENGINE"
insmod /aether/aether.ko || fail "insmod aether.ko"
S=$(cat /sys/block/nvme0n1/size)
dmsetup create b_linear --table "0 $S linear /dev/nvme0n1 0" || fail "create linear"
dmsetup create b_aether_off --table "0 $S aether /dev/nvme0n1 2 enabled 0" || fail "create aether_off"
dmsetup create b_aether --table "0 $S aether /dev/nvme0n1" || fail "create aether"
t_ok "raw, dm-linear, aether (gate off) and aether (gate on) on one namespace"

# Prefill the span so reads hit written blocks of the image, not holes.
fio --name=fill --filename=/dev/nvme0n1 --rw=write --bs=1M --direct=1 --ioengine=$ENGINE --iodepth=8 \
    --size=$SPAN --output=/dev/null || fail "prefill"

# iops DEV QD: one timed fio run; prints read IOPS (terse v3 field 8).
iops() {
    fio --name=randread --filename="$1" --rw=randread --bs=4k --direct=1 --ioengine=$ENGINE \
        --iodepth="$2" --size=$SPAN --runtime="$SECS" --time_based --ramp_time=1 --norandommap \
        --randrepeat=0 --output-format=terse --terse-version=3 2>/tmp/fio.err |
        awk -F';' '$1 == 3 { print $8; exit }'
}

: > /tmp/runs          # qd round path iops
dmsetup message b_aether 0 reset_stats
r=1
while [ "$r" -le "$ROUNDS" ]; do
    # Rotate the order so no path always runs first or last.
    order=$PATHS; i=1
    while [ $i -lt "$r" ]; do set -- $order; order="$(echo $order | cut -d' ' -f2-) $1"; i=$((i + 1)); done
    for qd in $DEPTHS; do
        line="# round $r QD$qd:"
        for p in $order; do
            v=$(iops "$(dev $p)" "$qd")
            case "$v" in ''|*[!0-9]*) fail "fio failed on $p (round $r, QD$qd): $(head -3 /tmp/fio.err)" ;; esac
            [ "$v" -gt 0 ] || fail "fio reported 0 IOPS on $p"
            echo "$qd $r $p $v" >> /tmp/runs
            line="$line $p=$v"
        done
        echo "$line"
    done
    r=$((r + 1))
done
reads=$(dmsetup status b_aether | tr ' ' '\n' | sed -n 's/^reads=//p')
gopen=$(dmsetup status b_aether | tr ' ' '\n' | sed -n 's/^gate_open=//p')
gclosed=$(dmsetup status b_aether | tr ' ' '\n' | sed -n 's/^gate_closed=//p')
t_check "aether counted the benchmark's reads (reads=$reads)" test "$reads" -gt 0
t_eq "the gate decided once per read (gate_open+gate_closed == reads)" "$reads" $((gopen + gclosed))

# stats QD NUM DEN: median over rounds of NUM/DEN within a round, and the
# median IOPS of NUM.
ratio() {
    awk -v qd="$1" -v a="$2" -v b="$3" '
        function med(x, n,   i, j, t) {
            for (i = 2; i <= n; i++) { t = x[i]; for (j = i - 1; j >= 1 && x[j] > t; j--) x[j + 1] = x[j]; x[j + 1] = t }
            return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
        }
        $1 == qd && $3 == a { va[$2] = $4 }
        $1 == qd && $3 == b { vb[$2] = $4 }
        END { n = 0; for (k in va) if (k in vb) { n++; q[n] = va[k] / vb[k] } printf "%.3f", med(q, n) }' /tmp/runs
}
median() {
    awk -v qd="$1" -v a="$2" '
        $1 == qd && $3 == a { n++; x[n] = $4 }
        END { for (i = 2; i <= n; i++) { t = x[i]; for (j = i - 1; j >= 1 && x[j] > t; j--) x[j + 1] = x[j]; x[j + 1] = t }
              printf "%d", n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }' /tmp/runs
}

echo "@@BENCH-TABLE-BEGIN@@"
printf '%-5s %9s %9s %11s %9s   %-12s %-12s %-14s %-14s %s\n' depth raw linear aether_off aether \
    aether/raw linear/raw aether/linear aether/gate_off "goal>=$GOAL"
rows=""
for qd in $DEPTHS; do
    a_raw=$(ratio $qd aether raw); l_raw=$(ratio $qd linear raw)
    a_lin=$(ratio $qd aether linear); a_off=$(ratio $qd aether aether_off)
    met=$(awk -v x="$a_raw" -v g=$GOAL 'BEGIN { print (x >= g) ? "yes" : "no" }')
    printf '%-5s %9s %9s %11s %9s   %-12s %-12s %-14s %-14s %s\n' "QD$qd" "$(median $qd raw)" "$(median $qd linear)" \
        "$(median $qd aether_off)" "$(median $qd aether)" "$a_raw" "$l_raw" "$a_lin" "$a_off" "$met"
    row="{\"iodepth\": $qd, \"median_iops\": {\"raw\": $(median $qd raw), \"linear\": $(median $qd linear), \"aether_off\": $(median $qd aether_off), \"aether\": $(median $qd aether)}, \"median_ratio\": {\"aether/raw\": $a_raw, \"linear/raw\": $l_raw, \"aether/linear\": $a_lin, \"aether/aether_off\": $a_off}, \"meets_goal\": $( [ "$met" = yes ] && echo true || echo false )}"
    rows="$rows${rows:+, }$row"
done
echo "@@BENCH-TABLE-END@@"
echo "@@BENCH-JSON-BEGIN@@"
cat <<JSON
{
  "benchmark": "fio randread 4KiB O_DIRECT on raw NVMe, dm-linear, aether (gate off) and aether, rotating order, one boot",
  "kernel": "$(uname -r)", "cpus": $(nproc), "accel": "tcg", "fio": "$(fio --version)", "ioengine": "$ENGINE",
  "span": "$SPAN", "rounds": $ROUNDS, "seconds_per_run": $SECS,
  "ratio": "median over rounds of the within-round IOPS ratio",
  "goal": "aether/raw >= $GOAL",
  "aether_counters": {"reads": $reads, "gate_open": $gopen, "gate_closed": $gclosed},
  "runs": "$(awk '{printf "%s%s:%s:%s:%s", (NR>1?" ":""), $1, $2, $3, $4}' /tmp/runs)",
  "results": [$rows]
}
JSON
echo "@@BENCH-JSON-END@@"
for d in b_aether b_aether_off b_linear; do dmsetup remove $d; done
rmmod aether
t_done
