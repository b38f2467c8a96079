# Helpers for guest test scripts (busybox ash). Results are TAP lines that
# scripts/test.sh counts: "ok N - what" / "not ok N - what".
T_N=0
T_FAILED=0

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

# dmesg must show no oops, BUG, WARN, or kmemleak report since the last mark.
t_dmesg_clean() {
    if [ -w /sys/kernel/debug/kmemleak ]; then
        echo scan > /sys/kernel/debug/kmemleak; sleep 1; echo scan > /sys/kernel/debug/kmemleak
        leaks=$(cat /sys/kernel/debug/kmemleak)
        [ -z "$leaks" ] || { echo "$leaks" | head -20 | sed 's/^/#   /'; t_fail "$1: kmemleak reports leaks"; return; }
    fi
    bad=$(dmesg | grep -E 'Oops|BUG:|WARNING:|general protection|Call Trace|panicked|kernel BUG' | head -5)
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

t_done() { echo "1..$T_N"; [ "$T_FAILED" = 0 ]; }
