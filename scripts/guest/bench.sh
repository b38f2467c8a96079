#!/bin/sh
# Guest job for `make bench` and `make bench-contention` (scripts/bench.sh).
# fio against one emulated NVMe namespace in one boot; prints a table between
# @@BENCH-TABLE-BEGIN/END@@ and JSON (schema aether-bench/2, read by
# scripts/plot-bench.py) between @@BENCH-JSON-BEGIN/END@@.
#
#   bench.sh main ROUNDS SECONDS         issue 9: what prefetching buys
#   bench.sh contention ROUNDS SECONDS   issue 8: 8 fio jobs on one device
#   bench.sh cost ROUNDS SECONDS         issue 8: the same random-read jobs on
#                                        a null namespace (qemu-run.sh
#                                        --slow-nvme 0) in a guest booted with
#                                        --icount: IOPS in guest time measure
#                                        instructions per I/O, not host load
#
# Configurations, all on the same namespace:
#   raw             the namespace (/dev/nvme0n1; cost: the null one), O_DIRECT
#   linux_buffered  /dev/nvme0n1 without O_DIRECT: the page cache and Linux
#                   readahead (default read_ahead_kb); the anchor (main only)
#   linear          dm-linear on it, O_DIRECT (contention only)
#   gate_off        aether with enabled 0 (telemetry only), O_DIRECT
#   aether          aether as shipped (gate, prefetch, cache), O_DIRECT
#
# No figure may be inflated by a cache: every run starts with the page cache
# dropped, every dm device is created fresh for its run (empty cache, cold
# learner) and removed after it, and every run is one pass from the start of
# its span, ending at the end of the span or after SECONDS, whichever comes
# first (no time_based, no wrap-around; random runs use fio's random map, so
# no block is read twice). Each run records the bytes the namespace read
# (/sys/block/<namespace>/stat), and aether's counters.
#
# TCG timings drift, so every round runs every configuration of a workload
# back to back, the order rotating from round to round; ratios are taken
# within a round and the median over rounds is reported.
. /aether/guest/lib.sh

[ -f /aether/job.args ] && set -- $(cat /aether/job.args)
MODE=${1:-main}
ROUNDS=${2:-3}
SECS=${3:-3}
NS=/dev/nvme0n1
if [ "$MODE" = cost ]; then
    NS=$(nvme_by_serial aetherslow)
    NS=${NS:+/dev/$NS}
fi
M=1048576
W=/tmp   # work files: runs, pf, table

