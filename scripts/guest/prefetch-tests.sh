#!/bin/sh
# Guest job: the prefetch cache (issue 9) and the dm layer under it (issue 8):
# prefetches are issued and served, random reads are left alone, writes are
# never hidden by the cache, faults below aether, memory pressure, lifetime
# under load, and a table that maps only part of the device.
#
# From the host:
#   scripts/build-module.sh
#   scripts/qemu-run.sh --nvme 2 --timeout 900 scripts/guest/prefetch-tests.sh
. /aether/guest/lib.sh

KO=/aether/aether.ko
DBG=/sys/kernel/debug/aether
N0=/dev/nvme0n1
N1=/dev/nvme1n1
M=1048576
st() { dmsetup status "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
msg() { d=$1; shift; dmsetup message "$d" 0 -- "$@"; }
sec() { echo "# --- $* (t=$(cut -d' ' -f1 /proc/uptime)s)"; }
diag() { printf '%s\n' "$@" | head -6 | sed 's/^/#   /'; }
# Device bytes read from namespace $1 so far (/sys/block/*/stat field 3 is sectors read).
devread() { echo $(( $(awk '{ print $3 }' /sys/block/$1/stat) * 512 )); }
sha() { dd if="$1" bs="$2" count="$3" skip="$4" iflag=direct 2>/dev/null | sha1sum | cut -d' ' -f1; }

echo "# aether prefetch tests: $(uname -r), $(nproc) CPUs"
S0=$(cat /sys/block/nvme0n1/size)
t_check "insmod aether.ko" insmod $KO
# A known pattern on the namespace: every 4 KiB block differs.
dd if=/dev/urandom of=/tmp/rnd bs=1M count=8 2>/dev/null
for i in 0 1 2 3 4 5 6 7 8 9 10 11; do dd if=/tmp/rnd of=$N0 bs=1M seek=$((i * 8)) oflag=direct 2>/dev/null; done

# ================================================================ sequential
sec "sequential O_DIRECT reader: prefetched, served from RAM, same bytes"
t_check "create 'p' on $N0 (cache_mb 32)" dmsetup create p --table "0 $S0 aether $N0 2 cache_mb 32"
P=/dev/mapper/p
r0=$(devread nvme0n1)
t_check "fio seq 4 KiB psync reader over 48 MiB" fio --name=s --filename=$P --rw=read --bs=4k --direct=1 \
    --ioengine=psync --size=48M --output=/tmp/fio.seq
dev_bytes=$(( $(devread nvme0n1) - r0 ))
iss=$(st p prefetch_issued); hits=$(st p prefetch_hits); served=$(st p cache_read_hits); reads=$(st p reads)
echo "# reads=$reads cache_read_hits=$served waits=$(st p cache_read_waits) prefetch_issued=$iss hits=$hits late=$(st p prefetch_late) wasted=$(st p prefetch_wasted) device_bytes=$dev_bytes"
t_check "the gate opened on the sequential stream (gate_open=$(st p gate_open))" test "$(st p gate_open)" -gt 0
t_check "prefetches were issued ($iss blocks)" test "$iss" -gt 1000
t_check "most reads were served from RAM ($served of $reads)" test $((served * 10)) -ge $((reads * 8))
t_check "device bytes read stay within 5% of the data (no duplicate reads): $dev_bytes" \
    test "$dev_bytes" -le $((48 * M + 48 * M / 20))
t_eq "48 MiB read through aether equals raw (sha1)" "$(sha $N0 1M 48 0)" "$(sha $P 1M 48 0)"
t_eq "no prefetch errors or allocation failures" "0 0" "$(st p prefetch_errors) $(st p prefetch_alloc_failures)"
# The feedback path: completions (IRQ) reach the engine (process context).
t_check "outcomes reached the learner: gate_phi moved from 0 ($(st p gate_phi)) or depth_cap from 64 ($(st p depth_cap))" \
    sh -c "[ '$(st p gate_phi)' != 0 ] || [ '$(st p depth_cap)' != 64 ]"
t_check "cache_bytes within cache_limit_bytes ($(st p cache_bytes) <= $(st p cache_limit_bytes))" \
    test "$(st p cache_bytes)" -le "$(st p cache_limit_bytes)"

t_check "remove 'p'" dmsetup remove p
# Each scenario starts on a fresh device: what one teaches the gate is not
# what the next tests. (Phase changes on one device are aether-core's tests.)
fresh() { dmsetup create p --table "0 $S0 aether $N0 2 cache_mb ${1:-32}"; }

sec "large sequential reads (1 MiB): served from RAM in 256 KiB heads, read once"
fresh
r0=$(devread nvme0n1)
dd if=$P of=/dev/null bs=1M count=48 iflag=direct 2>/dev/null
dev_bytes=$(( $(devread nvme0n1) - r0 ))
echo "# 1 MiB reads: reads=$(st p reads) cache_read_hits=$(st p cache_read_hits) waits=$(st p cache_read_waits) fallbacks=$(st p cache_wait_fallbacks) issued=$(st p prefetch_issued) late=$(st p prefetch_late) device_bytes=$dev_bytes"
t_check "1 MiB reads: some served from RAM (cache_read_hits=$(st p cache_read_hits))" test "$(st p cache_read_hits)" -gt 0
t_check "1 MiB reads: device bytes within 5% of the data ($dev_bytes)" test "$dev_bytes" -le $((48 * M + 48 * M / 20))
t_eq "1 MiB reads: 48 MiB through aether equals raw" "$(sha $N0 1M 48 0)" "$(sha $P 1M 48 0)"
dmsetup remove p

# A read that finds its prefetch in flight waits for it (parked) instead of
# reading the same blocks again (measured 17-28% more device bytes before).
# Whether a read catches a prefetch in flight depends on the device's speed, so
# here the device is slow on purpose: dm-delay holds every read 20 ms, and a
# 4 KiB reader served from RAM outruns the window read 20 ms ago.
sec "sequential reads over a slow device (dm-delay 20 ms): late reads wait, nothing read twice"
dmsetup create slow --table "0 $S0 delay $N0 0 20"
dmsetup create p --table "0 $S0 aether /dev/mapper/slow 2 cache_mb 32"
r0=$(devread nvme0n1)
dd if=$P of=/dev/null bs=4k count=4096 iflag=direct 2>/dev/null
dev_bytes=$(( $(devread nvme0n1) - r0 ))
echo "# slow 4 KiB reads: reads=$(st p reads) cache_read_hits=$(st p cache_read_hits) waits=$(st p cache_read_waits) fallbacks=$(st p cache_wait_fallbacks) late=$(st p prefetch_late) device_bytes=$dev_bytes"
t_check "slow reads: reads waited for prefetches in flight (cache_read_waits=$(st p cache_read_waits))" \
    test "$(st p cache_read_waits)" -gt 0
t_check "slow reads: device bytes within 5% of the data ($dev_bytes)" test "$dev_bytes" -le $((16 * M + 16 * M / 20))
t_eq "slow reads: 16 MiB through aether equals raw" "$(sha $N0 1M 16 0)" "$(sha $P 1M 16 0)"
dmsetup remove p; dmsetup remove slow; fresh

sec "random reader: the gate stays shut, no extra device bytes"
r0=$(devread nvme0n1)
fio --name=r --filename=$P --rw=randread --bs=4k --direct=1 --ioengine=psync --io_size=8M --randseed=3 --output=/dev/null
dev_bytes=$(( $(devread nvme0n1) - r0 ))
echo "# random: reads=$(st p reads) gate_open=$(st p gate_open) prefetch_issued=$(st p prefetch_issued) device_bytes=$dev_bytes"
t_check "random 4 KiB reads: prefetch_issued <= 2% of reads" test $(( $(st p prefetch_issued) * 50 )) -le "$(st p reads)"
t_check "random 4 KiB reads: device bytes <= 1.02 x requested ($dev_bytes)" test "$dev_bytes" -le $((8 * M + 8 * M / 50))
# 2048 reads that reach the device: 8 windows of the P99 guard (256 samples each).
t_check "demand-read latency reached the engine's P99 guard (device_p99_us=$(st p device_p99_us))" test "$(st p device_p99_us)" -gt 0

sec "strided streams are prefetched too"
dmsetup remove p; fresh
fio --name=st --filename=$P --rw=read:28k --bs=4k --direct=1 --ioengine=psync --size=32M --output=/dev/null
echo "# stride: gate_open=$(st p gate_open) phi=$(st p gate_phi) eps=$(st p gate_epsilon_eff) reads=$(st p reads) cache_read_hits=$(st p cache_read_hits) issued=$(st p prefetch_issued) wasted=$(st p prefetch_wasted)"
t_check "32 KiB-strided reads: most served from RAM" test $(( $(st p cache_read_hits) * 10 )) -ge $(( $(st p reads) * 7 ))

# ================================================================ coherence
sec "coherence: writes are never hidden by the cache"
dmsetup remove p; fresh
echo "# before coherence: phi=$(st p gate_phi) eps=$(st p gate_epsilon_eff) depth_cap=$(st p depth_cap)"
# A stream reads ahead of a write: the next read sees the write.
dd if=$P of=/dev/null bs=4k count=512 skip=$((60 * 256)) iflag=direct 2>/dev/null
ahead=$(( (60 * 256 + 520) * 4096 ))
printf 'WRITTEN-AHEAD-%08d' 1 | dd of=$P bs=4096 seek=$ahead oflag=seek_bytes,direct conv=sync 2>/dev/null
got=$(dd if=$P bs=4096 count=1 skip=$ahead iflag=skip_bytes,direct 2>/dev/null | head -c 22)
t_eq "a write just ahead of a running stream is seen by the next read" "WRITTEN-AHEAD-00000001" "$got"
t_check "the write invalidated prefetched blocks (cache_invalidated=$(st p cache_invalidated))" test "$(st p cache_invalidated)" -gt 0
# Racing readers and writers with verify, then every block equals raw.
FV="--filename=$P --direct=1 --ioengine=io_uring --offset=64M --size=16M --randseed=11"
t_check "fio: 2 sequential readers + 1 random verifying writer (crc32c), QD1-32" fio \
    --name=w $FV --rw=randwrite --bs=4k --iodepth=32 --verify=crc32c --do_verify=1 --number_ios=20000 \
    --name=r1 $FV --rw=read --bs=4k --iodepth=1 --loops=20 --time_based --runtime=8 \
    --name=r2 $FV --rw=read --bs=16k --iodepth=8 --loops=20 --time_based --runtime=8 \
    --output=/tmp/fio.race
t_eq "after racing readers and writers, 16 MiB through aether equals raw" "$(sha $N0 1M 16 64)" "$(sha $P 1M 16 64)"
echo "# race: stale_dropped=$(st p prefetch_stale_dropped) invalidated=$(st p cache_invalidated) hits=$(st p prefetch_hits)"
t_check "fio verify of mixed readers and writers at QD1-32 (crc32c): 0 mismatches" fio \
    --name=mix $FV --rw=randrw --rwmixread=70 --bsrange=4k-64k --iodepth=16 --verify=crc32c --verify_fatal=1 \
    --number_ios=30000 --output=/tmp/fio.mix

# ================================================================ memory
sec "memory: the budget, a shrink at run time and the shrinker"
dmsetup remove p; fresh
dd if=$P of=/dev/null bs=4k count=4096 iflag=direct 2>/dev/null
c1=$(st p cache_bytes)
t_check "cache holds data after a sequential read ($c1 bytes)" test "$c1" -gt 0
echo 2 > /proc/sys/vm/drop_caches
c2=$(st p cache_bytes)
t_check "drop_caches shrinks cache_bytes ($c1 -> $c2)" test "$c2" -lt "$c1"
dd if=$P of=/dev/null bs=4k count=4096 iflag=direct 2>/dev/null
t_check "message set cache_mb 1" msg p set cache_mb 1
t_check "cache_bytes at most 1 MiB at once ($(st p cache_bytes))" test "$(st p cache_bytes)" -le $M
t_eq "cache_limit_bytes follows cache_mb" $M "$(st p cache_limit_bytes)"
big=$(( $(awk '/MemTotal/ { print $2 }' /proc/meminfo) / 1024 ))
if out=$(msg p set cache_mb $big 2>&1); then t_fail "cache_mb of all RAM ($big) is refused"
else t_ok "cache_mb of all RAM ($big MiB) refused: $(echo "$out" | head -1)"; fi
t_check "...with a dmesg line naming the problem" sh -c 'dmesg | tail -3 | grep -q "more than half of RAM"'
t_eq "...and nothing changed" 1 "$(msg p get cache_mb)"
t_check "debugfs cache_mb 8" sh -c "echo 8 > $DBG/p/cache_mb"
t_eq "debugfs cache_mb reads back" 8 "$(cat $DBG/p/cache_mb)"
t_check "remove 'p'" dmsetup remove p

# ================================================================ partial table
sec "a table mapping 64 MiB of the namespace at an offset"
t_check "create 'part' (64 MiB at table sector 8, after 8 sectors of $N1)" sh -c "printf '0 8 linear $N1 0\n8 131072 aether $N0\n' | dmsetup create part"
TR=/sys/kernel/debug/tracing
echo > $TR/trace
echo 1 > $TR/events/block/block_rq_issue/enable
dd if=/dev/mapper/part of=/tmp/part bs=1M iflag=direct 2>/dev/null
echo 0 > $TR/events/block/block_rq_issue/enable
# Highest sector the namespace was asked for: "block_rq_issue: 259,0 R 4096 () SECTOR + N [comm]".
MAJMIN=$(tr ':' ',' < /sys/block/nvme0n1/dev)
past=$(awk -v d="$MAJMIN" '$0 ~ "block_rq_issue: " d " R" { for (i = 1; i < NF; i++) if ($i == "+") { e = $(i-1) + $(i+1); if (e > m) m = e } } END { print m + 0 }' $TR/trace)
t_eq "reads through the offset table land at namespace sector 0 (sha1 of 64 MiB)" \
    "$(sha $N0 1M 64 0)" "$(tail -c +4097 /tmp/part | sha1sum | cut -d' ' -f1)"
t_check "reads reached the end of the extent (highest sector read: $past)" test "$past" -ge 131000
t_check "nothing was read past the table's 64 MiB extent (131072 sectors)" test "$past" -le 131072
t_check "an empty flush through the offset table succeeds" sh -c "sync; dd if=/dev/zero of=/dev/mapper/part bs=4096 count=1 seek=100 oflag=direct conv=fsync 2>/dev/null"
rm -f /tmp/part
t_check "remove 'part'" dmsetup remove part

# ================================================================ faults
sec "faults below aether: dm-flakey and dm-error"
t_check "create 'fl' (dm-flakey on $N1: up 2 s, down 2 s, errors when down)" \
    dmsetup create fl --table "0 $(cat /sys/block/nvme1n1/size) flakey $N1 0 2 2"
t_check "create 'pf' (aether over fl)" dmsetup create pf --table "0 $(cat /sys/block/nvme1n1/size) aether /dev/mapper/fl"
fio --name=f --filename=/dev/mapper/pf --rw=read --bs=4k --direct=1 --ioengine=psync --time_based --runtime=6 \
    --continue_on_error=read --output=/tmp/fio.flaky >/dev/null 2>&1
echo "# flaky: reads=$(st pf reads) read_errors=$(st pf read_errors) prefetch_errors=$(st pf prefetch_errors) hits=$(st pf prefetch_hits)"
t_check "demand errors reach the caller while the device is down (read_errors=$(st pf read_errors))" test "$(st pf read_errors)" -gt 0
t_check "prefetches over a device without nowait support are issued (prefetch_issued=$(st pf prefetch_issued))" test "$(st pf prefetch_issued)" -gt 0
t_check "remove 'pf' and 'fl' (nothing hangs)" sh -c 'dmsetup remove pf && dmsetup remove fl'
t_check "create 'er' (dm-error) and aether over it" sh -c "dmsetup create er --table '0 65536 error' && dmsetup create pe --table '0 65536 aether /dev/mapper/er'"
t_refuse "a read through aether over dm-error fails" dd if=/dev/mapper/pe of=/dev/null bs=4k count=1 iflag=direct
t_refuse "a write through aether over dm-error fails" dd if=/dev/zero of=/dev/mapper/pe bs=4k count=1 oflag=direct
t_check "remove 'pe' and 'er'" sh -c 'dmsetup remove pe && dmsetup remove er'

# ================================================================ lifetime
sec "lifetime: suspend, resume, reload and remove under fio load, 20 cycles"
t_check "create 'l'" dmsetup create l --table "0 $S0 aether $N0"
fio --name=l --filename=/dev/mapper/l --rw=read --bs=4k --direct=1 --ioengine=io_uring --iodepth=8 --time_based --runtime=60 \
    --output=/dev/null >/dev/null 2>&1 &
FIO=$!
sleep 1
bad=0
for i in $(seq 1 20); do
    dmsetup suspend l || bad=$((bad + 1))
    [ "$(st l cache_bytes)" = 0 ] || { bad=$((bad + 1)); echo "# cycle $i: cache not empty while suspended"; }
    dmsetup resume l || bad=$((bad + 1))
    printf '0 %s aether %s 2 cache_mb %s\n' "$S0" $N0 $((8 + i)) | dmsetup reload l || bad=$((bad + 1))
    dmsetup resume l || bad=$((bad + 1))
done
t_eq "20 suspend/resume/reload cycles under fio load" 0 "$bad"
t_eq "the last reload's table is live" "$(cat /sys/block/nvme0n1/dev) 2 cache_mb 28" "$(dmsetup table l | cut -d' ' -f4-)"
kill $FIO 2>/dev/null; wait $FIO 2>/dev/null
t_check "remove 'l' after load" dmsetup remove l
t_check "rmmod aether" rmmod aether
t_dmesg_clean "prefetch tests"
t_done
