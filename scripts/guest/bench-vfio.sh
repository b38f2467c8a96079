#!/bin/sh
# Guest job for `make bench-vfio` (scripts/bench-vfio.sh): the same read
# patterns through three paths, in one boot with intel-iommu and two identical
# emulated NVMe controllers (aether0, aether1):
#
#   kernel_irq   fio io_uring, O_DIRECT, completions by interrupt   (aether0)
#   kernel_poll  fio io_uring hipri (IOPOLL) on nvme.poll_queues=1  (aether0)
#   user_poll    aether-part bench: VFIO, one polled queue pair     (aether1)
#   user_prefetch  the same with --prefetch: aether-core's engine reads ahead
#                into a user-space cache (QD1 cells only: one synchronous reader)
#
# aether1 stays on vfio-pci for the whole run, aether0 with the kernel; both
# hold the same prefilled data. Every cell runs all three paths, the order
# rotating from cell to cell and round to round; ratios are within a round,
# and the median over rounds is reported. Prints a table between
# @@BENCH-TABLE-BEGIN/END@@ and JSON between @@BENCH-JSON-BEGIN/END@@.
#
# Args: SECONDS ROUNDS "CELLS" where a cell is PATTERN:BS:QD[+THINK_US]
# (PATTERN seq, random or stride:N; THINK_US busy time after each read, as
# fio's thinktime: the reader's own work, which prefetching can overlap;
# fio sleeps it, bench spins it: thinktime_spin hangs fio 3.33 here).
. /aether/guest/lib.sh

[ -f /aether/job.args ] && set -- $(cat /aether/job.args)
SECS=${1:-2}
ROUNDS=${2:-3}
CELLS=${3:-"random:4k:1,random:4k:32,seq:4k:1,seq:4k:32,seq:128k:1,seq:128k:32,stride:4:4k:1,stride:4:4k:32,seq:4k:1+50,stride:4:4k:1+50"}
CELLS=$(echo "$CELLS" | tr ',' ' ')
SPAN=64M
PATHS="kernel_irq kernel_poll user_poll"
AP=aether-part

fail() { echo "# bench-vfio: $*"; t_fail "$*"; t_done; exit 1; }

bdf_of_serial() {
    for c in /sys/class/nvme/nvme*; do
        [ "$(sed 's/ *$//' "$c/serial" 2>/dev/null)" = "$1" ] && { basename "$(readlink -f "$c/device")"; return 0; }
    done
    return 1
}
ns_of() {
    for e in /sys/bus/pci/devices/$1/nvme/nvme*/nvme*n1; do
        [ -e "$e" ] || continue
        echo "$(basename "$e")" | sed 's/^nvme\([0-9]*\)c[0-9]*n\([0-9]*\)$/nvme\1n\2/'; return 0
    done
    return 1
}
bytes() { case $1 in *k) echo $((${1%k} * 1024)) ;; *M) echo $((${1%M} * 1048576)) ;; *) echo "$1" ;; esac; }

echo "# bench-vfio: $(uname -r), $(nproc) CPUs, $(fio --version), cmdline: $(cat /proc/cmdline)"
B0=$(bdf_of_serial aether0) && B1=$(bdf_of_serial aether1) || fail "two NVMe controllers aether0 and aether1"
NS0=$(ns_of "$B0") && NS1=$(ns_of "$B1") || fail "namespaces of $B0 and $B1"
POLLQ=$(cat /sys/module/nvme/parameters/poll_queues 2>/dev/null)
IOPOLL=$(cat /sys/block/$NS0/queue/io_poll 2>/dev/null)
echo "# kernel path: $B0 /dev/$NS0 (nvme.poll_queues=$POLLQ, io_poll=$IOPOLL); user path: $B1 (was /dev/$NS1)"
t_eq "nvme.poll_queues=1 gives $NS0 a poll queue (queue/io_poll)" "1 1" "$POLLQ $IOPOLL"

# Same data on both: the self-checking pattern, written and synced by the kernel.
$AP pattern $SPAN > /tmp/pat || fail "aether-part pattern"
for n in $NS0 $NS1; do
    dd if=/tmp/pat of=/dev/$n bs=1M conv=fsync 2>/dev/null || fail "prefill /dev/$n"
