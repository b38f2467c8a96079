#!/bin/sh
# aether-part integration tests, run INSIDE the QEMU guest (busybox ash).
#
# Needs: q35 with -device intel-iommu,intremap=on,caching-mode=on, guest cmdline
# intel_iommu=on, two emulated NVMe controllers with serials aether0 and aether1,
# and the aether-part binary ($AETHER_PART, default: aether-part on PATH).
# From the host:
#   scripts/qemu-run.sh --iommu --nvme 2 --bin "$CARGO_TARGET_DIR/debug/aether-part" \
#       scripts/guest/part-tests.sh
#
# Prints TAP ("ok N - ...", "not ok N - ...", "1..N"); exits non-zero on any failure.
# Every test leaves the devices as it found them, so a failure does not cascade.

AP=${AETHER_PART:-aether-part}
N=0
FAILED=0
OUT=/tmp/part-out
ERR=/tmp/part-err

ok()   { N=$((N + 1)); echo "ok $N - $*"; }
nok()  { N=$((N + 1)); FAILED=$((FAILED + 1)); echo "not ok $N - $*"; }
skip() { N=$((N + 1)); echo "ok $N - # SKIP $*"; }
diag() { sed -n '1,12s/^/#   /p' "$@"; }

# ap ARGS...: run aether-part, stdout in $OUT, stderr in $ERR, status in $RC.
ap() { "$AP" "$@" >"$OUT" 2>"$ERR"; RC=$?; }

# expect RC "description": check the last ap status; show output on failure.
expect() {
    if [ "$RC" = "$1" ]; then ok "$2"; else nok "$2 (exit $RC, wanted $1)"; diag "$ERR"; diag "$OUT"; fi
}
# has FILE PATTERN "description"
has() {
    if grep -q -- "$2" "$1"; then ok "$3"; else nok "$3 (no '$2')"; diag "$1"; fi
}
eq() {
    if [ "$2" = "$3" ]; then ok "$1"; else nok "$1 (expected '$2', got '$3')"; fi
}

# PCI address of the NVMe controller with serial $1.
bdf_of_serial() {
    for c in /sys/class/nvme/nvme*; do
        [ -r "$c/serial" ] || continue
        s=$(sed 's/ *$//' "$c/serial")
        if [ "$s" = "$1" ]; then basename "$(readlink -f "$c/device")"; return 0; fi
    done
    return 1
}

driver_of() { d=/sys/bus/pci/devices/$1/driver; if [ -e "$d" ]; then basename "$(readlink -f "$d")"; else echo none; fi; }

# First namespace block device (head name) of the controller at PCI address $1.
ns_of() {
    for c in /sys/bus/pci/devices/$1/nvme/nvme*; do
        [ -d "$c" ] || continue
        for e in "$c"/nvme*n*; do
            [ -e "$e" ] || continue
            n=$(basename "$e")
            # multipath path device nvmeXcYnZ -> head nvmeXnZ
            h=$(echo "$n" | sed 's/^nvme\([0-9]*\)c[0-9]*n\([0-9]*\)$/nvme\1n\2/')
            if [ -e "/sys/block/$h" ]; then echo "$h"; return 0; fi
        done
    done
    return 1
}

wait_ns() { i=0; while [ $i -lt 50 ]; do ns=$(ns_of "$1") && [ -b "/dev/$ns" ] && { echo "$ns"; return 0; }; sleep 0.2; i=$((i + 1)); done; return 1; }

echo "# aether-part guest tests: $(uname -r), cmdline: $(cat /proc/cmdline)"
command -v "$AP" >/dev/null 2>&1 || { echo "not ok 1 - aether-part binary '$AP' not found"; echo "1..1"; exit 1; }
grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts || mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null
mkdir -p /mnt/aether-part

B0=$(bdf_of_serial aether0)
B1=$(bdf_of_serial aether1)
if [ -z "$B0" ] || [ -z "$B1" ]; then
    nok "found NVMe controllers aether0 ($B0) and aether1 ($B1)"
    echo "1..$N"; exit 1
fi
ok "found NVMe aether0 at $B0 and aether1 at $B1"
NS0=$(wait_ns "$B0"); NS1=$(wait_ns "$B1")
echo "# namespaces: $B0 -> $NS0, $B1 -> $NS1"

# --- status
ap status
expect 0 "status exits 0"
has "$OUT" "IOMMU: active" "status: IOMMU is active (intel-iommu)"
has "$OUT" "^$B0 .*nvme" "status lists $B0 on nvme"
has "$OUT" "block $NS1" "status shows namespace $NS1"
ap status --json
expect 0 "status --json exits 0"
has "$OUT" '"command": "status"' "status --json is a JSON object with command"
has "$OUT" '"cpu_isolation"' "status --json reports cpu isolation"

