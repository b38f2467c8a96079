#!/bin/sh
# Guest job: fuzz every text input aether takes (issue 12): debugfs writes, `dmsetup message` and
# table lines. Inputs come from a seeded generator (fuzz-gen.awk, busybox awk) that makes only
# inputs every grammar must refuse: garbage, huge numbers, NUL and raw bytes, over-long values,
# partial writes, writes at an offset, wrong arity and names. Each input must fail with an errno and
# change nothing; concurrent writers must not corrupt anything; aether's dmesg stays rate-limited
# (10 lines per 5 s); no oops, no leak.
#
#   scripts/qemu-run.sh --nvme 2 --timeout 1200 scripts/guest/fuzz-tests.sh [SEED [PERCENT]]
# PERCENT scales the case counts (100: 7500 debugfs + 2000 concurrent debugfs + 400 message
# + 150 table = 10,050 inputs; a dmsetup call costs ~20 debugfs writes under TCG, and messages
# and table values go through the same parser as debugfs writes)).
. /aether/guest/lib.sh
[ -f /aether/job.args ] && set -- $(cat /aether/job.args)
SEED=${1:-20261204}
PCT=${2:-100}
KO=/aether/aether.ko
DBG=/sys/kernel/debug/aether
N0=/dev/nvme0n1
N1=/dev/nvme1n1
GEN=/aether/guest/fuzz-gen.awk
TUN="phi epsilon lambda1 lambda2 lambda3 bias learning_rate enabled cache_mb"
TAB=$(printf '\t')
DEFIFS=$IFS

sec() { echo "# --- $* (t=$(cut -d' ' -f1 /proc/uptime)s)"; }
diag() { printf '%s\n' "$@" | head -6 | sed 's/^/#   /'; }
alines() { dmesg | grep -E '(^|\] )aether: ' | grep -vc 'callbacks suppressed'; }
gen() { awk -v seed="$1" -v n="$2" -v kind="$3" -v dev=$N0 -f $GEN; }
scaled() { echo $(( $1 * PCT / 100 )); }
# Everything a refused input must leave as it was, for device $1.
world() { echo "T:$(cd "$DBG/$1" 2>/dev/null && grep -H . $TUN 2>&1 | tr '\n' ' ') TB:$(dmsetup table "$1") LS:$(dmsetup ls | sort | tr '\n' ' ') DBG:$(echo $DBG/*)"; }
# Runs one debugfs case "FILE MODE K PAYLOAD" against device $1; fails if the kernel accepted it.
dbg_case() {
    dev=$1 f=$2 mode=$3 k=$4 p=$5
    case $mode in
        # The shell's printf: one write(2) per value, and no fork (most cases are whole writes).
        w) printf "$p" 2>/dev/null > "$DBG/$dev/$f" ;;
        # Partial writes: one open file, one write(2) per piece; every piece must be refused.
        p) exec 3>"$DBG/$dev/$f" || return 1
           ok=0 IFS='|'
           for c in $p; do printf "$c" 2>/dev/null >&3 && ok=$((ok + 1)); done
           IFS=$DEFIFS; exec 3>&-
           return $ok ;;
        o) printf "$p" | dd of="$DBG/$dev/$f" bs=4096 seek="$k" oflag=seek_bytes conv=notrunc 2>/dev/null ;;
    esac
    [ $? != 0 ]
}

echo "# aether fuzz tests: $(uname -r), $(nproc) CPUs, seed $SEED, scale $PCT%"
S0=$(cat /sys/block/nvme0n1/size)
S1=$(cat /sys/block/nvme1n1/size)
t_check "insmod aether.ko" insmod $KO
t_check "create 'fz' on $N0 with non-default settings" dmsetup create fz --table "0 $S0 aether $N0 4 epsilon 0.25 cache_mb 8"
t_check "create 'fz2' on $N1" dmsetup create fz2 --table "0 $S1 aether $N1"
mark=$(alines)
t0=$(cut -d' ' -f1 /proc/uptime)
W0=$(world fz)
# Some I/O in flight during the fuzzing: tunables are read by the data path.
fio --name=bg --filename=/dev/mapper/fz --rw=randrw --bs=4k --direct=1 --ioengine=psync --time_based --runtime=3600 \
    --output=/dev/null >/dev/null 2>&1 &
