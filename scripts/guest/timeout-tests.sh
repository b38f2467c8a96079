#!/bin/sh
# Guest job: a request timeout on the NVMe below aether does not wedge aether (issue 12). The
# device is qemu-run.sh's --slow-nvme controller: QEMU's null-co driver completes every request
# SLOW ms after submission (reads return zeroes), and the job lowers that namespace's block
# timeout to 1 s, so every request times out: the nvme driver sends an Abort (QEMU's controller
# does not abort), times out again and resets the controller. QEMU drains its in-flight requests
# when the controller is disabled, so a timed-out demand read still completes, with its data, at
# about SLOW ms; prefetches caught by the reset fail (REQ_NOWAIT against the quiesced queue, or
# cancelled; no retry for REQ_RAHEAD). The job checks that reads through aether return (data or
# EIO, never a hang) within a bound, with their prefetches, and under fio with many requests in
# flight; that `dmsetup status` and debugfs answer while a read is stuck in the timeout handler;
# that nothing stays in flight once idle; and that remove and rmmod complete.
#
#   scripts/qemu-run.sh --slow-nvme 5000 --timeout 600 scripts/guest/timeout-tests.sh [SLOW_MS]
. /aether/guest/lib.sh

KO=/aether/aether.ko
DBG=/sys/kernel/debug/aether
SLOW_MS=${1:-5000}
TO_MS=1000
st() { dmsetup status "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
sec() { echo "# --- $* (t=$(cut -d' ' -f1 /proc/uptime)s)"; }
# Uptime in tenths of a second.
now() { awk '{ split($1, a, "."); print a[1] * 10 + substr(a[2] "0", 1, 1) }' /proc/uptime; }
tenths() { echo "$(($1 / 10)).$(($1 % 10))"; }

echo "# aether timeout tests: $(uname -r), $(nproc) CPUs, slow NVMe latency ${SLOW_MS} ms, timeout ${TO_MS} ms"
SL=$(nvme_by_serial aetherslow)
if [ -z "$SL" ]; then
    t_fail "the slow NVMe namespace (serial aetherslow) exists (run with qemu-run.sh --slow-nvme MS)"
    t_done; exit 1
fi
t_ok "the slow NVMe namespace (serial aetherslow) is /dev/$SL"
DEV=/dev/$SL
SZ=$(cat /sys/block/$SL/size)
Q=/sys/block/$SL/queue/io_timeout
rq_to=$(cat $Q)
echo 1 > /sys/module/nvme_core/parameters/max_retries
t_check "lower $SL's request timeout to $TO_MS ms (was $rq_to ms), nvme_core.max_retries=1" sh -c "echo $TO_MS > $Q"
t_check "insmod aether.ko" insmod $KO
t_check "create 'ts' (aether over $DEV)" dmsetup create ts --table "0 $SZ aether $DEV 2 cache_mb 16"
TS=/dev/mapper/ts
dmesg -c >/dev/null
# How the prefetches ended (the errno of each run): the aether_prefetch_done trace event.
T=/sys/kernel/tracing; [ -e $T/trace ] || mount -t tracefs tracefs $T
echo 0 > $T/tracing_on; echo > $T/set_event; echo 4096 > $T/buffer_size_kb; echo > $T/trace
echo 1 > $T/events/aether/aether_prefetch_done/enable && echo 1 > $T/tracing_on

# ================================================================ timed-out reads
sec "sequential 4 KiB O_DIRECT reads through aether, every request times out"
# One read per dd (dd stops at its first error), at consecutive offsets: a sequential stream for
# the gate. Each returns or is killed by `timeout`; a killed one is the hang this job looks for.
eio=0 ok=0 hung=0 max=0 total0=$(now)
for i in 0 1 2 3 4 5; do
    t0=$(now)
    timeout 60 dd if=$TS of=/dev/null bs=4k count=1 skip=$i iflag=direct 2>/tmp/dd.err
    rc=$?
    dt=$(( $(now) - t0 )); [ $dt -gt $max ] && max=$dt
    if [ $rc = 0 ]; then ok=$((ok + 1))
    elif grep -q "I/O error" /tmp/dd.err; then eio=$((eio + 1))
    else hung=$((hung + 1)); fi
    echo "# read $i: rc=$rc after $(tenths $dt)s $(head -1 /tmp/dd.err)"
done
total=$(( $(now) - total0 ))
echo "# 6 reads: $eio EIO, $ok ok, $hung other (killed or otherwise failed), slowest $(tenths $max)s, all $(tenths $total)s"
echo "# status: reads=$(st ts reads) read_errors=$(st ts read_errors) gate_open=$(st ts gate_open) prefetch_issued=$(st ts prefetch_issued) prefetch_errors=$(st ts prefetch_errors) in_flight=$(st ts cache_in_flight_blocks)"
t_eq "every read returned (none killed by timeout 60)" 0 "$hung"
t_eq "every read returned data or EIO ($ok data, $eio EIO)" 6 $((ok + eio))
t_eq "aether's read_errors counts the EIOs" "$eio" "$(st ts read_errors)"
t_check "the slowest read returned within 40 s ($(tenths $max)s)" test "$max" -le 400
dmesg | grep -E 'nvme|I/O error|aether' | head -8 | sed 's/^/#   /'
ab=$(dmesg | grep -c 'timeout, aborting') rs=$(dmesg | grep -c 'timeout, reset controller')
echo "# dmesg: $ab 'timeout, aborting', $rs 'timeout, reset controller'"
t_check "every read timed out in the nvme driver ($ab aborts for 6 reads)" test "$ab" -ge 6
t_check "...and the driver reset the controller ($rs resets)" test "$rs" -ge 1
t_check "the gate opened and prefetches went into the timeouts (prefetch_issued=$(st ts prefetch_issued))" \
    test "$(st ts prefetch_issued)" -gt 0

# ================================================================ many requests in flight
# fio over libaio: 8 reads in flight, none REQ_NOWAIT, so every error aether counts reaches fio.
# Then io_uring, whose first attempt is REQ_NOWAIT: while the reset freezes the nvme queue such a
# read fails with BLK_STS_AGAIN and io_uring reissues it blocking, so fio sees no error. aether does
# not count BLK_STS_AGAIN in read_errors either (it is a retry, not an error), so for both engines
# the errors aether counts are the ones fio saw.
sec "fio: 8 sequential 4 KiB reads in flight, timing out together"
for eng in libaio io_uring; do
    dmesg -c >/dev/null
    e0=$(st ts read_errors)
    t0=$(now)
    timeout 90 fio --name=q --filename=$TS --rw=read --bs=4k --direct=1 --ioengine=$eng --iodepth=8 \
        --offset=1M --time_based --runtime=8 --continue_on_error=all --output=/tmp/fio.to >/dev/null 2>&1
    frc=$?
    dt=$(( $(now) - t0 ))
    fe=$(sed -n 's/.*errors *: total=\([0-9]*\).*/\1/p' /tmp/fio.to | head -1)
    de=$(( $(st ts read_errors) - e0 ))
    grep -E "READ:" /tmp/fio.to | head -1 | sed 's/^/#   /'
    echo "# fio $eng: rc=$frc after $(tenths $dt)s, $(sed -n 's/.*io=\([0-9.]*[KM]iB\).*/\1/p' /tmp/fio.to | head -1) read, fio errors ${fe:-?}, read_errors +$de;" \
        "dmesg: $(dmesg | grep -c 'timeout, aborting') aborts, $(dmesg | grep -c 'timeout, reset controller') resets, $(dmesg | grep -c 'I/O error') I/O error lines"
    echo "# status: reads=$(st ts reads) read_errors=$(st ts read_errors) prefetch_issued=$(st ts prefetch_issued) prefetch_errors=$(st ts prefetch_errors)"
    t_check "fio $eng was not killed: its 8 s run ended within 40 s ($(tenths $dt)s, rc=$frc)" test "$frc" != 124 -a "$dt" -le 400
    t_check "fio $eng: its requests timed out and the controller was reset" sh -c "dmesg | grep -q 'timeout, reset controller'"
    t_eq "fio $eng: the read errors aether counted are the ones fio saw" "${fe:-?}" "$de"
done

# ================================================================ status while a read is stuck
# From the moment the driver logs the abort of a read until the read returns, `dmsetup status`
# and a read of debugfs stats run in a loop; they must answer while the read is still out. The
# abort comes 1 to 4 s after submission (the block timer's granularity under TCG) and the
# controller reset then stalls the whole guest while QEMU drains the request, so the window can
# be short: up to 3 reads are tried, and one answer inside a window is required.
sec "dmsetup status and debugfs while a read is stuck in the timeout handler"
n=0 bad=0 max=0
for try in 1 2 3; do
    dmesg -c >/dev/null
    t0=$(now)
    dd if=$TS of=/dev/null bs=4k count=1 skip=$((5 + try)) iflag=direct 2>/dev/null &
    DD=$!
    ab="" seen=""
    while kill -0 $DD 2>/dev/null && [ $(( $(now) - t0 )) -lt 600 ]; do
        if [ -n "$ab" ] || dmesg | grep -q 'timeout, aborting'; then
            t1=$(now); [ -n "$ab" ] || ab=$(( t1 - t0 ))
            if timeout 10 dmsetup status ts >/dev/null && timeout 10 cat $DBG/ts/stats >/dev/null; then
                kill -0 $DD 2>/dev/null && { n=$((n + 1)); seen="$seen $(tenths $(( $(now) - t0 )))"; }
            else
                bad=$((bad + 1))
            fi
            dt=$(( $(now) - t1 )); [ $dt -gt $max ] && max=$dt
        else
            sleep 0.1
        fi
    done
    wait $DD
    echo "# read $try took $(tenths $(( $(now) - t0 )))s, abort seen at $(tenths ${ab:-0})s; status+stats answered while it was out at:${seen:- never} (s)"
    [ "$n" -ge 1 ] && break
done
t_eq "no status or debugfs call failed or hung" 0 "$bad"
t_check "status and debugfs answered while a read was stuck after its abort ($n times, $try reads)" test "$n" -ge 1
t_check "...each within 10 s (slowest $(tenths $max)s)" test "$max" -le 100

# ================================================================ idle
sec "once idle: nothing left in flight"
t0=$(now)
while [ "$(st ts cache_in_flight_blocks) $(st ts writes_in_flight)" != "0 0" ] && [ $(( $(now) - t0 )) -lt 600 ]; do sleep 1; done
echo "# idle after $(tenths $(( $(now) - t0 )))s: prefetch_issued=$(st ts prefetch_issued) prefetch_errors=$(st ts prefetch_errors) in_flight=$(st ts cache_in_flight_blocks)"
t_eq "no prefetch or write left in flight once idle" "0 0" "$(st ts cache_in_flight_blocks) $(st ts writes_in_flight)"
echo 0 > $T/tracing_on
echo "# prefetch runs completed, by status (0 ok, -11 -EAGAIN, -5 -EIO):" \
    $(sed -n 's/.*aether_prefetch_done:.* status \(-*[0-9]*\) latency_ns \([0-9]*\).*/\1/p' $T/trace | sort -n | uniq -c | awk '{ printf "status %s: %s; ", $2, $1 }')
echo "# ...slowest run: $(sed -n 's/.*latency_ns \([0-9]*\).*/\1/p' $T/trace | sort -n | tail -1) ns"
echo 0 > $T/events/aether/aether_prefetch_done/enable

# ================================================================ recovery
sec "the timeout raised above the latency again: a read completes without a timeout"
echo 30000 > $Q
dmesg -c >/dev/null
t0=$(now)
z=$(timeout 60 dd if=$TS bs=4k count=1 skip=100 iflag=direct 2>/dev/null | od -An -v -tx1 | tr -d ' \n' | tr -d 0 | wc -c)
dt=$(( $(now) - t0 ))
t_eq "a read through aether returns the namespace's zeroes ($(tenths $dt)s)" 0 "$z"
t_check "...in about the device latency (${SLOW_MS} ms), with no timeout in dmesg" \
    sh -c "test $dt -le $(( SLOW_MS / 100 + 30 )) && ! dmesg | grep -q timeout"
t_eq "no prefetch or write in flight" "0 0" "$(st ts cache_in_flight_blocks) $(st ts writes_in_flight)"

# ================================================================ teardown
sec "teardown"
t0=$(now)
t_check "remove 'ts'" timeout 60 dmsetup remove ts
t_check "...within 10 s ($(tenths $(( $(now) - t0 )))s)" test $(( $(now) - t0 )) -le 100
t_refuse "no stale debugfs entry for 'ts'" test -e $DBG/ts
t_check "rmmod aether" rmmod aether
echo $rq_to > $Q
t_done