fail() { echo "# bench: $*"; t_fail "$*"; t_done; exit 1; }
case $MODE in main|contention|cost) ;; *) fail "unknown mode '$MODE' (main, contention or cost)" ;; esac
[ -n "$NS" ] || fail "cost: no null namespace (serial aetherslow); boot with qemu-run.sh --slow-nvme 0"
NSNAME=${NS#/dev/}
echo "# bench: $MODE, $(uname -r), $(nproc) CPUs, $(fio --version), $ROUNDS rounds, at most $SECS s per run"
insmod /aether/aether.ko || fail "insmod aether.ko"
S=$(cat /sys/block/$NSNAME/size)
SPAN=$((S * 512))
RA=$(cat /sys/block/$NSNAME/queue/read_ahead_kb)

# Written data everywhere, so reads hit allocated blocks of the host image, not holes.
# (The null namespace has no image: it drops writes and reads zeroes.)
if [ "$MODE" != cost ]; then
    t0=$(cut -d' ' -f1 /proc/uptime)
    fio --name=fill --filename=$NS --rw=write --bs=1M --direct=1 --ioengine=io_uring --iodepth=8 \
        --size=$SPAN --eta=never --output=/dev/null || fail "prefill"
    echo "# bench: filled $((SPAN / M)) MiB in $(awk -v a="$t0" '{ printf "%.0f", $1 - a }' /proc/uptime) s; read_ahead_kb=$RA"
fi

st() { sed -n "s/^$1=//p" /tmp/st; }
devread() { echo $(( $(awk '{ print $3 }' /sys/block/$NSNAME/stat) * 512 )); }

# Workloads: fio options for the job(s), without filename and direct.
# Every job is bounded by --size (one pass) and --runtime.
R="--runtime=$SECS --output-format=terse --terse-version=3 --randrepeat=0"
Q=$((SPAN / 4)); E=$((SPAN / 8)); H=$((SPAN / 2))
wl_opts() {
    case $1 in
        seq) echo "--name=w --rw=read --bs=4k --ioengine=psync --size=$SPAN" ;;
        stride) echo "--name=w --rw=read:28k --bs=4k --ioengine=psync --size=$SPAN" ;;
        randread_qd1) echo "--name=w --rw=randread --bs=4k --ioengine=io_uring --iodepth=1 --size=$SPAN" ;;
        randread_qd32) echo "--name=w --rw=randread --bs=4k --ioengine=io_uring --iodepth=32 --size=$SPAN" ;;
        loaders4) echo "--name=w --rw=read --bs=128k --ioengine=psync --numjobs=4 --size=$Q --offset_increment=$Q --group_reporting" ;;
        interleaved8) echo "--name=w --rw=read --bs=4k --ioengine=psync --numjobs=8 --size=$E --offset_increment=$E --group_reporting" ;;
        mixed70_30) echo "--name=w --rw=randrw --rwmixread=70 --bs=4k --ioengine=io_uring --iodepth=8 --size=$SPAN" ;;
        # The measured random reader (job 'rand', first half) beside a sequential stream (second half).
        p99_beside_seq) echo "--name=rand --rw=randread --bs=4k --ioengine=io_uring --iodepth=1 --size=$H \
            --name=seq --rw=read --bs=4k --ioengine=psync --offset=$H --size=$H" ;;
        c_randread_qd1) echo "--name=w --rw=randread --bs=4k --ioengine=io_uring --iodepth=1 --numjobs=8 --size=$SPAN --group_reporting" ;;
        c_randread_qd32) echo "--name=w --rw=randread --bs=4k --ioengine=io_uring --iodepth=32 --numjobs=8 --size=$SPAN --group_reporting" ;;
        c_seq8) echo "--name=w --rw=read --bs=4k --ioengine=psync --numjobs=8 --size=$E --offset_increment=$E --group_reporting" ;;
    esac
}
wl_configs() {
    case $1 in
        seq|stride|randread_qd1|loaders4|interleaved8) echo "raw linux_buffered gate_off aether" ;;
        randread_qd32|mixed70_30) echo "raw gate_off aether" ;;
        p99_beside_seq) echo "gate_off aether" ;;
        c_*) echo "raw linear gate_off aether" ;;
    esac
}
case $MODE in
    main) WORKLOADS="seq stride randread_qd1 randread_qd32 loaders4 interleaved8 mixed70_30 p99_beside_seq" ;;
    contention) WORKLOADS="c_randread_qd1 c_randread_qd32 c_seq8" ;;
    # A sequential job on a null device measures nothing a prefetcher is for.
    cost) WORKLOADS="c_randread_qd1 c_randread_qd32" ;;
esac

# Creates the configuration's device (fresh) and prints its path.
setup() {
    case $1 in
        raw|linux_buffered) echo $NS ;;
        linear) dmsetup create b_linear --table "0 $S linear $NS 0" && echo /dev/mapper/b_linear ;;
        gate_off) dmsetup create b_gate_off --table "0 $S aether $NS 2 enabled 0" && echo /dev/mapper/b_gate_off ;;
        aether) dmsetup create b_aether --table "0 $S aether $NS" && echo /dev/mapper/b_aether ;;
    esac
}