done
rm -f /tmp/pat
$AP bind "$B1" >/tmp/bind.out 2>&1 || { cat /tmp/bind.out; fail "bind $B1"; }
t_ok "prefilled $SPAN on both controllers; $B1 on vfio-pci"

# fio_run HIPRI PATTERN BS QD THINK: "iops mbs p50 p99 p999" (latencies in us).
fio_run() {
    case $2 in
        seq) rw=read ;;
        random) rw=randread ;;
        stride:*) rw="read:$(( (${2#stride:} - 1) * $(bytes "$3") ))" ;;
    esac
    fio --name=b --filename=/dev/$NS0 --ioengine=io_uring --hipri="$1" --direct=1 --rw="$rw" --bs="$3" \
        --iodepth="$4" --thinktime="$5" --size=$SPAN --runtime="$SECS" --time_based --norandommap --randrepeat=0 \
        --lat_percentiles=1 --percentile_list=50:99:99.9 --output-format=terse --terse-version=3 2>/tmp/fio.err |
        awk -F';' '$1 == 3 { p = $18; q = $19; r = $20; sub(/.*=/, "", p); sub(/.*=/, "", q); sub(/.*=/, "", r)
                             printf "%d %.1f %s %s %s\n", $8, $7 * 1024 / 1e6, p, q, r; exit }'
}
# user_run PATTERN BS QD THINK [--prefetch]: the same fields from aether-part bench --json.
user_run() {
    $AP bench "$B1" --json --pattern "$1" --bs "$2" --qd "$3" --think-us "$4" --seconds "$SECS" --span $SPAN $5 \
        >/tmp/ub.json 2>/tmp/ub.err || return 1
    awk -F': ' '{ gsub(/[ ,]/, "", $1); gsub(/[ ,"]/, "", $2) }
        $1 == "\"iops\"" { i = $2 } $1 == "\"mb_s\"" { m = $2 } $1 == "\"p50_us\"" { a = $2 }
        $1 == "\"p99_us\"" { b = $2 } $1 == "\"p999_us\"" { c = $2 }
        END { printf "%d %.1f %.1f %.1f %.1f\n", i, m, a, b, c }' /tmp/ub.json
}

: > /tmp/runs    # round cell path iops mbs p50 p99 p999
r=1 k=0
while [ "$r" -le "$ROUNDS" ]; do
    for cell in $CELLS; do
        think=0; case $cell in *+*) think=${cell#*+} ;; esac
        base=${cell%+*}; qd=${base##*:}; rest=${base%:*}; bs=${rest##*:}; pat=${rest%:*}
        order=$PATHS; [ "$qd" = 1 ] && order="$order user_prefetch"; i=0
        while [ $i -lt $((k % 4)) ]; do set -- $order; f=$1; shift; order="$* $f"; i=$((i + 1)); done
        k=$((k + 1))
        line="# round $r $cell:"
        for p in $order; do
            case $p in
                kernel_irq) v=$(fio_run 0 "$pat" "$bs" "$qd" "$think") ;;
                kernel_poll) v=$(fio_run 1 "$pat" "$bs" "$qd" "$think") ;;
                user_poll) v=$(user_run "$pat" "$bs" "$qd" "$think") || { sed 's/^/#   /' /tmp/ub.err; v=""; } ;;
                user_prefetch) v=$(user_run "$pat" "$bs" "$qd" "$think" --prefetch) || { sed 's/^/#   /' /tmp/ub.err; v=""; }
                    echo "# round $r $cell prefetch: $(grep -E '"(hits|late|misses|wasted|extents_issued)"' /tmp/ub.json | tr -d ' \n')" ;;
            esac
            set -- $v
            case "${1:-}" in ''|*[!0-9]*|0) fail "$p failed on $cell (round $r): $(head -3 /tmp/fio.err /tmp/ub.err 2>/dev/null)" ;; esac
            echo "$r $cell $p $v" >> /tmp/runs
            line="$line $p=$1"
        done
        echo "$line"
    done
    r=$((r + 1))