# --- bad input changes nothing
ap bind 00:04
expect 2 "bind with a malformed BDF exits 2"
has "$ERR" "malformed PCI address '00:04'" "malformed BDF message names the input"
ap bind 0000:00:1e.7
expect 2 "bind of an unknown device exits 2"
has "$ERR" "unknown PCI device 0000:00:1e.7" "unknown device message names it"
ap cpus isolate 64
expect 2 "cpus isolate of an out-of-range CPU exits 2"
has "$ERR" "out of range" "out-of-range CPU message"
eq "bad input left $B1 on nvme" nvme "$(driver_of "$B1")"

# --- plan / bind / handshake / restore round trip on aether1
ap plan "$B1"
expect 0 "plan $B1 (clean namespace) would bind"
has "$OUT" "would: write 'vfio-pci' to" "plan lists the driver_override step"
eq "plan changed nothing" nvme "$(driver_of "$B1")"
ap bind "$B1"
expect 0 "bind $B1"
eq "$B1 is on vfio-pci" vfio-pci "$(driver_of "$B1")"
if [ -e "/sys/block/$NS1" ]; then nok "$NS1 is gone while on vfio-pci"; else ok "$NS1 is gone while on vfio-pci"; fi
has /run/aether-part/state.json '"previous_driver": "nvme"' "state file records the previous driver"
ap handshake "$B1"
expect 0 "handshake $B1: VFIO open, BAR0, DMA, Identify"
has "$OUT" "serial 'aether1'" "Identify returned serial aether1"
diag "$OUT"
ap handshake --json "$B1"
has "$OUT" '"identify_status": 0' "handshake --json reports Identify status 0"
ap restore "$B1"
expect 0 "restore $B1"
eq "$B1 back on nvme" nvme "$(driver_of "$B1")"
if NS1=$(wait_ns "$B1") && dd if="/dev/$NS1" of=/dev/null bs=4096 count=1 2>/dev/null; then
    ok "block device /dev/$NS1 is back and readable"
else
    nok "block device of $B1 is back and readable"
fi

# --- both devices in one bind, restore all
ap bind --json "$B0" "$B1"
expect 0 "bind two devices at once"
eq "both on vfio-pci" "vfio-pci vfio-pci" "$(driver_of "$B0") $(driver_of "$B1")"
ap restore
expect 0 "restore with no argument restores every recorded device"
NS0=$(wait_ns "$B0"); NS1=$(wait_ns "$B1")
eq "both back on nvme with block devices" "nvme nvme yes" "$(driver_of "$B0") $(driver_of "$B1") $([ -b "/dev/$NS0" ] && [ -b "/dev/$NS1" ] && echo yes)"
ap handshake "$B0"
expect 1 "handshake of a device still on nvme is refused"

# --- refused: filesystem mounted on the NVMe
MKFS=""
for m in mkfs.ext2 mke2fs; do command -v $m >/dev/null 2>&1 && { MKFS=$m; break; }; done
if [ -n "$MKFS" ] && $MKFS "/dev/$NS0" >/dev/null 2>&1; then
    if mount -t ext4 "/dev/$NS0" /mnt/aether-part 2>/dev/null || mount -t ext2 "/dev/$NS0" /mnt/aether-part 2>/dev/null; then
        ap bind "$B0"
        expect 1 "bind refused while /dev/$NS0 is mounted"
        has "$ERR" "is mounted on /mnt/aether-part" "refusal names the mount point"
        eq "$B0 still on nvme after the refusal" nvme "$(driver_of "$B0")"
        umount /mnt/aether-part
    else
        skip "mount of ext2 failed (kernel lacks EXT4_USE_FOR_EXT2?)"
    fi
    ap bind "$B0"
    expect 1 "bind refused for a filesystem signature without --force-data"
    has "$ERR" "ext2/3/4 filesystem" "refusal names the signature"
    ap plan --force-data "$B0"
    expect 0 "plan --force-data accepts the unmounted filesystem"
    dd if=/dev/zero of="/dev/$NS0" bs=4096 count=32 2>/dev/null; sync
else
    skip "no mkfs.ext2/mke2fs in the guest"
fi

# --- refused: NVMe under a device-mapper device
if command -v dmsetup >/dev/null 2>&1; then
    if dmsetup create aetherpart --table "0 8 linear /dev/$NS1 0" >/dev/null 2>&1; then
        ap bind "$B1"
        expect 1 "bind refused while $NS1 is under a dm device"
        has "$ERR" "held by dm-" "refusal names the dm holder"
        has "$ERR" "device-mapper 'aetherpart'" "refusal names the dm table"
        eq "$B1 still on nvme" nvme "$(driver_of "$B1")"
        dmsetup remove aetherpart
        ap plan "$B1"
        expect 0 "plan is clean again after dmsetup remove"
    else
        nok "dmsetup create on /dev/$NS1"
    fi
