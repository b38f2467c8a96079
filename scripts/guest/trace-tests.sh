#!/bin/sh
# Guest job: aether's trace events, enabled through tracefs, counted against
# the device's own counters in `dmsetup status` over the same fio runs. The
# counts must match exactly: events and counters are bumped at the same
# places (see Documentation/ABI/testing/tracefs-aether).
#
# From the host:
#   scripts/build-module.sh
#   scripts/qemu-run.sh --timeout 600 scripts/guest/trace-tests.sh
. /aether/guest/lib.sh

KO=/aether/aether.ko
N0=/dev/nvme0n1
T=/sys/kernel/tracing
EV=$T/events/aether
TR=/tmp/trace.txt
st() { dmsetup status "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# evsum EVENT FIELD [FILTER_FIELD OP VALUE]: sum of FIELD over EVENT's lines in $TR
# ("1" as FIELD counts them); the filter keeps lines where FILTER_FIELD OP VALUE.
evsum() {
    awk -v ev="$1:" -v f="$2" -v ff="${3:-}" -v op="${4:-}" -v fv="${5:-}" '
        { for (i = 1; i <= NF; i++) if ($i == ev) break
          if (i > NF) next
          delete kv; for (j = i + 1; j < NF; j += 2) kv[$j] = $(j + 1)
          if (ff != "" && !((op == "==" && kv[ff] == fv) || (op == "!=" && kv[ff] != fv))) next
          s += (f == "1") ? 1 : kv[f] }
        END { printf "%d\n", s }' $TR
}
snap() { cat $T/trace > $TR; }

echo "# aether trace tests: $(uname -r), $(nproc) CPUs"
mountpoint -q $T || mount -t tracefs tracefs $T
t_check "insmod aether.ko" insmod $KO
for e in aether_decision aether_prefetch_issue aether_prefetch_done aether_hit aether_late aether_invalidate; do
    t_check "tracefs lists aether:$e" test -r $EV/$e/format
done
t_check "aether_decision's format has dev, stream, lba, sectors, prob, depth, prefetch" sh -c \
    "for f in dev stream lba sectors prob depth pf_sectors prefetch; do grep -q \"field:.* \$f;\" $EV/aether_decision/format || exit 1; done"
t_check "aether_prefetch_done's format has status and latency_ns" sh -c \
    "grep -q 'field:int status;' $EV/aether_prefetch_done/format && grep -q 'field:u64 latency_ns;' $EV/aether_prefetch_done/format"

S0=$(cat /sys/block/nvme0n1/size)
dd if=/dev/urandom of=$N0 bs=1M count=64 oflag=direct 2>/dev/null
t_check "create 't' on $N0" dmsetup create t --table "0 $S0 aether $N0 2 cache_mb 16"
P=/dev/mapper/t
DEV=$(dmsetup info -c --noheadings -o major,minor t | tr -d ' ')

# Big per-CPU buffers so that nothing is overwritten; no other event is on.
echo 0 > $T/tracing_on
echo > $T/set_event
echo 8192 > $T/buffer_size_kb
echo > $T/trace
echo 1 > $EV/enable
echo 1 > $T/tracing_on
dmsetup message t 0 reset_stats
# A sequential reader (prefetches, hits), several sequential readers at once
# (late blocks are likely: a reader catches up with its prefetch), a write
# over blocks prefetched ahead of the reader (invalidations), random reads
# (the gate stays closed).
fio --name=seq --filename=$P --rw=read --bs=4k --direct=1 --ioengine=psync --size=16M --eta=never --output=/dev/null ||
    t_fail "fio seq"
fio --name=par --filename=$P --rw=read --bs=16k --direct=1 --ioengine=libaio --iodepth=8 --numjobs=4 \
    --offset_increment=8M --offset=16M --size=8M --eta=never --output=/dev/null || t_fail "fio parallel readers"
fio --name=seq2 --filename=$P --rw=read --bs=4k --direct=1 --ioengine=psync --offset=56M --size=4M --eta=never --output=/dev/null ||
    t_fail "fio seq2"
fio --name=w --filename=$P --rw=write --bs=64k --direct=1 --ioengine=psync --offset=60M --size=1M --eta=never --output=/dev/null ||
    t_fail "fio write"
fio --name=rand --filename=$P --rw=randread --bs=4k --direct=1 --ioengine=psync --size=64M --io_size=4M \
    --eta=never --output=/dev/null || t_fail "fio random"
# Let the last prefetches complete (their done events), then stop: poll, as a fixed sleep can be
# too short on a loaded host.
i=0
while [ "$(st t cache_in_flight_blocks)" != 0 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
echo "# prefetches in flight after the runs: $(st t cache_in_flight_blocks), after $i polls"
echo 0 > $T/tracing_on
snap
# Nothing the events count happens without I/O: the counters are final.
status=$(dmsetup status t)
echo "# $status" | cut -c1-400
c() { echo "$status" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
for e in aether_decision aether_prefetch_issue aether_prefetch_done aether_hit aether_late aether_invalidate; do
    grep -m1 ": $e:" $TR | sed 's/^ */# sample: /'
done
lost=$(cat $T/per_cpu/cpu*/stats | awk '/^(overrun|dropped events):/ { s += $NF } END { print s + 0 }')
t_eq "trace buffer lost nothing (overrun + dropped)" 0 "$lost"

issued=$(c prefetch_issued)
echo "# events: decision=$(evsum aether_decision 1) issue=$(evsum aether_prefetch_issue 1)" \
    "done=$(evsum aether_prefetch_done 1) hit=$(evsum aether_hit 1) late=$(evsum aether_late 1)" \
    "invalidate=$(evsum aether_invalidate 1)"
t_check "the run prefetched ($issued blocks), hit ($(c cache_read_hits) reads) and invalidated ($(c cache_invalidated) blocks)" \
    sh -c "[ '$issued' -gt 0 ] && [ '$(c cache_read_hits)' -gt 0 ] && [ '$(c cache_invalidated)' -gt 0 ]"
t_eq "aether_decision events == gate_open + gate_closed" $(($(c gate_open) + $(c gate_closed))) "$(evsum aether_decision 1)"
t_eq "aether_decision prefetch=yes events == gate_open" "$(c gate_open)" "$(evsum aether_decision 1 prefetch == yes)"
t_eq "sum of aether_decision pf_sectors == gate_sectors" "$(c gate_sectors)" "$(evsum aether_decision pf_sectors)"
t_eq "aether_prefetch_issue (status 0) sectors / 8 == prefetch_issued" "$issued" \
    $(($(evsum aether_prefetch_issue sectors status == 0) / 8))
# A failed submit (status -ENOMEM) is one of the runs prefetch_alloc_failures counts.
t_check "aether_prefetch_issue events with status < 0 ($(evsum aether_prefetch_issue 1 status != 0)) <= prefetch_alloc_failures ($(c prefetch_alloc_failures))" \
    test "$(evsum aether_prefetch_issue 1 status != 0)" -le "$(c prefetch_alloc_failures)"
t_eq "aether_prefetch_done sectors / 8 == prefetch_issued (all completed)" "$issued" \
    $(($(evsum aether_prefetch_done sectors) / 8))
t_eq "aether_prefetch_done with status != 0, sectors / 8 == prefetch_errors" "$(c prefetch_errors)" \
    $(($(evsum aether_prefetch_done sectors status != 0) / 8))
t_eq "aether_hit events == cache_read_hits" "$(c cache_read_hits)" "$(evsum aether_hit 1)"
t_eq "sum of aether_late blocks == prefetch_late ($(c prefetch_late))" "$(c prefetch_late)" "$(evsum aether_late blocks)"
t_eq "sum of aether_invalidate blocks == cache_invalidated" "$(c cache_invalidated)" "$(evsum aether_invalidate blocks)"
t_eq "every event names the aether device ($DEV)" 0 \
    "$(grep ': aether_' $TR | grep -vc "dev $DEV ")"
t_eq "every prefetch is block-aligned, inside the device" 0 "$(awk -v max=$S0 '/aether_prefetch_issue:/ {
    for (i = 1; i < NF; i++) { if ($i == "lba") l = $(i + 1); if ($i == "sectors") n = $(i + 1) }
    if (l % 8 || n % 8 || n == 0 || l + n > max) bad++ } END { print bad + 0 }' $TR)"
lat=$(awk '/aether_prefetch_done:/ { for (i = 1; i < NF; i++) if ($i == "latency_ns") print $(i + 1) }' $TR | sort -n)
echo "# prefetch latency ns: min $(echo "$lat" | head -1) median $(echo "$lat" | sed -n "$(( ($(echo "$lat" | wc -l) + 1) / 2 ))p") max $(echo "$lat" | tail -1)"
t_check "prefetch latencies are positive and under 10 s" sh -c \
    "[ '$(echo "$lat" | head -1)' -gt 0 ] && [ '$(echo "$lat" | tail -1)' -lt 10000000000 ]"
t_eq "P is Q16 (0 to 65536) in every decision" 0 "$(awk '/aether_decision:/ {
    for (i = 1; i < NF; i++) if ($i == "P") { split($(i + 1), q, "/"); if (q[1] > 65536 || q[2] != 65536) bad++ } }
    END { print bad + 0 }' $TR)"

# A filter on dev (the kernel's dev_t, major << 20 | minor) keeps this device's events only.
kdev=$(( (${DEV%%:*} << 20) | ${DEV##*:} ))
for f in "dev == $kdev" "dev != $kdev"; do
    echo "$f" > $EV/filter
    echo > $T/trace
    echo 1 > $T/tracing_on
    fio --name=flt --filename=$P --rw=read --bs=4k --direct=1 --ioengine=psync --offset=40M --size=1M --eta=never --output=/dev/null
    echo 0 > $T/tracing_on
    snap
    n=$(grep -c ': aether_decision:' $TR)
    if [ "$f" = "dev == $kdev" ]; then t_eq "filter '$f' keeps all 256 decisions" 256 "$n"
    else t_eq "filter '$f' keeps none" 0 "$n"; fi
done
echo 0 > $EV/filter

# Disabled events record nothing.
echo > $T/trace
echo 0 > $EV/enable
echo 1 > $T/tracing_on
fio --name=off --filename=$P --rw=read --bs=4k --direct=1 --ioengine=psync --size=4M --eta=never --output=/dev/null
sleep 1
echo 0 > $T/tracing_on
snap
t_eq "with the events disabled, none is recorded" 0 "$(grep -c ': aether_' $TR)"

# perf reads the same events (when the host shipped its perf with --bin).
if [ -x /aether/bin/perf ]; then
    dmsetup message t 0 reset_stats
    /aether/bin/perf stat -a -x, -o /tmp/perf.csv -e aether:aether_decision -e aether:aether_prefetch_issue -- \
        fio --name=perf --filename=$P --rw=read --bs=4k --direct=1 --ioengine=psync --offset=32M --size=4M \
        --eta=never --output=/dev/null
    sleep 1
    sed 's/^/# perf: /' /tmp/perf.csv | grep -v '^# perf: *$' | head -5
    status=$(dmsetup status t)
    t_eq "perf stat counts aether:aether_decision == gate_open + gate_closed" $(($(c gate_open) + $(c gate_closed))) \
        "$(awk -F, '$3 == "aether:aether_decision" { print $1 }' /tmp/perf.csv)"
else
    echo "# perf not shipped (--bin /usr/bin/perf): perf check not run"
fi

t_check "remove 't'" dmsetup remove t
t_check "rmmod aether" rmmod aether
t_dmesg_clean "trace events"
t_done
