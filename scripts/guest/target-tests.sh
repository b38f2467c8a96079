#!/bin/sh
# Guest job: integration tests of the `aether` device-mapper target (issue 4,
# "Tests"): data integrity, tuning (dmsetup status/message/table, debugfs,
# bad input everywhere), module parameters, two devices at once, lifetime.
#
# Needs two emulated NVMe namespaces. From the host:
#   scripts/build-module.sh
#   scripts/qemu-run.sh --nvme 2 --timeout 600 scripts/guest/target-tests.sh
#
# Prints TAP through /aether/guest/lib.sh and exits non-zero on any failure.
# Every "refused" check also checks that nothing changed: the tunables of a
# live device, its table, the debugfs tree and the device list.
. /aether/guest/lib.sh

KO=/aether/aether.ko
DBG=/sys/kernel/debug/aether
MP=/sys/module/aether/parameters
PARAMS="phi epsilon lambda1 lambda2 lambda3 bias learning_rate"
TUNABLES="$PARAMS enabled"
N0=/dev/nvme0n1
N1=/dev/nvme1n1
EINV="Invalid argument"
ERNG="Numerical result out of range|Invalid argument"   # either is allowed for out-of-range

# ---------------------------------------------------------------- helpers
# Value of counter $2 in `dmsetup status $1`.
st() { dmsetup status "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# `--` keeps dmsetup from taking negative values (-4.5) for options.
msg() { d=$1; shift; dmsetup message "$d" 0 -- "$@"; }
mget() { msg "$1" get "$2" 2>&1; }
dget() { cat "$DBG/$1/$2" 2>&1; }
# Every tunable of device $1, through messages / through debugfs.
tunables() { for p in $TUNABLES; do printf '%s=%s ' "$p" "$(mget "$1" "$p")"; done; }
dtunables() { for p in $TUNABLES; do printf '%s=%s ' "$p" "$(dget "$1" "$p")"; done; }
# Number of lines aether itself has logged so far.
# (aether rate-limits these lines; the "N callbacks suppressed" summaries do not count.)
alines() { dmesg | grep -E '(^|\] )aether: ' | grep -vc 'callbacks suppressed'; }
# Everything a refused input must leave as it was.
# (Tunables through debugfs: one process, where 8 messages would cost 8.)
world() { echo "T:$(cd "$DBG/$1" 2>/dev/null && grep -H . $TUNABLES 2>&1 | tr '\n' ' ') TB:$(dmsetup table "$1") LS:$(dmsetup ls) DBG:$(echo $DBG/*)"; }
sec() { echo "# --- $* (t=$(cut -d' ' -f1 /proc/uptime)s)"; }
diag() { printf '%s\n' "$@" | head -6 | sed 's/^/#   /'; }
# Exactly representable values (Q16), two per tunable, and one out of range.
good1() { case $1 in phi) echo 0.5 ;; epsilon) echo 0.25 ;; lambda1) echo 3 ;; lambda2) echo -4.5 ;; lambda3) echo 0.75 ;;
          bias) echo -2.25 ;; learning_rate) echo 0.125 ;; enabled) echo 0 ;; esac; }
good2() { case $1 in phi) echo -0.25 ;; epsilon) echo 0.875 ;; lambda1) echo -1 ;; lambda2) echo 5 ;; lambda3) echo -0.5 ;;
          bias) echo 1.75 ;; learning_rate) echo 0.0625 ;; enabled) echo 1 ;; esac; }
outr()  { case $1 in phi) echo 2 ;; epsilon) echo 1.5 ;; lambda1) echo 17 ;; lambda2) echo -16.5 ;; lambda3) echo 100 ;;
          bias) echo -17 ;; learning_rate) echo 2 ;; enabled) echo 2 ;; esac; }
LONG33=0.0000000000000000000000000000001                                       # 33 bytes: parser's limit is 32
LONG70=0.000000000000000000000000000000000000000000000000000000000000000000001 # 70 bytes: over debugfs's 64
# Garbage (EINVAL) values for tunable $1, space separated; none is empty.
garbage() { if [ "$1" = enabled ]; then echo "yes -1 1.0 true abc 01x $LONG33"; else echo "abc 1.2.3 0x10 1e3 nan 1,5 +-1 0.5x $LONG33"; fi; }

# refuse_msg DEV ERRTEXT ARGS...: `msg DEV 0 ARGS` must fail with
# ERRTEXT, log exactly one aether line and change nothing.
refuse_msg() {
    dev=$1 exp=$2; shift 2
    before=$(world "$dev"); n0=$(alines)
    if out=$(msg "$dev" "$@" 2>&1); then t_fail "message '$*' is refused (it succeeded)"; diag "$out"; return; fi
    n=$(( $(alines) - n0 )); after=$(world "$dev")
    if echo "$out" | grep -qE "$exp"; then e=1; else e=0; fi
    if [ "$before" != "$after" ]; then t_fail "message '$*' is refused and changes nothing"; diag "before: $before" "after:  $after"
    elif [ "$n" -gt 1 ]; then t_fail "message '$*' is refused with at most one dmesg line (got $n)"; dmesg | tail -3 | sed 's/^/#   /'
    elif [ $e != 1 ]; then t_fail "message '$*' is refused with '$exp'"; diag "$out"
    else t_ok "message '$*' refused ($exp), <= 1 dmesg line, nothing changed"; fi
}

