#!/bin/sh
# Guest job: stalls below aether (issue 12). dm-delay under aether with fio in flight: the I/O
# finishes, verifies and nothing leaks; removing aether while dm-delay holds its prefetches waits
# for them (no hang, no use-after-free); `remove --force` while a reader is stuck in the delay.
# (dm-flakey and dm-error are in prefetch-tests.sh.)
#
#   scripts/qemu-run.sh --nvme 2 --timeout 900 scripts/guest/faults-tests.sh
. /aether/guest/lib.sh

KO=/aether/aether.ko
DBG=/sys/kernel/debug/aether
N1=/dev/nvme1n1
S1=$(cat /sys/block/nvme1n1/size)
st() { dmsetup status "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
sec() { echo "# --- $* (t=$(cut -d' ' -f1 /proc/uptime)s)"; }
up() { cut -d' ' -f1 /proc/uptime | cut -d. -f1; }
# Sets dm-delay device $1's delay to $2 ms (a reload; the suspend flushes what it holds).
set_delay() { dmsetup suspend "$1" && echo "0 $S1 delay $N1 0 $2" | dmsetup reload "$1" && dmsetup resume "$1"; }

echo "# aether fault tests: $(uname -r), $(nproc) CPUs"
t_check "insmod aether.ko" insmod $KO
dd if=/dev/urandom of=$N1 bs=1M count=64 oflag=direct 2>/dev/null

# ================================================================ stall under load
sec "dm-delay stalls under aether with verifying fio in flight"
t_check "create 'dl' (dm-delay on $N1, 0 ms)" dmsetup create dl --table "0 $S1 delay $N1 0 0"
t_check "create 'ad' (aether over dl)" dmsetup create ad --table "0 $S1 aether /dev/mapper/dl 2 cache_mb 16"
AD=/dev/mapper/ad
fio --name=seq --filename=$AD --rw=read --bs=4k --direct=1 --ioengine=psync --size=48M --time_based --runtime=25 \
    --name=vw --filename=$AD --rw=randwrite --bs=4k --direct=1 --ioengine=io_uring --iodepth=8 --offset=100M --size=16M \
        --verify=crc32c --do_verify=1 --verify_fatal=1 --time_based --runtime=25 \
    --output-format=normal,terse --output=/tmp/fio.stall >/dev/null 2>&1 &
FIO=$!
sleep 3
stalls=0
for ms in 500 2000 0 1000 0; do
    set_delay dl $ms && stalls=$((stalls + 1))
    sleep 3
done
t_eq "5 delay changes (0 -> 500 -> 2000 -> 0 -> 1000 -> 0 ms) under load" 5 "$stalls"
t0=$(up)
wait $FIO; frc=$?
t_eq "fio (sequential reader + crc32c-verifying writer) finishes without errors" 0 "$frc"
t_check "...and within 60 s of its 25 s run ($(( $(up) - t0 ))s after the last stall)" test $(( $(up) - t0 )) -le 60
grep -E "err=|READ:|WRITE:" /tmp/fio.stall | head -6 | sed 's/^/#   /'
# What fio completed (terse v3: field 6 read KiB, 47 write KiB; 4 KiB per I/O) must all have gone
# through aether. Counted, not a rate: a slow machine (the debug kernel does about 600 reads here) passes.
fio_r=$(awk -F';' '$1 == 3 { n += $6 / 4 } END { printf "%d", n }' /tmp/fio.stall)
fio_w=$(awk -F';' '$1 == 3 { n += $47 / 4 } END { printf "%d", n }' /tmp/fio.stall)
t_check "aether saw the reads ($(st ad reads) >= fio's $fio_r) and writes ($(st ad writes) >= fio's $fio_w) of the run" \
    test "$fio_r" -gt 0 -a "$fio_w" -gt 0 -a "$(st ad reads)" -ge "$fio_r" -a "$(st ad writes)" -ge "$fio_w"
echo "# stall: reads=$(st ad reads) prefetch_issued=$(st ad prefetch_issued) hits=$(st ad prefetch_hits) in_flight=$(st ad cache_in_flight_blocks) writes_in_flight=$(st ad writes_in_flight)"
t_eq "no prefetch or write left in flight once idle" "0 0" "$(st ad cache_in_flight_blocks) $(st ad writes_in_flight)"
t_eq "data through aether equals raw after the stalls (16 MiB at 100 MiB, md5)" \
    "$(dd if=$N1 bs=1M skip=100 count=16 iflag=direct 2>/dev/null | md5sum)" "$(dd if=$AD bs=1M skip=100 count=16 iflag=direct 2>/dev/null | md5sum)"

# ================================================================ remove while prefetches are held
sec "remove aether while dm-delay holds its prefetches"
fails="" held_any=0
for i in 1 2 3 4 5; do
    dmsetup remove ad 2>/dev/null
    set_delay dl 0
    dmsetup create ad --table "0 $S1 aether /dev/mapper/dl 2 cache_mb 16" || { fails="$fails $i:create"; continue; }
    # Warm a sequential stream so the gate opens, then stall the device and read on a little: the
    # next blocks are cached already, so these reads are hits, and each moves the stream on and sends
    # the next window down, where dm-delay holds it for 3 s. (A reader that went on would park on those
    # prefetches and finish with them: late reads wait.) Remove as soon as the reader is done.
    dd if=$AD of=/dev/null bs=4k count=2048 iflag=direct 2>/dev/null
    set_delay dl 3000
    dd if=$AD of=/dev/null bs=4k count=16 skip=2048 iflag=direct 2>/dev/null &
    DD=$!
    sleep 1
    held=$(st ad cache_in_flight_blocks)
    wait $DD
    at_remove=$(st ad cache_in_flight_blocks)
    [ "${held:-0}" -gt 0 ] && held_any=$((held_any + 1))
    t0=$(up)
    dmsetup remove ad || fails="$fails $i:remove"
    echo "# cycle $i: $held prefetch blocks held by dm-delay 1 s in, $at_remove at remove; remove took $(( $(up) - t0 ))s"
    [ $(( $(up) - t0 )) -le 20 ] || fails="$fails $i:slow"
    [ ! -e $DBG/ad ] || fails="$fails $i:debugfs"
done
t_check "prefetches were held in dm-delay at remove in some cycles ($held_any of 5)" test "$held_any" -gt 0
t_eq "5 removes with prefetches held in dm-delay complete (<= 20 s each), debugfs gone" "" "$fails"

# ================================================================ remove --force with a stuck reader
sec "remove --force while a reader waits in dm-delay"
set_delay dl 0
t_check "create 'ad' again" dmsetup create ad --table "0 $S1 aether /dev/mapper/dl"
set_delay dl 4000
dd if=$AD of=/dev/null bs=4k count=3 iflag=direct 2>/dev/null &
DD=$!
# Until dd holds the device open (a fixed second can be too short on a loaded host).
i=0
while [ "$(dmsetup info -c --noheadings -o open ad)" -lt 1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
t_refuse "plain remove is refused while the reader holds the device open" dmsetup remove ad
t0=$(up)
dmsetup remove --force ad >/tmp/force.out 2>&1
echo "# remove --force: rc=$? after $(( $(up) - t0 ))s: $(head -2 /tmp/force.out | tr '\n' ' ')"
wait $DD
t_check "the stuck reader returned within 30 s ($(( $(up) - t0 ))s)" test $(( $(up) - t0 )) -le 30
t_check "device 'ad' can be removed once closed (forced or not)" sh -c 'dmsetup info ad >/dev/null 2>&1 && dmsetup remove ad || ! dmsetup info ad >/dev/null 2>&1'
t_refuse "no stale debugfs entry for 'ad'" test -e $DBG/ad
set_delay dl 0
t_check "remove 'dl'" dmsetup remove dl
t_check "rmmod aether" rmmod aether
t_dmesg_clean "fault tests"
t_done