else
    skip "no dmsetup in the guest"
fi

# --- refused: device in a shared IOMMU group (q35 ICH9 00:1f.*)
SG=""
for d in /sys/bus/pci/devices/*; do
    g=$(readlink -f "$d/iommu_group" 2>/dev/null) || continue
    [ "$(ls "$g/devices" | wc -l)" -gt 1 ] || continue
    SG=$(basename "$d"); case $SG in *:1f.2) break ;; esac
done
if [ -n "$SG" ]; then
    before=$(driver_of "$SG")
    ap bind "$SG"
    expect 1 "bind refused for $SG in a shared IOMMU group"
    has "$ERR" "is shared with" "refusal lists the other group members"
    diag "$ERR"
    eq "$SG driver unchanged" "$before" "$(driver_of "$SG")"
else
    nok "found a shared IOMMU group (expected q35 00:1f.*)"
fi

# --- cpus isolate / release
NCPU=$(grep -c ^processor /proc/cpuinfo)
if [ "$NCPU" -ge 2 ] && [ -r /sys/fs/cgroup/cgroup.controllers ]; then
    LAST=$((NCPU - 1))
    snap() { for f in /proc/irq/*/smp_affinity_list; do echo "$f $(cat "$f")"; done; }
    snap > /tmp/irq-before
    ap cpus isolate "$LAST"
    expect 0 "cpus isolate $LAST"
    eq "cgroup partition is isolated" isolated "$(cat /sys/fs/cgroup/aether-part.isolated/cpuset.cpus.partition 2>/dev/null)"
    has "$ERR" "nohz_full does not cover" "warns that nohz_full is missing from the cmdline"
    grep -q "stays on" "$OUT" && echo "# kernel-managed IRQs reported: $(grep -c 'stays on' "$OUT")"
    # Every IRQ still allowed on the isolated CPU must be one the tool reported as stuck.
    still=0
    for f in /proc/irq/*/smp_affinity_list; do
        case ",$(cat "$f")," in *",$LAST,"*|*"-$LAST,"*) still=$((still + 1)) ;; esac
    done
    eq "IRQs left on CPU $LAST are exactly the reported kernel-managed ones" "$(grep -c 'stays on' "$OUT")" "$still"
    ap cpus isolate "$LAST"
    expect 2 "a second isolate is refused"
    ap cpus release
    expect 0 "cpus release"
    if [ -e /sys/fs/cgroup/aether-part.isolated ]; then nok "release removed the cgroup"; else ok "release removed the cgroup"; fi
    snap > /tmp/irq-after
    if cmp -s /tmp/irq-before /tmp/irq-after; then ok "release restored every IRQ affinity"; else nok "release restored every IRQ affinity"; diff /tmp/irq-before /tmp/irq-after | diag; fi
else
    skip "cpus isolate needs 2 CPUs and cgroup v2"
fi

# --- hugepages
if [ -d /sys/kernel/mm/hugepages ]; then
    ap hugepages 8
    expect 0 "hugepages 8"
    eq "HugePages_Total is 8" 8 "$(awk '/^HugePages_Total/ {print $2}' /proc/meminfo)"
    if [ -d /sys/devices/system/node/node0/hugepages ]; then
        ap hugepages 4 --node 0
        expect 0 "hugepages 4 --node 0"
    else
        ap hugepages 4 --node 0
        expect 2 "hugepages --node 0 on a kernel without NUMA nodes exits 2"
        has "$ERR" "unknown NUMA node 0" "message names the node"
    fi
    ap hugepages 4 --node 7
    expect 2 "hugepages on an unknown node exits 2"
    ap hugepages --json 1000000
    expect 3 "an impossible reservation exits 3 (shortfall)"
    has "$OUT" '"shortfall": ' "shortfall is reported"
    ap hugepages 0
    expect 0 "hugepages 0 releases them"
else
    ap hugepages 8
    expect 2 "hugepages without hugetlb support exits 2"
    has "$ERR" "no hugetlb support" "message names the missing kernel support"
fi

# --- bench: polled user-space reads over VFIO, checked against kernel-read data
NS1=$(wait_ns "$B1")
NSBYTES=$(( $(cat /sys/block/$NS1/size) * 512 ))
ap bench "$B1"
expect 1 "bench of a device still on nvme is refused"
has "$ERR" "rather than vfio-pci; run 'aether-part bind $B1' first" "refusal says to bind first"
"$AP" pattern 8M > /tmp/pat && dd if=/tmp/pat of="/dev/$NS1" bs=1M conv=fsync 2>/dev/null
echo 3 > /proc/sys/vm/drop_caches
dd if="/dev/$NS1" of=/tmp/ref bs=1M count=8 2>/dev/null
if cmp -s /tmp/pat /tmp/ref; then ok "kernel wrote the 8 MiB pattern to $NS1 and read it back"; else nok "kernel read-back of the pattern on $NS1"; fi
cp /tmp/ref /tmp/bad && printf 'X' | dd of=/tmp/bad bs=1 seek=20480 conv=notrunc 2>/dev/null
ap bind "$B1"
expect 0 "bind $B1 for bench"
# Error paths first: each must tear down so that the next run works.
ap bench "$B1" --unchecked-span --offset "$NSBYTES" --span 4k
expect 1 "a read past the namespace end fails"
has "$ERR" "SCT 0x0 SC 0x80 (LBA Out of Range)" "the device status is reported as SCT/SC"
ap bench "$B1" --nsid 1000
expect 1 "bench of a namespace id beyond NN fails"
has "$ERR" "Identify Namespace 1000 failed: SCT 0x0 SC 0x0b" "Identify Namespace status is reported"
ap bench "$B1" --bs 2M
expect 1 "a transfer above MDTS is refused by bench"
has "$ERR" "exceeds the controller's transfer limit" "message names MDTS"
"$AP" bench "$B1" --qd 4 --seconds 60 >"$OUT" 2>"$ERR" &
BP=$!
sleep 3
kill -TERM $BP
wait $BP; RC=$?
expect 130 "bench stops on SIGTERM with exit 130"
has "$OUT" "teardown: Delete I/O SQ 1: done" "interrupted bench deleted its SQ"
has "$OUT" "teardown: DMA buffer unmapped" "interrupted bench unmapped DMA"
# Reads checked against the kernel's copy: every block of the 8 MiB once, then QD32 random.
ap bench "$B1" --json --pattern seq --qd 1 --bs 4k --span 8M --ios 2048 --seconds 120 --verify /tmp/ref
expect 0 "bench seq 4k QD1 over 8 MiB with --verify against kernel-read data"
has "$OUT" '"verified_ios": 2048' "all 2048 reads were verified"
has "$OUT" '"mismatches": 0' "no mismatch against kernel-read data"
ap bench "$B1" --json --pattern random --qd 32 --bs 128k --span 8M --seconds 1 --verify-crc
expect 0 "bench random 128k (PRP lists) QD32 with --verify-crc"
has "$OUT" '"mismatches": 0' "every 128 KiB read holds the right pattern blocks"
has "$OUT" '"p999_us": ' "JSON has p99.9 latency"
diag "$ERR"
ap bench "$B1" --pattern stride:3 --qd 32 --bs 4k --span 8M --seconds 1 --verify /tmp/ref
expect 0 "bench stride:3 4k QD32 with --verify"
has "$OUT" " IOPS, .* MB/s, latency us: mean .* p50 .* p99 .* p99.9 " "text output has IOPS, MB/s and percentiles"
grep -E 'IOPS|verify' "$OUT" | diag
# --prefetch: aether-core's engine reads ahead into a user-space cache; data must still match.
ap bench "$B1" --json --prefetch --pattern seq --bs 4k --span 8M --ios 2048 --seconds 120 --verify /tmp/ref
expect 0 "bench --prefetch seq over 8 MiB with --verify"
has "$OUT" '"mismatches": 0' "prefetched data matches kernel-read data"
has "$OUT" '"hits": [1-9]' "sequential reads were served from prefetched extents"
grep -E '"(hits|late|misses|extents_issued|wasted|engine_gate_fired)"' "$OUT" | tr -d ' \n' | sed 's/^/# /'; echo
ap bench "$B1" --prefetch --pattern stride:4 --bs 4k --span 8M --seconds 1 --verify-crc
expect 0 "bench --prefetch stride:4 with --verify-crc"
grep prefetch "$OUT" | diag
ap bench "$B1" --pattern seq --ios 16 --verify /tmp/bad
expect 1 "a corrupted reference is caught"
has "$ERR" "byte 20480 differs from the --verify file" "the first differing byte is named"
ap bench "$B1" --offset 8M --span 1M --ios 4 --verify-crc
expect 1 "--verify-crc fails where the pattern was never written"
has "$ERR" "CRC mismatch" "message says the CRC does not match"
ap restore "$B1"
expect 0 "restore $B1 after bench, its error paths and the interruption"
if NS1=$(wait_ns "$B1") && dd if="/dev/$NS1" bs=1M count=8 2>/dev/null | cmp -s - /tmp/pat; then
    ok "the pattern on $NS1 is intact and readable by the kernel again"
else
    nok "the pattern on $B1 is intact and readable by the kernel again"
fi
rm -f /tmp/pat /tmp/ref /tmp/bad

# --- everything is back
ap status --json
has "$OUT" '"state": null' "no devices or CPUs left recorded"
eq "both controllers on nvme at the end" "nvme nvme" "$(driver_of "$B0") $(driver_of "$B1")"

echo "1..$N"
[ "$FAILED" = 0 ]