# refuse_dbg DEV FILE VALUE ERRTEXT LOGS: writing VALUE (plus echo's newline)
# to debugfs FILE must fail with ERRTEXT, log LOGS lines, change nothing.
refuse_dbg() {
    dev=$1 f=$2 v=$3 exp=$4 logs=$5
    before=$(world "$dev"); n0=$(alines)
    if out=$( (echo "$v" > "$DBG/$dev/$f") 2>&1 ); then t_fail "debugfs $f: write '$v' is refused (it succeeded)"; return; fi
    n=$(( $(alines) - n0 )); after=$(world "$dev")
    case $out in *"$exp"*) e=1 ;; *) e=0 ;; esac
    if [ "$before" != "$after" ]; then t_fail "debugfs $f: write '$v' is refused and changes nothing"; diag "before: $before" "after:  $after"
    elif [ "$n" -gt "$logs" ]; then t_fail "debugfs $f: write '$v' refused with at most $logs dmesg line(s) (got $n)"
    elif [ $e != 1 ]; then t_fail "debugfs $f: write '$v' is refused with '$exp'"; diag "$out"
    else t_ok "debugfs $f: write '$v' refused ($exp), nothing changed"; fi
}

# refuse_table DESC TABLE [ERRTEXT]: `dmsetup create` must fail, log one aether
# line (when ERRTEXT is not "-"), leave no device behind and change nothing on
# the reference device $REF.
refuse_table() {
    d=$1 tbl=$2 logs=${3:-1}
    before=$(world "$REF"); n0=$(alines)
    if out=$(printf '%s\n' "$tbl" | dmsetup create bad 2>&1); then
        t_fail "bad table ($d) is refused (it succeeded)"; dmsetup remove bad 2>/dev/null; return
    fi
    n=$(( $(alines) - n0 )); after=$(world "$REF")
    if dmsetup info bad >/dev/null 2>&1; then t_fail "bad table ($d) leaves no device behind"; dmsetup remove bad
    elif [ "$before" != "$after" ]; then t_fail "bad table ($d) changes nothing"; diag "before: $before" "after:  $after"
    elif [ "$logs" != - ] && [ "$n" -gt "$logs" ]; then t_fail "bad table ($d) logs at most $logs aether dmesg line (got $n)"; dmesg | tail -3 | sed 's/^/#   /'
    else t_ok "bad table ($d) refused: $(echo "$out" | head -1)"; fi
}

# Reads of $1 4 KiB blocks through device $2, O_DIRECT.
rd4k() { dd if="$2" of=/dev/null bs=4k count="$1" iflag=direct 2>/dev/null; }
md5dev() { dd if="$1" bs=1M iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1; }

echo "# aether target tests: $(uname -r), $(nproc) CPUs"
t_check "emulated NVMe namespaces $N0 and $N1 are present" test -b $N0 -a -b $N1
S0=$(cat /sys/block/nvme0n1/size)
S1=$(cat /sys/block/nvme1n1/size)
MM0=$(cat /sys/block/nvme0n1/dev)
t_check "insmod aether.ko" insmod $KO
t_check "target type 'aether' is registered" sh -c 'dmsetup targets | grep -q "^aether "'
mark_start=$(alines)

# ================================================================ data integrity
sec "data integrity: mixed writes through aether and raw, then whole-device checksums"
t_check "create aether device 'ai' on $N0" dmsetup create ai --table "0 $S0 aether $N0"
A=/dev/mapper/ai
dd if=/dev/urandom of=/tmp/rnd bs=1M count=4 2>/dev/null
# The model: what the namespace must hold. qemu-run.sh gives every run fresh,
# zeroed images, so it starts as zeros (checked on the first 16 MiB).
truncate -s $((S0 * 512)) /tmp/model
t_eq "fresh namespace reads as zeros (first 16 MiB)" "$(dd if=/dev/zero bs=1M count=16 2>/dev/null | md5sum)" \
    "$(dd if=$N0 bs=1M count=16 iflag=direct 2>/dev/null | md5sum)"
