#!/usr/bin/env bash
# Boots aether's cached test kernel under QEMU (TCG) with emulated NVMe disks and
# runs one guest job script; the job's exit status becomes ours.
#
#   scripts/qemu-run.sh [options] JOB.sh [ARGS...]
#     --nvme N          emulated NVMe controllers, one namespace each (default 1)
#     --disk-size SIZE  size of each NVMe namespace image (default 256M)
#     --slow-nvme MS    one more NVMe controller after the --nvme ones (serial
#                       "aetherslow"), backed by QEMU's null-co driver: reads
#                       return zeroes, writes are dropped, and every request
#                       completes MS milliseconds after it was submitted (for
#                       request timeouts; see scripts/guest/timeout-tests.sh;
#                       with MS 0, the null namespace of make bench-cost)
#     --icount          count instructions (-icount shift=0): guest time advances
#                       one nanosecond per guest instruction, on one host
#                       thread, so timings measure code paths, not host load
#                       (see Documentation/testing.rst, "Instruction cost")
#     --iommu           add intel-iommu (intremap, caching-mode) + intel_iommu=on
#                       (and no_timer_check)
#     --bin PATH        host binary to run in the guest (copied with its libraries
#                       to /aether/bin); repeatable
#     --file PATH       extra file copied to /aether/ in the guest; repeatable
#     --timeout SEC     kill a hung guest after SEC seconds (default 600)
#     --smp N --mem MB  guest CPUs (default 2) and memory (default 2048)
#     --append ARGS     extra kernel command line
#     --log FILE        also keep the console log in FILE
#     --quiet           do not echo the console (the log still has it)
#
# The guest is a busybox initramfs (see Documentation/testing.rst for why not
# virtme-ng). It holds busybox, dmsetup and fio (cached, keyed on the binaries),
# plus a per-run archive with the job, aether.ko and aether_test.ko (if built), scripts/guest/*
# and the --bin/--file extras. Exit status: the job's; 124 when the guest hung
# and was killed; 125 when it died without reporting (panic, oops=panic).
#
# AETHER_KERNEL_FLAVOR=debug boots the debug kernel (KASAN, lockdep, kmemleak)
# with panic_on_warn and ships build/module-debug/aether.ko as /aether/aether.ko;
# AETHER_MODULE=PATH ships that .ko instead.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

nvme=1 slow_ms="" disk_size=256M iommu=0 icount=0 timeout_s=600 smp=2 mem=2048 append="" logf="" quiet=0
bins=() files=()
while [ $# -gt 0 ]; do
    case $1 in
        --nvme) nvme=$2; shift 2 ;;
        --disk-size) disk_size=$2; shift 2 ;;
        --slow-nvme) slow_ms=$2; shift 2 ;;
        --iommu) iommu=1; shift ;;
        --icount) icount=1; shift ;;
        --bin) bins+=("$2"); shift 2 ;;
        --file) files+=("$2"); shift 2 ;;
        --timeout) timeout_s=$2; shift 2 ;;
        --smp) smp=$2; shift 2 ;;
        --mem) mem=$2; shift 2 ;;
        --append) append="$append $2"; shift 2 ;;
        --log) logf=$2; shift 2 ;;
        --quiet) quiet=1; shift ;;
        --) shift; break ;;
        -*) die "qemu-run: unknown option $1" ;;
        *) break ;;
    esac
done
[ $# -ge 1 ] || die "usage: qemu-run.sh [options] JOB.sh [ARGS...]"
job=$1; shift
[ -f "$job" ] || die "qemu-run: no such job script: $job"
[[ $nvme =~ ^[0-9]+$ ]] || die "qemu-run: --nvme takes a number"
[ -z "$slow_ms" ] || [[ $slow_ms =~ ^[0-9]+$ ]] || die "qemu-run: --slow-nvme takes milliseconds"

flavor=${AETHER_KERNEL_FLAVOR:-default}
kernel=${AETHER_KERNEL:-$("$AETHER_ROOT/scripts/build-kernel.sh" --image)}
if [ "$flavor" = default ]; then ko=${AETHER_MODULE:-$AETHER_ROOT/aether.ko}
else ko=${AETHER_MODULE:-$AETHER_ROOT/build/module-$flavor/aether.ko}; fi
[ -f "$kernel" ] || die "qemu-run: no kernel image at $kernel"

# Copies a host binary and the libraries it links into staging dir $1.
stage_bin() {
    local root=$1 bin=$2 dest=${3:-}
    bin=$(command -v "$bin") || die "qemu-run: binary not found: $2"
    install -D -m755 "$bin" "$root${dest:-$bin}"
    ldd "$bin" 2>/dev/null | grep -oE '/[^ ]+' | while read -r lib; do
        [ -e "$root$lib" ] || install -D -m755 "$(readlink -f "$lib")" "$root$lib"
    done
}

# Base archive: busybox userland + dmsetup + fio; rebuilt only when they change.
base_tools=(/bin/busybox "$(command -v dmsetup)" "$(command -v fio)")
base_key=$( { for b in "${base_tools[@]}"; do stat -c '%n %s %Y' "$(readlink -f "$b")"; done
              cat "$AETHER_ROOT/scripts/guest/init.sh"; } | sha256sum | cut -c1-12)
base=$AETHER_CACHE/initramfs/base-$base_key.cpio
if [ ! -f "$base" ]; then
    log "building guest initramfs base (busybox, dmsetup, fio)"
    st=$(mktemp -d); trap 'rm -rf "$st"' EXIT
    mkdir -p "$st"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,root,etc,aether/bin}
    cp /bin/busybox "$st/bin/busybox"
    for app in $(/bin/busybox --list); do
        [ -e "$st/bin/$app" ] || ln -s busybox "$st/bin/$app"
    done
    for b in "${base_tools[@]:1}"; do stage_bin "$st" "$b"; done
    install -m755 "$AETHER_ROOT/scripts/guest/init.sh" "$st/init"
    mkdir -p "$(dirname "$base")"
    (cd "$st" && find . | cpio -o -H newc --quiet) > "$base.tmp" && mv "$base.tmp" "$base"
    rm -rf "$st"; trap - EXIT
    ls -1t "$AETHER_CACHE"/initramfs/base-*.cpio | tail -n +3 | xargs -r rm -f