FIO=$!

# ================================================================ debugfs
sec "debugfs: $(scaled 7500) invalid writes (whole, partial, at an offset; NUL, raw bytes, huge, long)"
gen $SEED "$(scaled 7500)" debugfs > /tmp/dbg.cases
n=0 acc=0 changed=0 modes=""
while IFS="$TAB" read -r f mode k p; do
    n=$((n + 1))
    read -r before < "$DBG/fz/$f"
    if ! dbg_case fz "$f" "$mode" "$k" "$p"; then
        acc=$((acc + 1)); [ $acc -le 5 ] && echo "#   accepted: $f $mode $k $p"
    fi
    read -r after < "$DBG/fz/$f"
    if [ "$before" != "$after" ]; then
        changed=$((changed + 1)); [ $changed -le 5 ] && echo "#   changed $f: '$before' -> '$after' by $mode $k $p"
    fi
done < /tmp/dbg.cases
for m in w p o; do modes="$modes $m=$(grep -c "^[^$TAB]*$TAB$m$TAB" /tmp/dbg.cases)"; done
echo "# debugfs cases: $n ($modes)"
t_eq "all $n invalid debugfs writes refused with an errno" 0 "$acc"
t_eq "no refused debugfs write changed its file's value" 0 "$changed"
t_eq "device 'fz' unchanged after the debugfs fuzzing (tunables, table, devices, debugfs dirs)" "$W0" "$(world fz)"
ndbg=$n

# ================================================================ messages
sec "dmsetup message: $(scaled 400) invalid messages"
gen $((SEED + 1)) "$(scaled 400)" message > /tmp/msg.cases
n=0 acc=0 drift=0
while IFS= read -r line; do
    n=$((n + 1))
    # Generated words are data: split on tabs only, never globbed.
    set -f; IFS="$TAB"; set -- $line; IFS=$DEFIFS; set +f
    if out=$(dmsetup message fz 0 -- "$@" 2>&1); then
        acc=$((acc + 1)); [ $acc -le 5 ] && echo "#   accepted: $line -> $out"
    fi
    if [ $((n % 200)) = 0 ] && [ "$(world fz)" != "$W0" ]; then
        drift=$((drift + 1)); echo "#   state drifted by case $n: $(world fz)"; W0=$(world fz)
    fi
done < /tmp/msg.cases
echo "# message cases: $n"
t_eq "all $n invalid messages refused with an errno" 0 "$acc"
t_eq "device 'fz' unchanged by refused messages (checked every 200 and at the end)" "0 $W0" "$drift $(world fz)"
nmsg=$n

# ================================================================ tables
sec "table lines: $(scaled 150) invalid tables (create and reload)"
gen $((SEED + 2)) "$(scaled 150)" table > /tmp/tbl.cases
n=0 acc=0 left=0 racc=0
while IFS= read -r line; do
    n=$((n + 1))
    tbl="0 $S0 aether $(echo "$line" | tr '\t' ' ')"
    if [ $((n % 2)) = 0 ]; then
        if dmsetup create fzt --table "$tbl" >/dev/null 2>&1; then
            acc=$((acc + 1)); echo "#   accepted: $tbl"; dmsetup remove fzt
        fi
    else
        # A bad reload of a live device: refused, and the live table keeps running.
        if dmsetup reload fz --table "$tbl" >/dev/null 2>&1; then
            racc=$((racc + 1)); echo "#   reload accepted: $tbl"; dmsetup clear fz
        fi
    fi
    if [ $((n % 100)) = 0 ] && dmsetup info fzt >/dev/null 2>&1; then left=$((left + 1)); dmsetup remove fzt; fi