# w DEV OFF LEN SRCOFF: LEN bytes of /tmp/rnd at SRCOFF to DEV and model at OFF.
REGIONS=""
wfail=0
w() {
    if ! dd if=/tmp/rnd of="$1" bs="$3" count=1 skip="$4" iflag=skip_bytes seek="$2" oflag=seek_bytes,direct conv=notrunc 2>/tmp/dd.err; then
        wfail=$((wfail + 1)); echo "#   write $1 @$2 +$3 failed: $(cat /tmp/dd.err)"
    fi
    dd if=/tmp/rnd of=/tmp/model bs="$3" count=1 skip="$4" iflag=skip_bytes seek="$2" oflag=seek_bytes conv=notrunc 2>/dev/null
    REGIONS="$REGIONS $2:$3"
}
END0=$((S0 * 512))
M=1048576
w $A  0                 4096     0
w $N0 4096              4096     8192
w $A  $((M + 512))      512      100352
w $N0 $((M + 1024))     3584     200704
w $A  $((7 * M + 1536)) 65536    300032
w $N0 $((7 * M + 32768)) 65536   401408
w $A  $((16 * M))       $M       $M
w $A  $((20 * M - 4096)) $((3 * M)) 4096
w $N0 $((21 * M))       4096     $((2 * M + 512))
w $A  $((END0 - 4096))  4096     $((3 * M))
w $N0 $((END0 - 512))   512      $((3 * M + 8192))
w $A  $((4096 + 512))   1024     $((3 * M + 16384))
w $N0 $((64 * M))       $((2 * M)) 0
w $A  $((64 * M + 4096 * 5)) 8192 12345
t_eq "14 O_DIRECT writes (8 through aether, 6 raw; 512 B..3 MiB, odd offsets, both ends of the device) succeed" 0 "$wfail"
# One buffered write through aether, made durable with fsync.
if dd if=/tmp/rnd of=$A bs=65536 count=2 skip=65536 iflag=skip_bytes seek=$((100 * M)) oflag=seek_bytes conv=notrunc,fsync 2>/dev/null; then
    dd if=/tmp/rnd of=/tmp/model bs=65536 count=2 skip=65536 iflag=skip_bytes seek=$((100 * M)) oflag=seek_bytes conv=notrunc 2>/dev/null
    REGIONS="$REGIONS $((100 * M)):131072"
    t_ok "buffered write through aether + fsync"