: > $W/runs   # wl round cfg iops demand_bytes device_bytes p99_us
: > $W/pf     # wl round reads demand_blocks issued hits late wasted unused_at_end cache_read_hits gate_skipped stale alloc_fail
# run WL ROUND CFG: one fio run; appends to $W/runs (and $W/pf for aether).
run() {
    wl=$1 r=$2 c=$3
    direct=1; [ "$c" = linux_buffered ] && direct=0
    sync; echo 3 > /proc/sys/vm/drop_caches
    dev=$(setup "$c") || fail "cannot create the $c device"
    d0=$(devread)
    # shellcheck disable=SC2046
    fio --filename="$dev" --direct=$direct $R $(wl_opts "$wl") > /tmp/fio.out 2>/tmp/fio.err ||
        fail "fio failed: $wl on $c (round $r): $(head -3 /tmp/fio.err)"
    dbytes=$(( $(devread) - d0 ))
    # Terse v3: 3 job name, 6 read KiB, 8 read IOPS, 30 read clat p99 (us), 49 write IOPS.
    set -- $(awk -F';' -v wl="$wl" '$1 == 3 && (wl != "p99_beside_seq" || $3 == "rand") {
        split($30, p, "="); printf "%d %d %d", $8 + $49, $6 * 1024, p[2]; exit }' /tmp/fio.out)
    [ $# = 3 ] && [ "$1" -gt 0 ] || fail "fio reported nothing for $wl on $c (round $r): $(head -3 /tmp/fio.out /tmp/fio.err)"
    echo "$wl $r $c $1 $2 $dbytes $3" >> $W/runs
    RUN_LINE="$RUN_LINE $c=$1"
    if [ "$c" = aether ]; then
        # One status read (each dmsetup call costs about 0.3 s under TCG).
        dmsetup status b_aether | tr ' ' '\n' > /tmp/st
        echo "$wl $r $(st reads) $(( $(st read_bytes) / 4096 )) $(st prefetch_issued) $(st prefetch_hits)" \
            "$(st prefetch_late) $(st prefetch_wasted) $(st cache_unused_blocks) $(st cache_read_hits)" \
            "$(st gate_skipped) $(st prefetch_stale_dropped) $(st prefetch_alloc_failures)" >> $W/pf
        case $wl in p99_beside_seq) ;; *)
            RUN_LINE="$RUN_LINE(dev_MiB=$((dbytes / M)),hits=$(st prefetch_hits),late=$(st prefetch_late),skipped=$(st gate_skipped))" ;;
        esac
    fi
    case $c in linear|gate_off|aether) dmsetup remove "b_$c" || fail "cannot remove b_$c" ;; esac
}

r=1
while [ "$r" -le "$ROUNDS" ]; do
    for wl in $WORKLOADS; do
        # Rotate the order so no configuration always runs first or last.
        order=$(wl_configs "$wl"); i=1
        while [ $i -lt "$r" ]; do set -- $order; order="$(echo $order | cut -d' ' -f2-) $1"; i=$((i + 1)); done
        RUN_LINE="# round $r $wl:"; t0=$(cut -d' ' -f1 /proc/uptime)
        for c in $order; do run "$wl" "$r" "$c"; done
        echo "$RUN_LINE [$(awk -v a="$t0" '{ printf "%.0f", $1 - a }' /proc/uptime) s]"
    done
    r=$((r + 1))
done
t_ok "$MODE: $ROUNDS rounds of $(echo $WORKLOADS | wc -w) workloads ran"
t_eq "aether: no prefetch allocation failures during the benchmark" 0 \
    "$(awk '{ s += $13 } END { print s + 0 }' $W/pf)"
t_dmesg_clean "$MODE benchmark"