done < /tmp/tbl.cases
echo "# table cases: $n"
t_eq "all $n invalid table lines refused (create and reload)" "0 0" "$acc $racc"
t_eq "no device left behind by a refused create" "0" "$left$(dmsetup info fzt >/dev/null 2>&1 && echo +fzt)"
t_eq "no inactive table left on 'fz' by a refused reload" "" "$(dmsetup info fz | grep -i 'inactive')"
t_eq "device 'fz' unchanged by refused tables" "$W0" "$(world fz)"
ntbl=$n

# ================================================================ concurrency
sec "concurrent writers: 4 fuzzers on one device, a valid writer and a reader on the other"
gen $((SEED + 3)) "$(scaled 2000)" debugfs > /tmp/conc.cases
split -l $(( $(scaled 2000) / 4 + 1 )) /tmp/conc.cases /tmp/conc.part.
PIDS=""
for part in /tmp/conc.part.*; do
    (
        a=0
        while IFS="$TAB" read -r f mode k p; do dbg_case fz "$f" "$mode" "$k" "$p" || a=$((a + 1)); done < "$part"
        echo $a > "$part.acc"
    ) &
    PIDS="$PIDS $!"
done
# A valid writer on fz2 (always the same values) and a reader of every fz file, meanwhile.
( i=0; while [ $i -lt $(scaled 300) ]; do echo 0.375 > $DBG/fz2/epsilon; echo 0 > $DBG/fz2/enabled
      dmsetup message fz2 0 set lambda1 3 2>/dev/null; i=$((i + 1)); done ) &
VW=$!
( i=0; while [ $i -lt $(scaled 300) ]; do cat $DBG/fz/* >/dev/null 2>&1 || echo "reader failed" >> /tmp/conc.rd; i=$((i + 1)); done ) &
RD=$!
wait $PIDS $VW $RD
nconc=$(cat /tmp/conc.cases | wc -l)
t_eq "all $nconc concurrent invalid debugfs writes refused" 0 "$(cat /tmp/conc.part.*.acc | awk '{ s += $1 } END { print s + 0 }')"
t_eq "device 'fz' unchanged after concurrent fuzzing" "$W0" "$(world fz)"
t_eq "concurrent valid writes on 'fz2' took effect" "0.375 0 3" "$(cat $DBG/fz2/epsilon) $(cat $DBG/fz2/enabled) $(dmsetup message fz2 0 get lambda1)"
t_check "the reader never failed" test ! -e /tmp/conc.rd

# ================================================================ the log and the end state
kill $FIO 2>/dev/null; wait $FIO 2>/dev/null
total=$((ndbg + nmsg + ntbl + nconc))
t1=$(cut -d' ' -f1 /proc/uptime)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print int(b - a) + 1 }')
lines=$(( $(alines) - mark ))
# 10 lines per 5 s window, plus one window of slack for the edges.
budget=$(( (secs / 5 + 2) * 10 ))
echo "# $total inputs in ${secs}s; aether logged $lines lines (budget $budget)"
t_check "at least 10,000 inputs at full scale ($total at $PCT%)" test "$total" -ge $((10000 * PCT / 100))
t_check "aether's dmesg stays rate-limited: $lines lines in ${secs}s <= $budget" test "$lines" -le "$budget"
t_check "fio ran on 'fz' throughout and the device still reads" dd if=/dev/mapper/fz of=/dev/null bs=4k count=16 iflag=direct
t_check "remove 'fz' and 'fz2'" sh -c 'dmsetup remove fz && dmsetup remove fz2'
t_refuse "no stale debugfs entry after remove" sh -c "ls $DBG | grep -q ."
t_check "rmmod aether" rmmod aether
t_dmesg_clean "fuzz tests"
t_done