else t_fail "buffered write through aether + fsync"; fi
# Every region, read back through each path, matches the model.
bad=""
for r in $REGIONS; do
    off=${r%%:*} len=${r##*:}
    want=$(dd if=/tmp/model bs="$len" count=1 skip="$off" iflag=skip_bytes 2>/dev/null | sha1sum | cut -d' ' -f1)
    for dev in $A $N0; do
        got=$(dd if=$dev bs="$len" count=1 skip="$off" iflag=skip_bytes,direct 2>/dev/null | sha1sum | cut -d' ' -f1)
        [ "$got" = "$want" ] || bad="$bad $dev@$off+$len"
    done
done
t_eq "every written region reads back as written, through aether and raw (sha1)" "" "$bad"
m_model=$(md5sum < /tmp/model | cut -d' ' -f1)
m_raw=$(md5dev $N0)
m_ae=$(md5dev $A)
t_eq "whole $N0 read raw matches the model (md5)" "$m_model" "$m_raw"
t_eq "whole device read through aether equals raw (md5)" "$m_raw" "$m_ae"
rm -f /tmp/model
# fio: random writes of mixed sizes at QD16 through aether, verified through aether and then raw.
FV="--name=v --rw=randwrite --bsrange=512-64k --direct=1 --ioengine=io_uring --iodepth=16 --offset=128M --size=32M --verify=crc32c --randseed=4242"
t_check "fio randwrite QD16 512B-64K with crc32c verify through aether" fio $FV --filename=$A --do_verify=1 --output=/tmp/fio.v
t_check "fio verify-only of the same writes on raw $N0" fio $FV --filename=$N0 --verify_only --output=/tmp/fio.vr
t_eq "fio's 32 MiB region reads the same through aether and raw (md5)" \
    "$(dd if=$N0 bs=1M skip=128 count=32 iflag=direct 2>/dev/null | md5sum)" "$(dd if=$A bs=1M skip=128 count=32 iflag=direct 2>/dev/null | md5sum)"
# A table that starts the aether target at a non-zero sector (after a linear target).
if printf '0 2048 linear %s 0\n2048 %s aether %s\n' $N1 "$S0" $N0 | dmsetup create cat 2>/tmp/err; then
    dd if=/tmp/rnd of=/dev/mapper/cat bs=4096 count=1 seek=$(((2048 + 200) * 512)) oflag=seek_bytes,direct 2>/dev/null
    t_eq "aether at table start 2048: mapped sector 2048+200 lands on $N0 sector 200" \
        "$(dd if=/tmp/rnd bs=4096 count=1 2>/dev/null | md5sum)" "$(dd if=$N0 bs=4096 count=1 skip=$((200 * 512)) iflag=skip_bytes,direct 2>/dev/null | md5sum)"
    t_eq "aether at table start 2048: 24 MiB of the namespace read the same through the offset table" \
        "$(dd if=$N0 bs=1M count=24 iflag=direct 2>/dev/null | md5sum)" "$(dd if=/dev/mapper/cat bs=1M skip=1 count=24 iflag=direct 2>/dev/null | md5sum)"
    t_check "remove offset table 'cat'" dmsetup remove cat
else t_fail "table with aether after a linear target is accepted"; diag "$(cat /tmp/err)"; fi
t_check "remove 'ai'" dmsetup remove ai

# ================================================================ counters
sec "counters: they move with the I/O"
t_check "create 'c0' on $N0" dmsetup create c0 --table "0 $S0 aether $N0"
C=/dev/mapper/c0
rd4k 8 $C
t_check "message reset_stats" msg c0 reset_stats
t_eq "after reset_stats: reads writes read_bytes gate_open gate_closed flushes are 0" "0 0 0 0 0 0" \
    "$(st c0 reads) $(st c0 writes) $(st c0 read_bytes) $(st c0 gate_open) $(st c0 gate_closed) $(st c0 flushes)"
rd4k 64 $C
t_eq "64 x 4 KiB O_DIRECT reads: reads=64 read_bytes=262144" "64 262144" "$(st c0 reads) $(st c0 read_bytes)"
t_eq "enabled: gate_open + gate_closed == reads (64)" 64 $(($(st c0 gate_open) + $(st c0 gate_closed)))
# The gate must see the stream: sequential reads open it, random ones do not.
g_seq=$(st c0 gate_open)
t_check "64 sequential reads open the gate (gate_open=$g_seq >= 16)" test "$g_seq" -ge 16
fio --name=r --filename=$C --rw=randread --bs=4k --direct=1 --ioengine=psync --io_size=800k --randseed=7 --output=/dev/null
t_eq "200 random 4 KiB reads (fio): reads=264" 264 "$(st c0 reads)"
g_rand=$(( $(st c0 gate_open) - g_seq ))
t_check "200 random reads mostly keep the gate closed (gate_open +$g_rand < 20)" test "$g_rand" -lt 20
t_eq "enabled: gate_open + gate_closed == reads (264)" 264 $(($(st c0 gate_open) + $(st c0 gate_closed)))
hist=$(awk '$1 == "read" { s += $3 } END { print s + 0 }' $DBG/c0/latency_histogram)
t_eq "latency_histogram read buckets sum to reads (264)" 264 "$hist"
t_check "read_p50_us > 0 after reads" test "$(st c0 read_p50_us)" -gt 0
g0=$(($(st c0 gate_open) + $(st c0 gate_closed)))
msg c0 set enabled 0
rd4k 32 $C
t_eq "disabled: 32 more reads counted (296)" 296 "$(st c0 reads)"
t_eq "disabled: gate counters do not move" "$g0" $(($(st c0 gate_open) + $(st c0 gate_closed)))
t_eq "status shows enabled=0" 0 "$(st c0 enabled)"
msg c0 set enabled 1
dd if=/tmp/rnd of=$C bs=4k count=16 seek=$((150 * 256)) oflag=direct 2>/dev/null
t_eq "16 x 4 KiB O_DIRECT writes: writes=16 write_bytes=65536" "16 65536" "$(st c0 writes) $(st c0 write_bytes)"
f0=$(st c0 flushes)
dd if=/tmp/rnd of=$C bs=4k count=1 seek=$((150 * 256)) conv=fsync 2>/dev/null
t_check "dd conv=fsync through aether: flushes moved ($f0 -> $(st c0 flushes))" test "$(st c0 flushes)" -gt "$f0"
t_eq "no read or write errors" "0 0" "$(st c0 read_errors) $(st c0 write_errors)"
d0=$(st c0 discards)
if out=$(fio --name=t --filename=$C --rw=trim --bs=64k --offset=200M --size=1M --output=/dev/null 2>&1); then
    t_check "discard through aether: discards moved ($d0 -> $(st c0 discards))" test "$(st c0 discards)" -gt "$d0"
else t_fail "discard (fio rw=trim) through aether is passed through"; diag "$out"; fi
t_check "blkdiscard through aether succeeds" blkdiscard -o $((201 * M)) -l $M $C
t_eq "discarded range reads the same through aether and raw" \
    "$(dd if=$N0 bs=$M count=1 skip=201 iflag=direct 2>/dev/null | md5sum)" "$(dd if=$C bs=$M count=1 skip=201 iflag=direct 2>/dev/null | md5sum)"
sd=$(dmsetup status c0 | cut -d' ' -f4- | tr ' ' '\n' | grep . | sed 's/=/: /')
t_eq "debugfs stats equals dmsetup status (key: value per line)" "$sd" "$(cat $DBG/c0/stats)"
t_check "latency_histogram has a header and read and write lines" \
    sh -c "head -1 $DBG/c0/latency_histogram | grep -q '^#' && grep -q '^read ' $DBG/c0/latency_histogram && grep -q '^write ' $DBG/c0/latency_histogram"
t_check "remove 'c0'" dmsetup remove c0

# ================================================================ tuning
sec "tuning: table, status, message and debugfs round trips"
t_check "create 't0' with opt args '4 epsilon 0.5 lambda1 3'" dmsetup create t0 --table "0 $S0 aether $N0 4 epsilon 0.5 lambda1 3"
REF=t0
t_eq "table shows the args as given" "0 $S0 aether $MM0 4 epsilon 0.5 lambda1 3" "$(dmsetup table t0)"
t_eq "table args took effect (message get)" "0.5 3" "$(mget t0 epsilon) $(mget t0 lambda1)"
t_eq "table args took effect (debugfs)" "0.5 3" "$(dget t0 epsilon) $(dget t0 lambda1)"
t_check "debugfs dir has the 9 tunables (cache_mb too), stats and latency_histogram" \
    sh -c "cd $DBG/t0/ && for f in $TUNABLES cache_mb stats latency_histogram; do test -f \$f || exit 1; done"
t_eq "debugfs modes: tunables 0644, stats/histogram 0444" "-rw-r--r-- x9 -r--r--r-- x2" \
    "$(ls -l $DBG/t0/ | awk 'NR > 0 && $1 ~ /^-/ { c[$1]++ } END { printf "-rw-r--r-- x%d -r--r--r-- x%d", c["-rw-r--r--"], c["-r--r--r--"] }')"
t_eq "status is key=value pairs only" "" "$(dmsetup status t0 | cut -d' ' -f4- | tr ' ' '\n' | grep . | grep -v '^[a-z0-9_]*=-\{0,1\}[0-9][0-9.]*$')"
for k in reads read_bytes writes write_bytes flushes discards gate_open gate_closed enabled; do
    echo " $(dmsetup status t0) " | grep -q " $k=" || missing="$missing $k"
done
t_eq "status has reads read_bytes writes write_bytes flushes discards gate_open gate_closed enabled" "" "$missing"
for p in $TUNABLES; do
    v=$(good1 $p)
    msg t0 set $p "$v" 2>/tmp/err
    t_eq "message set $p $v: get and debugfs read it back" "$v $v" "$(mget t0 $p) $(dget t0 $p)"
    v=$(good2 $p)
    (echo "$v" > $DBG/t0/$p) 2>/tmp/err
    t_eq "debugfs write $p $v: debugfs and message get read it back" "$v $v" "$(dget t0 $p) $(mget t0 $p)"
done
t_eq "status enabled follows the tunable (1)" 1 "$(st t0 enabled)"
printf 0 > $DBG/t0/enabled
t_eq "debugfs write without a newline is accepted (enabled 0)" "0 0" "$(dget t0 enabled) $(st t0 enabled)"
echo 1 > $DBG/t0/enabled
t_eq "table is unchanged by tuning" "0 $S0 aether $MM0 4 epsilon 0.5 lambda1 3" "$(dmsetup table t0)"

sec "tuning: bad input to every message form"
# Past the log rate limit's window, one refusal logs exactly one line.
sleep 6; n0=$(alines); msg t0 set epsilon junk 2>/dev/null
t_eq "after a quiet period, one refused message logs exactly one line" 1 $(( $(alines) - n0 ))
sleep 6; n0=$(alines); (echo junk > $DBG/t0/epsilon) 2>/dev/null
t_eq "after a quiet period, one refused debugfs write logs exactly one line" 1 $(( $(alines) - n0 ))
msg t0 set epsilon 0.5
refuse_msg t0 "$EINV" set
refuse_msg t0 "$EINV" set epsilon
refuse_msg t0 "$EINV" set epsilon 0.5 extra
refuse_msg t0 "$EINV" set bogus 1
refuse_msg t0 "$EINV" set stats 1
refuse_msg t0 "$EINV" get
refuse_msg t0 "$EINV" get bogus
refuse_msg t0 "$EINV" get epsilon extra
refuse_msg t0 "$EINV" reset_stats now
refuse_msg t0 "$EINV" bogus
refuse_msg t0 "$EINV" SET epsilon 0.5
for p in $TUNABLES; do
    if [ $p = enabled ]; then refuse_msg t0 "$EINV" set $p 2; else refuse_msg t0 "$ERNG" set $p "$(outr $p)"; fi
    refuse_msg t0 "$EINV" set $p abc
done
refuse_msg t0 "$EINV" set epsilon "$LONG33"
for g in 1.2.3 0x10 1e3 nan 1,5 +-1 0.5x; do refuse_msg t0 "$EINV" set epsilon "$g"; done
refuse_msg t0 "$ERNG" set epsilon -0.1
refuse_msg t0 "$ERNG" set lambda1 99999999999

sec "tuning: bad input to every writable debugfs file"
for p in $TUNABLES; do
    refuse_dbg t0 $p "" "$EINV" 1
    refuse_dbg t0 $p "$LONG70" "$EINV" 0
    if [ $p = epsilon ] || [ $p = enabled ]; then gl=$(garbage $p); else gl="abc 1.2.3 $LONG33"; fi
    for g in $gl; do refuse_dbg t0 $p "$g" "$EINV" 1; done
    if [ $p = enabled ]; then refuse_dbg t0 $p 2 "$EINV" 1; else refuse_dbg t0 $p "$(outr $p)" "write error" 1; fi
done
# Issue 4 says an out-of-range debugfs write returns -EINVAL.
bad=""
for p in $PARAMS; do
    out=$( (echo "$(outr $p)" > $DBG/t0/$p) 2>&1 ) && bad="$bad $p:accepted"
    case $out in *"$EINV"*) ;; *) bad="$bad $p:${out##*: }" ;; esac
