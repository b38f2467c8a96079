#!/bin/sh
# aether-stat against the real debugfs files, run INSIDE the QEMU guest (busybox ash).
# From the host:
#   cargo build --release -p aether-stat
#   scripts/qemu-run.sh --bin target/release/aether-stat --file Documentation/ABI/testing/debugfs-aether \
#       scripts/guest/stat-tests.sh
# Prints TAP; exits non-zero on any failure.
. /aether/guest/lib.sh

AS=/aether/bin/aether-stat
DBG=/sys/kernel/debug
D=$DBG/aether
O=/tmp/stat-out
E=/tmp/stat-err

# st ARGS...: run aether-stat, stdout in $O, stderr in $E, status in $RC.
st() { $AS "$@" >$O 2>$E; RC=$?; }
show() { sed -n '1,8s/^/#   /p' $E $O; }
expect() { if [ "$RC" = "$1" ]; then t_ok "$2"; else t_fail "$2 (exit $RC, wanted $1)"; show; fi; }
has() { grep -q "$1" "$2" || { echo "#   no '$1' in $2:"; sed -n '1,8s/^/#   /p' "$2"; return 1; }; }
# `started` waits (up to 10 s) for aether-stat's first output: the text header (its first
# snapshot is taken) or the first JSON line (its first two are). Call `fresh` before starting
# aether-stat in the background, or the previous run's output (still in $O until the background
# shell truncates it) would end the wait at once.
fresh() { rm -f $O $E; }
started() { i=0; while [ ! -s $O ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done; }
# Sum of one counter's deltas over all JSON lines of device $2 in file $3.
dsum() { grep "\"device\":\"$2\"" "$3" | grep -o "\"$1\":[0-9]*" | awk -F: '{ s += $2 } END { print s + 0 }'; }

t_check "aether-stat runs in the guest (libraries copied)" $AS --version

# Missing debugfs mount, then missing module.
umount $DBG
st --count 1 --interval 0.1
expect 3 "debugfs not mounted: exit 3"
t_check "... with a one-line message" sh -c "[ \$(wc -l < $E) = 1 ] && grep -q 'debugfs is not mounted at $DBG' $E"
mount -t debugfs debugfs $DBG
st --count 1 --interval 0.1
expect 4 "module not loaded: exit 4"
t_check "... with a one-line message" sh -c "[ \$(wc -l < $E) = 1 ] && grep -q 'aether module not loaded' $E"

insmod /aether/aether.ko || { t_fail "insmod"; t_done; exit 1; }
st --count 1 --interval 0.1
expect 0 "module loaded, no device: exit 0"
t_check "... says it waits for a device" has "no aether devices under $D" $E

S=$(cat /sys/block/nvme0n1/size)
dmsetup create s0 --table "0 $S aether /dev/nvme0n1" || t_fail "create s0"
dmsetup create s1 --table "0 $S aether /dev/nvme0n1" || t_fail "create s1"

# Text: a header, then one line per device per interval, columns lined up.
st --count 2 --interval 0.2
expect 0 "text: two reports"
t_eq "text: header + 2 devices x 2 intervals" 5 "$(wc -l < $O)"
t_check "text: header columns" sh -c "head -1 $O | grep -qE '^ +time device +reads/s +hit% +late% +waste% +pfMiB/s +cacheMiB +phi +eps +depth$'"
t_eq "text: every line as wide as the header" 1 "$(awk '{ print length($0) }' $O | sort -u | wc -l)"
t_eq "text: phi, eps and depth are the device's" \
    "$(sed -n 's/^gate_phi: //p' $D/s0/stats) $(sed -n 's/^gate_epsilon_eff: //p' $D/s0/stats) $(sed -n 's/^depth_cap: //p' $D/s0/stats)" \
    "$(awk '$2 == "s0" { printf "%g %g %d", $9, $10, $11; exit }' $O)"

# JSON: the reads of a known fio run, summed over the intervals, equal the counter. fio starts
# once the first line is out (two snapshots taken), not after a fixed sleep: on a loaded host
# aether-stat took over a second to start, and fio ran before its first snapshot.
dmsetup message s0 0 reset_stats
fresh
$AS --json --interval 0.5 --count 20 >$O 2>$E &
pid=$!
started
fio --name=seq --filename=/dev/mapper/s0 --rw=read --bs=4k --direct=1 --ioengine=psync --size=8M \
    --output=/dev/null || t_fail "fio on s0"
wait $pid; RC=$?
expect 0 "json: 20 reports around a fio run"
reads=$(sed -n 's/^reads: //p' $D/s0/stats)
t_eq "json: 2048 reads counted by the module" 2048 "$reads"
t_eq "json: sum of deltas.reads over the intervals equals the counter" "$reads" "$(dsum reads s0 $O)"
t_eq "json: sum of deltas.read_bytes equals the counter" "$(sed -n 's/^read_bytes: //p' $D/s0/stats)" \
    "$(dsum read_bytes s0 $O)"
t_check "json: some interval saw reads/s > 0" sh -c "grep '\"device\":\"s0\"' $O | grep -qv '\"reads_per_s\":0.0,'"
t_eq "json: 40 lines (2 devices x 20)" 40 "$(wc -l < $O)"

# The ABI file documents every field the module prints, in its order; aether-stat differences
# exactly the fields it does not list as levels. (A level differenced as a counter made a falling
# cache_in_flight_blocks look like reset_stats, and recounted every counter whole.)
abi_fields() {
    awk '/^What:/ { on = ($0 ~ /\/stats$/); next }
        !on { next }
        /^\t\t\t/ { if (names != "") printf "%s", names; names = ""; next }
        /^\t\t[a-z0-9_]+(, [a-z0-9_]+)*,?$/ { gsub(/[\t,]/, " "); names = names " " $0; next }
        { names = "" }' $ABI | tr -s ' \n' '\n\n' | grep .
}
ABI=/aether/debugfs-aether
t_eq "stats: the fields the ABI file documents, in order" "$(abi_fields | tr '\n' ' ')" \
    "$(sed 's/:.*//' $D/s0/stats | tr '\n' ' ')"
levels=$(sed -n '/Levels:/,/\./p' $ABI | sed 's/.*Levels://; s/\.//' | tr -s ', \t' '\n\n\n' | grep .)
t_eq "json: deltas are the ABI file's fields less its levels" \
    "$(abi_fields | grep -vxF "$levels" | sort | tr '\n' ' ')" \
    "$(grep -m1 '"device":"s0"' $O | sed 's/.*"deltas":{//; s/}.*//' | tr ',' '\n' | sed 's/"\([a-z0-9_]*\)".*/\1/' | tr '\n' ' ')"

# reset_stats while running: no negative rate.
# The reset falls between the second and third snapshots: after the first line is out.
fio --name=pre --filename=/dev/mapper/s1 --rw=read --bs=4k --direct=1 --size=1M --output=/dev/null
fresh
$AS --json --interval 1 --count 3 >$O 2>$E &
pid=$!
started
dmsetup message s1 0 reset_stats
wait $pid; RC=$?
expect 0 "reset while running: exit 0"
t_check "reset while running: flagged, and no negative number anywhere" \
    sh -c "grep -q '\"device\":\"s1\".*\"counter_reset\":true' $O && ! grep -q ':-[0-9]' $O"

# A device removed and one created while it runs.
fresh
$AS --interval 1 --count 2 >$O 2>$E &
pid=$!
started
dmsetup remove s1
dmsetup create s2 --table "0 $S aether /dev/nvme0n1"
wait $pid; RC=$?
expect 0 "devices come and go: exit 0"
t_check "... s1 announced gone" has "aether-stat: device s1 disappeared" $E
t_check "... s2 announced new" has "aether-stat: device s2 appeared" $E
t_check "... last report has s0 and s2, not s1" sh -c "tail -2 $O | awk '{ print \$2 }' | tr '\n' ' ' | grep -qx 's0 s2 '"

# rmmod while it runs: exit 4.
fresh
$AS --interval 1 --count 5 >$O 2>$E &
pid=$!
started
dmsetup remove s0; dmsetup remove s2
rmmod aether || t_fail "rmmod"
wait $pid; RC=$?
expect 4 "module unloaded while running: exit 4"

t_dmesg_clean "aether-stat"
t_done