# ------------------------------------------------------------ aggregation
# One awk program turns $W/runs and $W/pf into $W/table and the JSON file $1
# (scripts/tests/test_bench_aggregate.py runs it on the host).
aggregate() {
    awk -v mode="$MODE" -v rounds="$ROUNDS" -v secs="$SECS" -v wls="$WORKLOADS" -v out="$1" -v runs="$W/runs" -v table="$W/table" \
        -v kernel="$(uname -r)" -v cpus="$(nproc)" -v fiov="$(fio --version)" -v span="$SPAN" -v ra="$RA" -v ns="${NSNAME:-nvme0n1}" '
    # Values come back from val() as strings in busybox awk: callers add 0, or "500" > "2000".
    function sort(x, n,   i, j, t) { for (i = 2; i <= n; i++) { t = x[i]; for (j = i - 1; j >= 1 && x[j] > t; j--) x[j + 1] = x[j]; x[j + 1] = t } }
    function med(x, n) { if (n == 0) return ""; sort(x, n); return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }
    # Median over rounds of a field of one configuration (f: 4 iops, 6 device bytes, 7 p99, 8 extra device bytes %).
    function mf(w, c, f,   k, n, x) { n = 0; for (k = 1; k <= rounds; k++) if ((w, k, c) in V4) { n++; x[n] = val(w, k, c, f) + 0 } return med(x, n) }
    function val(w, k, c, f) { return f == 4 ? V4[w, k, c] : f == 6 ? V6[w, k, c] : f == 7 ? V7[w, k, c] : \
        (V5[w, k, c] > 0 ? 100 * (V6[w, k, c] / V5[w, k, c] - 1) : 0) }
    # Median over rounds of the within-round ratio a/b of field f.
    function mr(w, a, b, f,   k, n, x) { n = 0
        for (k = 1; k <= rounds; k++) if ((w, k, a) in V4 && (w, k, b) in V4 && val(w, k, b, f) > 0) { n++; x[n] = val(w, k, a, f) / val(w, k, b, f) }
        return med(x, n) }
    function has(w, c) { return (w, 1, c) in V4 }
    function jstr(s) { gsub(/"/, "\\\"", s); return "\"" s "\"" }
    function fmt(v, p) { return v == "" ? "-" : sprintf(p, v) }
    function ratio_json(w, pairs,   n, i, a, s, v, parts) { n = split(pairs, a, " "); s = ""
        for (i = 1; i <= n; i++) { split(a[i], parts, "/"); if (!has(w, parts[1]) || !has(w, parts[2])) continue
            v = mr(w, parts[1], parts[2], 4); if (v == "") continue; s = s (s ? ", " : "") jstr(a[i]) ": " sprintf("%.3f", v) }
        return "{" s "}" }
    function cfg_json(w, f, p,   i, s, v) { s = ""
        for (i = 1; i <= ncfg; i++) if (has(w, C[i])) { v = mf(w, C[i], f); s = s (s ? ", " : "") jstr(C[i]) ": " sprintf(p, v) }
        return "{" s "}" }
    BEGIN { ncfg = split("raw linux_buffered linear gate_off aether", C, " ")
        DESC["seq"] = "sequential 4 KiB reads, QD1, psync"
        DESC["stride"] = "4 KiB reads every 32 KiB (rw=read:28k), QD1, psync"
        DESC["randread_qd1"] = "random 4 KiB reads, QD1, io_uring"
        DESC["randread_qd32"] = "random 4 KiB reads, QD32, io_uring"
        DESC["loaders4"] = "4 parallel readers, 128 KiB reads, disjoint quarters, psync (a model loader)"
        DESC["interleaved8"] = "8 sequential 4 KiB streams over disjoint eighths, psync"
        DESC["mixed70_30"] = "random 4 KiB 70% reads / 30% writes, QD8, io_uring (IOPS: reads + writes)"
        DESC["p99_beside_seq"] = "random 4 KiB QD1 reads (p99 completion latency) beside a sequential 4 KiB stream"
        DESC["c_randread_qd1"] = "8 jobs x random 4 KiB reads, QD1 each, io_uring"
        DESC["c_randread_qd32"] = "8 jobs x random 4 KiB reads, QD32 each, io_uring"
        DESC["c_seq8"] = "8 jobs x sequential 4 KiB reads over disjoint eighths, psync"
        GB["seq"] = "linux_buffered"; GM["seq"] = 1.0
        GB["stride"] = "raw"; GM["stride"] = 3
        GB["randread_qd1"] = "raw"; GM["randread_qd1"] = 0.98
        GB["randread_qd32"] = "raw"; GM["randread_qd32"] = 0.98
        GB["loaders4"] = "raw"; GM["loaders4"] = 2
        GB["interleaved8"] = "raw"; GM["interleaved8"] = 3
        GB["c_randread_qd1"] = "linear"; GM["c_randread_qd1"] = 0.98
        GB["c_randread_qd32"] = "linear"; GM["c_randread_qd32"] = 0.98
    }
    FILENAME == runs { V4[$1, $2, $3] = $4; V5[$1, $2, $3] = $5; V6[$1, $2, $3] = $6; V7[$1, $2, $3] = $7; next }
    { P[$1, "reads"] += $3; P[$1, "demand"] += $4; P[$1, "issued"] += $5; P[$1, "hits"] += $6; P[$1, "late"] += $7
      P[$1, "wasted"] += $8; P[$1, "unused"] += $9; P[$1, "served"] += $10; P[$1, "skipped"] += $11; P[$1, "stale"] += $12 }
    END {
        nw = split(wls, W, " ")
        if (mode == "main") {
            printf "%-14s %7s %7s %7s %7s  %7s %7s %7s %7s  %-17s %-14s  %s\n", "workload", "raw", "buffrd", "gateoff", "aether",
                "ae/raw", "ae/buf", "buf/raw", "off/raw", "dev+% raw/buf/ae", "hit/late/wst%", "goal (aether): result" > table
        } else {
            printf "%-16s %7s %7s %7s %7s  %9s %11s %9s %10s  %s\n", "workload (8 jobs)", "raw", "linear", "gateoff", "aether",
                "ae/linear", "ae/gate_off", "lin/raw", "skipped%", "goal: result" > table
        }
        js = ""
        for (i = 1; i <= nw; i++) {
            w = W[i]; d = P[w, "demand"]; res = P[w, "hits"] + P[w, "late"] + P[w, "wasted"]
            hit = d ? 100 * P[w, "hits"] / d : 0; late = d ? 100 * P[w, "late"] / d : 0; wst = res ? 100 * P[w, "wasted"] / res : 0
            skp = P[w, "reads"] ? 100 * P[w, "skipped"] / P[w, "reads"] : 0
            goal = ""; met = ""
            if (w == "p99_beside_seq") {
                v = mr(w, "aether", "gate_off", 7); met = (v != "" && v <= 1.05)
                goal = "{\"baseline\": \"gate_off\", \"max\": 1.05, \"metric\": \"p99 completion latency of the random reader\"}"
                printf "%-14s %7s %7s %7s %7s  %s\n", "p99_rand|seq", "-", "-", fmt(mf(w, "gate_off", 7), "%dus"), fmt(mf(w, "aether", 7), "%dus"),
                    sprintf("p99 aether/gate_off %s; goal <= 1.05x gate off: %s", fmt(v, "%.3f"), met ? "met" : "MISSED") > table
                js = js (js ? ",\n    " : "") "{\"name\": " jstr(w) ", \"description\": " jstr(DESC[w]) \
                    ", \"p99_us\": " cfg_json(w, 7, "%d") ", \"median_ratio_p99\": {\"aether/gate_off\": " (v == "" ? "null" : sprintf("%.3f", v)) "}" \
                    ", \"median_iops_random_reader\": " cfg_json(w, 4, "%d") ", \"goal\": " goal ", \"meets_goal\": " (met ? "true" : "false") "}"
                continue
            }
            if (w in GB) {
                gv = mr(w, "aether", GB[w], 4); met = (gv != "" && gv >= GM[w])
                gtxt = sprintf(">=%gx %s: %s", GM[w], GB[w], met ? "met" : "MISSED")
                goal = "{\"baseline\": \"" GB[w] "\", \"min\": " GM[w]
                if (w ~ /^randread/) {
                    xa = mf(w, "aether", 8); xr = mf(w, "raw", 8); xok = (xa - xr <= 2)
                    gtxt = gtxt sprintf("; extra dev bytes %+.1f%% <=2%%: %s", xa - xr, xok ? "met" : "MISSED")
                    met = met && xok; goal = goal ", \"max_extra_device_bytes_pct\": 2"
                }
                if (w == "seq") { sv = mr(w, "aether", "raw", 4); gtxt = gtxt sprintf("; stretch >=7x raw: %s", sv >= 7 ? "met" : "missed")
                    goal = goal ", \"stretch\": {\"baseline\": \"raw\", \"min\": 7, \"met\": " (sv >= 7 ? "true" : "false") "}" }
                goal = goal "}"
            } else gtxt = "(no goal)"
            if (mode == "main") {
                printf "%-14s %7s %7s %7s %7s  %7s %7s %7s %7s  %-17s %-14s  %s\n", w, fmt(mf(w, "raw", 4), "%d"), fmt(mf(w, "linux_buffered", 4), "%d"),
                    fmt(mf(w, "gate_off", 4), "%d"), fmt(mf(w, "aether", 4), "%d"), fmt(mr(w, "aether", "raw", 4), "%.2f"),
                    fmt(mr(w, "aether", "linux_buffered", 4), "%.2f"), fmt(mr(w, "linux_buffered", "raw", 4), "%.2f"),
                    fmt(mr(w, "gate_off", "raw", 4), "%.2f"),
                    fmt(mf(w, "raw", 8), "%.0f") "/" fmt(mf(w, "linux_buffered", 8), "%.0f") "/" fmt(mf(w, "aether", 8), "%.0f"),
                    sprintf("%.0f/%.0f/%.0f", hit, late, wst), gtxt > table
            } else {
                printf "%-16s %7s %7s %7s %7s  %9s %11s %9s %10s  %s\n", substr(w, 3), fmt(mf(w, "raw", 4), "%d"), fmt(mf(w, "linear", 4), "%d"),
                    fmt(mf(w, "gate_off", 4), "%d"), fmt(mf(w, "aether", 4), "%d"), fmt(mr(w, "aether", "linear", 4), "%.3f"),
                    fmt(mr(w, "aether", "gate_off", 4), "%.3f"), fmt(mr(w, "linear", "raw", 4), "%.3f"), sprintf("%.2f", skp), gtxt > table
            }
            js = js (js ? ",\n    " : "") "{\"name\": " jstr(w) ", \"description\": " jstr(DESC[w]) \
                ", \"median_iops\": " cfg_json(w, 4, "%d") \
                ", \"median_ratio\": " ratio_json(w, "aether/raw aether/linux_buffered linux_buffered/raw gate_off/raw aether/gate_off aether/linear linear/raw") \
                ", \"device_bytes_read\": " cfg_json(w, 6, "%d") ", \"device_extra_pct\": " cfg_json(w, 8, "%.2f") \
                (goal != "" ? ", \"goal\": " goal ", \"meets_goal\": " (met ? "true" : "false") : "") \
                ", \"prefetch\": {\"hit_pct\": " sprintf("%.2f", hit) ", \"late_pct\": " sprintf("%.2f", late) ", \"waste_pct\": " sprintf("%.2f", wst) \
                ", \"demand_blocks\": " (d + 0) ", \"issued\": " (P[w, "issued"] + 0) ", \"hits\": " (P[w, "hits"] + 0) ", \"late\": " (P[w, "late"] + 0) \
                ", \"wasted\": " (P[w, "wasted"] + 0) ", \"unused_at_end\": " (P[w, "unused"] + 0) ", \"cache_read_hits\": " (P[w, "served"] + 0) \
                ", \"stale_dropped\": " (P[w, "stale"] + 0) ", \"reads\": " (P[w, "reads"] + 0) ", \"gate_skipped\": " (P[w, "skipped"] + 0) \
                ", \"gate_skipped_pct\": " sprintf("%.3f", skp) "}}"
        }
        printf "{\n  \"schema\": \"aether-bench/2\",\n  \"benchmark\": %s,\n", jstr(mode == "main" ? \
            "make bench: fio O_DIRECT on raw NVMe, aether (gate off) and aether, Linux buffered readahead as the anchor; one boot, rotated rounds" : \
            mode == "contention" ? "make bench-contention: 8 fio jobs on raw NVMe, dm-linear, aether (gate off) and aether; one boot, rotated rounds" : \
            "make bench-cost: 8 fio jobs on a null NVMe namespace, raw, dm-linear, aether (gate off) and aether, guest time counted in instructions (QEMU -icount shift=0); one boot, rotated rounds") > out
        printf "  \"kernel\": %s, \"cpus\": %d, \"accel\": %s, \"fio\": %s, \"rounds\": %d, \"seconds_per_run\": %d,\n", jstr(kernel), cpus,
            jstr(mode == "cost" ? "tcg-icount" : "tcg"), jstr(fiov), rounds, secs > out
        printf "  \"span_bytes\": %d, \"read_ahead_kb\": %d,\n", span, ra > out
        printf "  \"method\": \"each run: page cache dropped, dm device created fresh, one pass from the start of the span until its end or seconds_per_run; ratios: median over rounds of the within-round ratio; device bytes: /sys/block/" ns "/stat sectors read x 512; prefetch: aether counters summed over rounds (waste_pct = wasted / (hits + late + wasted); unused_at_end = prefetched blocks still unused when the run ended)\",\n" > out
        printf "  \"workloads\": [\n    %s\n  ]\n}\n", js > out
    }' "$W/runs" "$W/pf"
}
aggregate /tmp/results.json
echo "@@BENCH-TABLE-BEGIN@@"
cat $W/table
echo "@@BENCH-TABLE-END@@"
echo "@@BENCH-RUNS-BEGIN@@"
cat $W/runs
echo "@@BENCH-RUNS-END@@"
echo "@@BENCH-PF-BEGIN@@"
cat $W/pf
echo "@@BENCH-PF-END@@"
echo "@@BENCH-JSON-BEGIN@@"
cat /tmp/results.json
echo "@@BENCH-JSON-END@@"
rmmod aether || t_fail "rmmod aether"
t_done