done
t_eq "out-of-range debugfs writes fail with EINVAL (issue 4 wording)" "" "$bad"
refuse_dbg t0 stats 1 "write error" 0
refuse_dbg t0 latency_histogram 1 "write error" 0

sec "tuning: bad table lines"
refuse_table "missing device path" "0 $S0 aether"
refuse_table "nonexistent device" "0 $S0 aether /dev/nonexistent"
refuse_table "not a block device" "0 $S0 aether /tmp/rnd"
refuse_table "odd count, one word" "0 $S0 aether $N0 1 epsilon"
refuse_table "odd count, three words" "0 $S0 aether $N0 3 epsilon 0.5 enabled"
refuse_table "count larger than the args" "0 $S0 aether $N0 4 epsilon 0.5"
refuse_table "count smaller than the args" "0 $S0 aether $N0 2 epsilon 0.5 enabled 1"
refuse_table "count not a number" "0 $S0 aether $N0 x epsilon 0.5"
refuse_table "negative count" "0 $S0 aether $N0 -2 epsilon 0.5"
refuse_table "unknown key" "0 $S0 aether $N0 2 foo 1"
refuse_table "garbage value" "0 $S0 aether $N0 2 epsilon abc"
refuse_table "out-of-range value" "0 $S0 aether $N0 2 epsilon 2"
refuse_table "bad enabled value" "0 $S0 aether $N0 2 enabled 5"
refuse_table "bad value after a good pair" "0 $S0 aether $N0 4 lambda1 5 bias 99"
refuse_table "overlong value" "0 $S0 aether $N0 2 epsilon $LONG33"
V30=0.5000000000000000000000000000
refuse_table "opt args over 256 bytes" "0 $S0 aether $N0 16$(for i in 1 2 3 4 5 6 7 8; do printf ' epsilon %s' $V30; done)"
refuse_table "more args than the target layer takes (41)" "0 $S0 aether $N0 40$(for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do printf ' epsilon 0.5'; done)" -
refuse_table "target longer than the device" "0 $((S0 + 8)) aether $N0" -
before=$(world t0)
t_refuse "dmsetup reload t0 with a bad table is refused" dmsetup reload t0 --table "0 $S0 aether $N0 2 epsilon 7"
t_eq "refused reload leaves t0 unchanged" "$before" "$(world t0)"
t_check "refused reload leaves no inactive table" sh -c 'dmsetup info t0 | grep -q "Tables present: *LIVE$"'
for good in "" "0" "2 enabled 0" "16 phi 0.5 epsilon 0.25 lambda1 3 lambda2 -4.5 lambda3 0.75 bias -2.25 learning_rate 0.125 enabled 0"; do
    if dmsetup create g --table "0 $S0 aether $N0${good:+ $good}" 2>/tmp/err; then
        t_eq "table '${good:-no opt args}' accepted and shown as given" "0 $S0 aether $MM0${good:+ $good}" "$(dmsetup table g)"
        dmsetup remove g
    else t_fail "table '${good:-no opt args}' is accepted"; diag "$(cat /tmp/err)"; fi
