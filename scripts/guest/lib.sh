# Helpers for guest test scripts (busybox ash). Results are TAP lines that
# scripts/test.sh counts: "ok N - what" / "not ok N - what".
T_N=0
T_FAILED=0

# The kernel name (dm-N) of mapped device $1. Ask dmsetup: /dev/mapper/NAME is a device node
# under busybox mdev, not a link to dm-N.
dm_blkdev() { dmsetup info -c --noheadings -o blkdevname "$1"; }
# The namespace (nvmeXn1) of the NVMe controller with serial $1; nothing if none has it.
nvme_by_serial() {
    for d in /sys/block/nvme*n1; do
        [ "$(tr -d ' ' < "$d/device/serial" 2>/dev/null)" = "$1" ] && echo "${d##*/}"
    done
}

t_ok()   { T_N=$((T_N + 1)); echo "ok $T_N - $*"; }
t_fail() { T_N=$((T_N + 1)); T_FAILED=$((T_FAILED + 1)); echo "not ok $T_N - $*"; }

# t_check "description" command args...   passes when the command succeeds
t_check() {
    d=$1; shift
    if out=$("$@" 2>&1); then t_ok "$d"; else t_fail "$d"; printf '#   %s\n' "$out" | head -5; fi
}

# t_refuse "description" command args...  passes when the command fails
t_refuse() {
    d=$1; shift
    if out=$("$@" 2>&1); then t_fail "$d (unexpectedly succeeded)"; printf '#   %s\n' "$out" | head -5; else t_ok "$d"; fi
}

# t_eq "description" expected actual
t_eq() {
    if [ "$2" = "$3" ]; then t_ok "$1"; else t_fail "$1"; echo "#   expected '$2', got '$3'"; fi
}

# What a clean kernel log must not contain: oops, BUG (KASAN, sleeping in atomic), WARN (lockdep
# splats print "WARNING: possible circular locking ..."), debugobjects, hung tasks.
T_BAD='Oops|BUG:|WARNING:|general protection|Call Trace|panicked|kernel BUG|KASAN|ODEBUG|INFO: task .* blocked|circular locking|inconsistent lock'

# dmesg must show no oops, BUG, WARN, or kmemleak report since the last mark.
t_dmesg_clean() {
    if [ -w /sys/kernel/debug/kmemleak ]; then
        echo scan > /sys/kernel/debug/kmemleak; sleep 1; echo scan > /sys/kernel/debug/kmemleak
        leaks=$(cat /sys/kernel/debug/kmemleak)
        [ -z "$leaks" ] || { echo "$leaks" | head -20 | sed 's/^/#   /'; t_fail "$1: kmemleak reports leaks"; return; }
    fi
    bad=$(dmesg | grep -E "$T_BAD" | head -5)
    if [ -z "$bad" ]; then t_ok "$1: dmesg has no oops or WARN"; else t_fail "$1: dmesg shows problems"; echo "$bad" | sed 's/^/#   /'; fi
}

# Dumps the KTAP of every KUnit suite matching $1 between markers for the host.
t_ktap() {
    for d in /sys/kernel/debug/kunit/$1; do
        [ -r "$d/results" ] || continue
        echo "@@KTAP-BEGIN ${d##*/}@@"
        cat "$d/results"
        echo "@@KTAP-END@@"
    done
}

# The end of every job: a last kmemleak scan (kmemleak=on in both kernel flavors) and the whole log
# checked for lockdep, KASAN and oops reports. Two TAP lines.
t_final_checks() {
    if [ -w /sys/kernel/debug/kmemleak ]; then
        echo scan > /sys/kernel/debug/kmemleak; sleep 1; echo scan > /sys/kernel/debug/kmemleak
        leaks=$(cat /sys/kernel/debug/kmemleak)
        if [ -z "$leaks" ]; then t_ok "end of job: kmemleak scan finds no leak"
        else t_fail "end of job: kmemleak reports leaks"; echo "$leaks" | head -30 | sed 's/^/#   /'; fi
    else
        t_fail "end of job: kmemleak is not available (boot with kmemleak=on)"
    fi
    bad=$(dmesg | grep -E "$T_BAD" | head -5)
    if [ -z "$bad" ]; then t_ok "end of job: no oops, KASAN, lockdep or WARN report in dmesg"
    else t_fail "end of job: dmesg has kernel reports"; dmesg | grep -E -A12 "$T_BAD" | head -40 | sed 's/^/#   /'; fi
}

t_done() { t_final_checks; echo "1..$T_N"; [ "$T_FAILED" = 0 ]; }