done
t_ok "every path ran every cell ($(wc -l < /tmp/runs) runs)"
$AP restore "$B1" >/tmp/restore.out 2>&1 && t_ok "restore $B1" || { cat /tmp/restore.out; t_fail "restore $B1"; }
NS1=$(ns_of "$B1")
$AP pattern $SPAN > /tmp/pat
if dd if=/dev/$NS1 bs=1M count=64 2>/dev/null | cmp -s - /tmp/pat; then t_ok "data on $B1 intact after the run"; else t_fail "data on $B1 intact after the run"; fi

# med CELL PATH FIELD: median over rounds (FIELD 4 iops .. 8 p99.9).
med() {
    awk -v c="$1" -v p="$2" -v f="$3" '$2 == c && $3 == p { n++; x[n] = $f }
        END { for (i = 2; i <= n; i++) { t = x[i]; for (j = i - 1; j >= 1 && x[j] > t; j--) x[j + 1] = x[j]; x[j + 1] = t }
              print n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }' /tmp/runs
}
# ratio CELL A B: median over rounds of IOPS(A)/IOPS(B) within a round.
ratio() {
    awk -v c="$1" -v a="$2" -v b="$3" '$2 == c && $3 == a { va[$1] = $4 } $2 == c && $3 == b { vb[$1] = $4 }
        END { n = 0; for (k in va) if (k in vb) { n++; q[n] = va[k] / vb[k] }
              for (i = 2; i <= n; i++) { t = q[i]; for (j = i - 1; j >= 1 && q[j] > t; j--) q[j + 1] = q[j]; q[j + 1] = t }
              printf "%.2f", n % 2 ? q[(n + 1) / 2] : (q[n / 2] + q[n / 2 + 1]) / 2 }' /tmp/runs
}

echo "@@BENCH-TABLE-BEGIN@@"
printf '%-18s %-13s %9s %8s %9s %9s %9s %10s %11s\n' cell path IOPS MB/s p50_us p99_us p99.9_us x_kern_irq x_user_poll
rows=""
for cell in $CELLS; do
    cj=""
    for p in $PATHS user_prefetch; do
        grep -q " $cell $p " /tmp/runs || continue
        rt=$(ratio "$cell" "$p" kernel_irq); ru=$(ratio "$cell" "$p" user_poll)
        printf '%-18s %-13s %9s %8s %9s %9s %9s %10s %11s\n' "$cell" "$p" "$(med "$cell" $p 4)" "$(med "$cell" $p 5)" \
            "$(med "$cell" $p 6)" "$(med "$cell" $p 7)" "$(med "$cell" $p 8)" "$rt" "$ru"
        cj="$cj${cj:+, }\"$p\": {\"iops\": $(med "$cell" $p 4), \"mb_s\": $(med "$cell" $p 5), \"p50_us\": $(med "$cell" $p 6), \"p99_us\": $(med "$cell" $p 7), \"p999_us\": $(med "$cell" $p 8), \"iops_vs_kernel_irq\": $rt, \"iops_vs_user_poll\": $ru}"
    done
    rows="$rows${rows:+,
    }{\"cell\": \"$cell\", $cj, \"user_poll_vs_kernel_poll\": $(ratio "$cell" user_poll kernel_poll)}"
done
echo "@@BENCH-TABLE-END@@"
echo "@@BENCH-JSON-BEGIN@@"
cat <<JSON
{
  "benchmark": "NVMe reads: kernel io_uring (interrupts), kernel io_uring polled (hipri, nvme.poll_queues=1), aether-part bench (VFIO, user-space polled); one boot, TCG",
  "kernel": "$(uname -r)", "cpus": $(nproc), "accel": "tcg", "fio": "$(fio --version)",
  "kernel_device": "$B0", "user_device": "$B1", "span": "$SPAN", "seconds_per_run": $SECS, "rounds": $ROUNDS,
  "median": "medians over rounds; ratios are within-round IOPS ratios",
  "results": [
    $rows
  ]
}
JSON
echo "@@BENCH-JSON-END@@"
t_done