done
dmsetup create g --table "0 $S0 aether $N0 16 phi 0.5 epsilon 0.25 lambda1 3 lambda2 -4.5 lambda3 0.75 bias -2.25 learning_rate 0.125 enabled 0"
t_eq "all 8 table keys take effect" "$(for p in $TUNABLES; do printf '%s=%s ' $p "$(good1 $p)"; done)" "$(tunables g)"
dmsetup remove g

sec "tuning: table reload and rename keep debugfs in step"
n0=$(alines)
t_check "dmsetup reload t0 (epsilon 0.75) + resume" sh -c "dmsetup reload t0 --table '0 $S0 aether $N0 2 epsilon 0.75' && dmsetup resume t0"
t_eq "after reload: table shows the new args" "0 $S0 aether $MM0 2 epsilon 0.75" "$(dmsetup table t0)"
t_eq "after reload: message get epsilon is 0.75" 0.75 "$(mget t0 epsilon)"
t_eq "after reload: debugfs $DBG/t0/epsilon reads 0.75" 0.75 "$(dget t0 epsilon)"
dmesg | tail -n 5 | grep -i 'already present' | sed 's/^/#   dmesg: /'
dmsetup remove t0
# Rename. The directory is the device's dm-N, which a rename cannot change;
# the link with its dmsetup name follows on the device's next load or resume
# (device-mapper tells targets nothing about renames), and until then still
# leads to the same device.
dmsetup create rn --table "0 $S0 aether $N0"
RN=$(dm_blkdev rn)
t_check "debugfs: $DBG/$RN is a directory, $DBG/rn a link to it" \
    sh -c "test -d $DBG/$RN -a ! -L $DBG/$RN -a -L $DBG/rn && test \"\$(readlink $DBG/rn)\" = $RN"
t_check "rename rn -> rn2" dmsetup rename rn rn2
t_eq "after rename: the old link still leads to the same device (write there, read via rn2)" 0.5 \
    "$(echo 0.5 > $DBG/rn/epsilon; mget rn2 epsilon)"
t_eq "after rename: $DBG/$RN/epsilon reads the same value" 0.5 "$(cat $DBG/$RN/epsilon)"
t_check "after rename + resume: the link is $DBG/rn2 -> $RN, and $DBG/rn is gone" \
    sh -c "dmsetup suspend rn2 && dmsetup resume rn2 && test \"\$(readlink $DBG/rn2)\" = $RN && ! test -e $DBG/rn && ! test -L $DBG/rn"
dmsetup rename rn2 rn3
t_check "create a new 'rn' while the renamed 'rn3' has not moved its link" dmsetup create rn --table "0 $S1 aether $N1"
RN1=$(dm_blkdev rn)
t_eq "the new 'rn' takes the name over at once: $DBG/rn -> $RN1" "$RN1" "$(readlink $DBG/rn)"
(echo 0.25 > $DBG/rn/epsilon) 2>/dev/null
t_eq "the new 'rn' has its own debugfs dir (epsilon written there reads back via message)" 0.25 "$(mget rn epsilon)"
t_eq "and the renamed device kept its own value, in its own dir $DBG/$RN" "0.5 0.5" "$(mget rn3 epsilon) $(cat $DBG/$RN/epsilon)"
t_eq "debugfs holds the two dirs, the new link and rn3's not yet moved link rn2 -> $RN" \
    "$(printf '%s\n' $RN $RN1 rn rn2 | sort | tr '\n' ' ') $RN" "$(ls $DBG | sort | tr '\n' ' ') $(readlink $DBG/rn2)"