fi

run=$(mktemp -d "${TMPDIR:-/tmp}/aether-run.XXXXXX")
trap 'rm -rf "$run"' EXIT
st=$run/stage
mkdir -p "$st/aether/bin" "$st/aether/guest"
install -m755 "$job" "$st/aether/job.sh"
if [ $# -gt 0 ]; then printf '%s\n' "$@" > "$st/aether/job.args"; fi
cp "$AETHER_ROOT"/scripts/guest/*.sh "$st/aether/guest/"
for f in "$AETHER_ROOT"/scripts/guest/*.awk; do [ ! -e "$f" ] || cp "$f" "$st/aether/guest/"; done
[ -f "$ko" ] && cp "$ko" "$st/aether/aether.ko"
# The KUnit module built with it, unless a single module was asked for.
[ -n "${AETHER_MODULE:-}" ] || [ ! -f "$(dirname "$ko")/aether_test.ko" ] || cp "$(dirname "$ko")/aether_test.ko" "$st/aether/"
for b in "${bins[@]}"; do stage_bin "$st" "$b" "/aether/bin/$(basename "$b")"; done
for f in "${files[@]}"; do cp -r "$f" "$st/aether/"; done
(cd "$st" && find . | cpio -o -H newc --quiet) > "$run/run.cpio"
cat "$base" "$run/run.cpio" > "$run/initrd.cpio"

drives=()
for i in $(seq 0 $((nvme - 1))); do
    truncate -s "$disk_size" "$run/nvme$i.img"
    drives+=(-drive "file=$run/nvme$i.img,if=none,id=nvm$i,format=raw,cache=none,aio=native"
             -device "nvme,serial=aether$i,drive=nvm$i")
done
if [ -n "$slow_ms" ]; then
    # null-co: no image; each request sleeps latency-ns in QEMU's block layer, then completes
    # (reads as zeroes). Jobs find its namespace by the serial, not by a name.
    drives+=(-drive "driver=null-co,size=$disk_size,latency-ns=$((slow_ms * 1000000)),read-zeroes=on,if=none,id=slow"
             -device "nvme,serial=aetherslow,drive=slow")
fi
machine=(-machine q35,accel=tcg -cpu max)
cmdline="console=ttyS0 quiet loglevel=4 panic=-1 oops=panic kunit.filter_glob=aether* kmemleak=on"
# Debug flavor: any WARN (KASAN reports, DEBUG_OBJECTS, atomic-sleep) ends the run. no5lvl: with
# -cpu max the guest gets LA57, and 6.12's generic KASAN then reports a false "wild-memory-access"
# when an interrupt lands inside identify_cpu() (it clears boot_cpu_data's LA57 bit while re-reading
# CPUID, so KASAN_SHADOW_START briefly follows 4-level paging); seen at boot, before aether loads.
[ "$flavor" = default ] || cmdline="$cmdline panic_on_warn=1 no5lvl"
if [ "$iommu" = 1 ]; then
    machine=(-machine q35,accel=tcg,kernel-irqchip=split -cpu max -device intel-iommu,intremap=on,caching-mode=on)
    # no_timer_check: under a loaded TCG host the IO-APIC timer check through the
    # interrupt-remapped IO-APIC can time out and panic the boot.
    cmdline="$cmdline intel_iommu=on no_timer_check"
fi

# Single-threaded TCG (implied by -icount): every vCPU's instructions advance
# one virtual clock, so fio's rates are instructions per I/O in disguise.
[ "$icount" = 0 ] || machine+=(-icount shift=0)

logf=${logf:-$run/console.log}
set +e
timeout -k 5 "$timeout_s" qemu-system-x86_64 "${machine[@]}" -smp "$smp" -m "$mem" \
    -display none -monitor none -serial stdio -no-reboot \
    -kernel "$kernel" -initrd "$run/initrd.cpio" -append "$cmdline$append" \
    "${drives[@]}" </dev/null 2>&1 | stdbuf -oL tr -d '\r' | tee "$logf" | { if [ $quiet = 1 ]; then cat >/dev/null; else cat; fi; }
qrc=${PIPESTATUS[0]}
set -e

rc=$(sed -n 's/^@@AETHER-EXIT=\([0-9]*\)@@$/\1/p' "$logf" | tail -1)
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    log "guest hung: killed after ${timeout_s}s (console log: $logf)"; exit 124
fi
if [ -z "$rc" ]; then
    log "guest died without reporting (qemu exit $qrc); last console lines:"
    tail -15 "$logf" >&2; exit 125
fi
exit "$rc"