dmsetup suspend rn3 && dmsetup resume rn3
t_eq "after resume, the renamed device's link is $DBG/rn3 -> $RN, and rn2 is gone" "$RN" "$(readlink $DBG/rn3)$(ls $DBG | grep -x rn2)"
dmsetup remove rn
dmsetup remove rn3
t_eq "no aether debugfs dirs left after removing everything" "" "$(ls $DBG)"

# ================================================================ module parameters
sec "module parameters: defaults for new devices"
if [ ! -d $MP ]; then
    t_fail "module parameters exist in $MP"
else
    missing=""; for p in $TUNABLES; do [ -f $MP/$p ] || missing="$missing $p"; done
    t_eq "$MP has all 8 tunables" "" "$missing"
    mp_all() { for p in $TUNABLES; do printf '%s=%s ' "$p" "$(cat $MP/$p 2>&1)"; done; }
    orig=$(mp_all)
    dmsetup create m0 --table "0 $S0 aether $N0"
    t_eq "module parameter values equal a new device's values" "$orig" "$(tunables m0)"
    wf=""; for p in $TUNABLES; do (echo "$(good1 $p)" > $MP/$p) 2>/dev/null || wf="$wf $p"; done
    t_eq "writing a good value to every module parameter succeeds" "" "$wf"
    t_eq "module parameters read back what was written" "$(for p in $TUNABLES; do printf '%s=%s ' $p "$(good1 $p)"; done)" "$(mp_all)"
    dmsetup create m1 --table "0 $S1 aether $N1"
    t_eq "a device created afterwards starts with the new defaults" "$(mp_all)" "$(tunables m1)"
    t_eq "...and debugfs shows them too" "$(mp_all)" "$(dtunables m1)"
    t_eq "the existing device keeps its values" "$orig" "$(tunables m0)"
    dmsetup remove m1
    dmsetup create m1 --table "0 $S1 aether $N1 2 epsilon 0.5"
    t_eq "table args override module defaults (epsilon 0.5, lambda1 from the module)" "0.5 $(good1 lambda1)" "$(mget m1 epsilon) $(mget m1 lambda1)"
    dmsetup remove m1
    for p in $TUNABLES; do
        b=$(cat $MP/$p); acc=""
        for v in "" "$(outr $p)" $(garbage $p) "$LONG70"; do
            (echo "$v" > $MP/$p) 2>/dev/null && acc="$acc '$v'"
        done
        t_eq "module parameter $p refuses bad values and keeps $b" "$b" "$(cat $MP/$p)$acc"
    done
    for p in $TUNABLES; do echo "${orig#*$p=}" | cut -d' ' -f1 > $MP/$p; done
    t_eq "module parameters restored" "$orig" "$(mp_all)"
    dmsetup remove m0
fi

# ================================================================ two devices
sec "two devices at once with independent parameters"
t_check "create x0 on $N0 (epsilon 0.25)" dmsetup create x0 --table "0 $S0 aether $N0 2 epsilon 0.25"
t_check "create x1 on $N1 (epsilon 0.75)" dmsetup create x1 --table "0 $S1 aether $N1 2 epsilon 0.75"
t_eq "each has its table's epsilon" "0.25 0.75" "$(mget x0 epsilon) $(mget x1 epsilon)"
t_eq "debugfs has one dir (dm-N) and one link per device" "$(printf '%s\n' $(dm_blkdev x0) $(dm_blkdev x1) x0 x1 | sort | tr '\n' ' ')" "$(ls $DBG | sort | tr '\n' ' ')"
x1before=$(tunables x1)
msg x0 set lambda1 5
msg x0 set enabled 0
t_eq "set lambda1/enabled on x0 changes x0" "5 0" "$(mget x0 lambda1) $(mget x0 enabled)"
t_eq "...and not x1" "$x1before" "$(tunables x1)"
x0before=$(tunables x0)
echo 0.5 > $DBG/x1/phi
t_eq "debugfs phi on x1 changes x1" 0.5 "$(dget x1 phi)"
t_eq "...and not x0" "$x0before" "$(tunables x0)"
msg x0 reset_stats
msg x1 reset_stats
rd4k 32 /dev/mapper/x0
t_eq "I/O on x0 counts on x0 only" "32 0" "$(st x0 reads) $(st x1 reads)"
rd4k 8 /dev/mapper/x1
msg x0 reset_stats
t_eq "reset_stats on x0 leaves x1's counters" "0 8" "$(st x0 reads) $(st x1 reads)"
FR="--rw=randread --bs=4k --direct=1 --ioengine=io_uring --iodepth=8 --runtime=3 --time_based --output=/dev/null"
t_check "fio on x0 and x1 concurrently (3 s, QD8 each)" fio --name=a --filename=/dev/mapper/x0 $FR --name=b --filename=/dev/mapper/x1 $FR
t_check "both counted reads (x0 $(st x0 reads), x1 $(st x1 reads))" test "$(st x0 reads)" -gt 0 -a "$(st x1 reads)" -gt 8
t_eq "x0 (disabled) made no gate decisions" "0 0" "$(st x0 gate_open) $(st x0 gate_closed)"
t_eq "x1 (enabled) decided once per read" "$(st x1 reads)" $(($(st x1 gate_open) + $(st x1 gate_closed)))
X0D=$(dm_blkdev x0)
t_check "remove x0" dmsetup remove x0
t_check "x1 still answers after x0 is gone (message, debugfs, I/O)" sh -c "dmsetup message x1 0 get phi | grep -qx 0.5 && grep -qx 0.5 $DBG/x1/phi && dd if=/dev/mapper/x1 of=/dev/null bs=4k count=4 iflag=direct 2>/dev/null"
t_refuse "x0's debugfs dir $X0D and link are gone" test -e $DBG/$X0D -o -e $DBG/x0 -o -L $DBG/x0
t_check "remove x1" dmsetup remove x1

# ================================================================ lifetime
sec "lifetime"
dmsetup create l0 --table "0 $S0 aether $N0"
out=$(rmmod aether 2>&1); rc=$?
t_check "rmmod aether is refused while a device exists: $out" test $rc != 0
t_check "module still loaded" grep -q '^aether ' /proc/modules
exec 3</dev/mapper/l0
t_refuse "dmsetup remove is refused while the device is open" dmsetup remove l0
t_check "device still present and working" sh -c 'dmsetup status l0 >/dev/null && dd if=/dev/mapper/l0 of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null'
exec 3<&-
t_check "dmsetup remove succeeds once closed" dmsetup remove l0
t_refuse "its debugfs dir is gone" test -e $DBG/l0
dmsetup create l1 --table "0 $S0 aether $N0"
exec 4<$DBG/l1/stats
exec 5>$DBG/l1/epsilon
t_check "dmsetup remove succeeds with debugfs files held open" dmsetup remove l1
t_refuse "reading a stats fd held across removal fails" sh -c 'cat <&4 | grep -q reads'
t_refuse "writing an epsilon fd held across removal fails" sh -c 'echo 0.5 >&5'
exec 4<&- 5>&-
t_check "rmmod aether succeeds with no devices" rmmod aether
t_refuse "debugfs root is gone after rmmod" test -e $DBG
if [ -d /sys/module/aether ]; then t_fail "module sysfs dir is gone after rmmod"; else t_ok "module sysfs dir is gone after rmmod"; fi
if insmod $KO epsilon=0.25 enabled=0 2>/tmp/err; then
    dmsetup create p0 --table "0 $S0 aether $N0"
    t_eq "insmod epsilon=0.25 enabled=0: a new device starts with them" "0.25 0" "$(mget p0 epsilon) $(mget p0 enabled)"
    dmsetup remove p0; rmmod aether
else t_fail "insmod with module parameters epsilon=0.25 enabled=0"; diag "$(cat /tmp/err)"; fi
t_refuse "insmod with a bad module parameter (epsilon=5) is refused" insmod $KO epsilon=5
rmmod aether 2>/dev/null
sec "lifetime: 20 create/load/remove/unload cycles"
# One cycle; $step names the step that failed.
cycle() {
    step=insmod;  insmod $KO || return 1
    step=create;  dmsetup create cy --table "0 $S0 aether $N0 2 epsilon 0.5" || return 1
    step=debugfs; test -r $DBG/cy/stats || return 1
    step=io;      rd4k 16 /dev/mapper/cy && dd if=/tmp/rnd of=/dev/mapper/cy bs=4k count=1 seek=$((220 * 256)) oflag=direct 2>/dev/null || return 1
    step=count;   [ "$(st cy reads) $(st cy writes)" = "16 1" ] || return 1
    step=load;    dmsetup reload cy --table "0 $S0 aether $N0 2 epsilon 0.25" && dmsetup resume cy || return 1
    step=io2;     rd4k 4 /dev/mapper/cy || return 1
    step=remove;  dmsetup remove cy || return 1
    step=gone;    test ! -e $DBG/cy || return 1
    step=rmmod;   rmmod aether || return 1
    step=unloaded; ! grep -q '^aether ' /proc/modules
}
fails=""
i=1
while [ $i -le 20 ]; do
    if ! cycle; then
        fails="$fails $i:$step"; dmsetup remove cy 2>/dev/null; rmmod aether 2>/dev/null
    fi
    i=$((i + 1))
done
t_eq "20 insmod/create/io/reload/remove/rmmod cycles pass" "" "$fails"
t_refuse "module unloaded at the end" grep -q '^aether ' /proc/modules
echo "# aether logged $(( $(alines) - mark_start )) lines during the run"
sec "kernel log"
# device-mapper logs "dm_table_destroy: dm_put_device call missing for X" when
# a table is destroyed holding a device its target did not put (kernel_ext
# puts them in dtr).
t_eq "every underlying device was put in dtr (no 'dm_put_device call missing' in dmesg)" "" \
    "$(dmesg | grep 'dm_put_device call missing' | head -3)"
t_dmesg_clean "aether target tests"
t_done
