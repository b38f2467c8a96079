#!/usr/bin/env bash
# `make test`: host crate tests, aether.ko's KUnit suites and the integration
# jobs in QEMU. Ends with one line "N passed, N failed, N skipped" (skipped:
# KUnit cases that reported SKIP); exits non-zero when anything failed or did
# not run.
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
out=$AETHER_ROOT/build/test
rm -rf "$out"; mkdir -p "$out"
passed=0 failed=0 skipped=0
pass() { passed=$((passed + $1)); }
summary() { echo "$passed passed, $failed failed, $skipped skipped"; }
fail() { failed=$((failed + $1)); [ -z "${2:-}" ] || log "FAILED: $2"; }
started=$SECONDS

run_setup || { fail 1 "setup"; summary; exit 1; }

# 1. Host crates.
log "cargo test (host crates)"
(cd "$AETHER_ROOT" && cargo test --workspace --color never 2>&1) | tee "$out/cargo.log" | grep -E '^test result|panicked|error(\[|:)' >&2
crc=${PIPESTATUS[0]}
read -r cp cf < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
                       END { print p + 0, f + 0 }' "$out/cargo.log")
pass "$cp"; fail "$cf"
[ "$crc" = 0 ] || [ "$cf" != 0 ] || fail 1 "cargo test exited $crc (build error?) - see $out/cargo.log"

# Host script tests (scripts/tests: plot-bench.py), with Debian's python3 and python3-matplotlib
# (setup.sh installs it; the python3 first on PATH may be another one). A skipped test counts as failed.
log "python tests (scripts/tests)"
(cd "$AETHER_ROOT" && /usr/bin/python3 -m unittest discover -s scripts/tests -v) > "$out/python.log" 2>&1
prc=$?
read -r pn pf < <(awk '/^Ran [0-9]+ tests? in/ { n = $2 }
    /^(OK|FAILED)( \(|$)/ { s = $0
        while (match(s, /(failures|errors|skipped|unexpected successes)=[0-9]+/)) {
            split(substr(s, RSTART, RLENGTH), kv, "="); f += kv[2]; s = substr(s, RSTART + RLENGTH) } }
    END { print n + 0, f + 0 }' "$out/python.log")
grep -E '^(FAIL|ERROR): |skipped ' "$out/python.log" | sed 's/^/[python] /' >&2
pass $((pn - pf)); fail "$pf"
if [ "$pn" = 0 ] || { [ "$prc" != 0 ] && [ "$pf" = 0 ]; }; then
    fail 1 "python tests exited $prc after $pn tests - see $out/python.log"
fi
log "[python] $((pn - pf)) passed, $pf failed"

# 2. aether.ko and aether_test.ko (builds the cached kernel first if needed),
# from clean, so that the warning check below sees every file compiled.
if ! "$AETHER_ROOT/scripts/build-module.sh" --clean > "$out/build.log" 2>&1; then
    tail -20 "$out/build.log" >&2
    fail 1 "building aether.ko - see $out/build.log"
    summary; exit 1
fi
pass 1
# Kernel code builds warning-free: rustc lints, objtool (e.g. an unknown
# noreturn panic path) and modpost. The build must have compiled both crates.
if ! [ "$(grep -cE '^ +RUSTC \[M\] .*/rust/aether/aether(_test)?_main\.o$' "$out/build.log")" = 2 ]; then
    fail 1 "the module build did not compile both crates from clean - see $out/build.log"
elif grep -iE '(^|: )warning' "$out/build.log" | grep -v '^\[aether\]' >&2; then
    fail 1 "aether.ko build printed warnings - see $out/build.log"
else
    pass 1
fi
# aether.ko carries no test code: it must load on kernels without KUnit.
if nm -u "$AETHER_ROOT/aether.ko" | grep -i kunit >&2; then
    fail 1 "aether.ko needs KUnit symbols (above)"
else
    pass 1
fi
ksrc=$("$AETHER_ROOT/scripts/build-kernel.sh" --src)

# Counts a guest job's TAP lines and its KUnit KTAP (parsed by the kernel's own
# tools/testing/kunit/kunit.py). A job that did not finish, or whose TAP plan
# (its closing "1..N") is missing or does not match its results, counts as a
# failure.
count_job() {
    local name=$1 rc=$2 logf=$3
    local p f tap=$out/$name.tap
    # The job's own TAP lines; KUnit's KTAP blocks are counted separately below.
    sed '/^@@KTAP-BEGIN /,/^@@KTAP-END@@$/d' "$logf" | grep -E '^(not )?ok [0-9]+ ' > "$tap"
    p=$(grep -c '^ok ' "$tap"); f=$(grep -c '^not ok ' "$tap")
    grep '^not ok ' "$tap" | sed "s/^/[$name] /" >&2
    pass "$p"; fail "$f"
    local plan
    plan=$(sed '/^@@KTAP-BEGIN /,/^@@KTAP-END@@$/d' "$logf" | sed -n 's/^1\.\.\([0-9][0-9]*\)$/\1/p' | tail -1)
    if [ -z "$plan" ]; then fail 1 "$name: no TAP plan (1..N): the job stopped early - see $logf"
    elif [ "$plan" != $((p + f)) ]; then fail 1 "$name: TAP plan 1..$plan but $((p + f)) results - see $logf"; fi
    local n=0
    while IFS= read -r suite; do
        n=$((n + 1))
        sed -n "/^@@KTAP-BEGIN $suite@@\$/,/^@@KTAP-END@@\$/p" "$logf" | sed '1d;$d' > "$out/$name.$suite.ktap"
        python3 "$ksrc/tools/testing/kunit/kunit.py" parse --json="$out/$name.$suite.json" \
            "$out/$name.$suite.ktap" > "$out/$name.$suite.parsed" 2>&1
        read -r kp kf ks < <(python3 - "$out/$name.$suite.json" <<'PY'
import json, sys
def walk(t):
    p = f = s = 0
    for c in t.get("test_cases", []):
        if c["status"] == "PASS": p += 1
        elif c["status"] == "SKIP": s += 1
        else: f += 1
    for g in t.get("sub_groups", []):
        gp, gf, gs = walk(g); p += gp; f += gf; s += gs
    return p, f, s
try:
    p, f, s = walk(json.load(open(sys.argv[1])))
    print(p, f, s)
except Exception:
    print(0, 1, 0)
PY
)
        log "[$name] KUnit $suite: $kp passed, $kf failed, $ks skipped"
        [ "$kf" = 0 ] || sed 's/^/    /' "$out/$name.$suite.parsed" >&2
        pass "$kp"; fail "$kf"; skipped=$((skipped + ks))
    done < <(sed -n 's/^@@KTAP-BEGIN \(.*\)@@$/\1/p' "$logf")
    if [ "$rc" = 124 ] || [ "$rc" = 125 ]; then fail 1 "$name: guest did not finish (exit $rc) - see $logf"
    elif [ "$rc" != 0 ] && [ "$f" = 0 ]; then fail 1 "$name: job exited $rc"; fi
    log "[$name] TAP: $p passed, $f failed; KUnit suites: $n"
}

# 3. QEMU jobs: name, then qemu-run options. AETHER_KERNEL_FLAVOR picks the kernel and module.
run_job() {
    local name=$1; shift
    log "QEMU job $name"
    local t=$SECONDS
    "$AETHER_ROOT/scripts/qemu-run.sh" --quiet --log "$out/$name.console.log" "$@"
    count_job "$name" $? "$out/$name.console.log"
    log "[$name] took $((SECONDS - t))s"
}
run_job smoke --timeout 300 "$AETHER_ROOT/scripts/guest/smoke.sh"
run_job target --timeout 900 --nvme 2 "$AETHER_ROOT/scripts/guest/target-tests.sh"
run_job prefetch --timeout 900 --nvme 2 "$AETHER_ROOT/scripts/guest/prefetch-tests.sh"
# The trace events through tracefs, and through perf when the host has one.
perf_bin=(); [ -x /usr/bin/perf ] && perf_bin=(--bin /usr/bin/perf)
run_job trace --timeout 600 "${perf_bin[@]}" "$AETHER_ROOT/scripts/guest/trace-tests.sh"

# aether-part against two NVMe controllers behind an emulated intel-iommu.
if (cd "$AETHER_ROOT" && cargo build -q -p aether-part 2>"$out/part-build.log"); then
    run_job part --timeout 600 --iommu --nvme 2 --bin "$AETHER_ROOT/target/debug/aether-part" \
        "$AETHER_ROOT/scripts/guest/part-tests.sh"
else
    fail 1 "building aether-part - see $out/part-build.log"
fi

# aether-stat against the real debugfs files (the debug build cargo test made).
if (cd "$AETHER_ROOT" && cargo build -q -p aether-stat 2>"$out/stat-build.log"); then
    run_job stat --timeout 300 --bin "$AETHER_ROOT/target/debug/aether-stat" \
        --file "$AETHER_ROOT/Documentation/ABI/testing/debugfs-aether" "$AETHER_ROOT/scripts/guest/stat-tests.sh"
else
    fail 1 "building aether-stat - see $out/stat-build.log"
fi

# Hardening jobs (issue 12): fuzzed inputs, stalls below aether, teardown under load.
run_job fuzz --timeout 1800 --nvme 2 "$AETHER_ROOT/scripts/guest/fuzz-tests.sh"
run_job faults --timeout 900 --nvme 2 "$AETHER_ROOT/scripts/guest/faults-tests.sh"
run_job teardown --timeout 1200 --nvme 2 "$AETHER_ROOT/scripts/guest/teardown-tests.sh" 20
# Concurrency, trimmed: 4 vCPUs, 8 fio jobs with crc32c verify on 2 devices, one or two 30 s rounds
# (`make soak` runs 2M I/Os).
run_job concurrency --timeout 900 --smp 4 --nvme 2 "$AETHER_ROOT/scripts/guest/soak-tests.sh" 20000 2 30
# NVMe request timeouts below aether: a null-co controller whose requests take 5 s, under a 1 s
# block timeout (abort, controller reset). Default flavor only: it tests the nvme driver's
# timeout path under aether rather than aether's memory safety, and it costs ~90 s per run.
run_job timeout --timeout 600 --slow-nvme 5000 "$AETHER_ROOT/scripts/guest/timeout-tests.sh" 5000

# 4. The debug kernel flavor (KASAN, lockdep, kmemleak, debug objects; panic_on_warn): the module
# rebuilt against it, then a trimmed set: KUnit + smoke, the target and prefetch suites, a tenth
# of the fuzz inputs, the fault jobs, 10 teardown cycles and one 30 s concurrency round. (aether-part and aether-stat are host
# tools; their jobs do not change with the kernel's checkers.) AETHER_TEST_FLAVORS=default skips it.
if [[ " ${AETHER_TEST_FLAVORS:-default debug} " == *" debug "* ]]; then
    log "debug kernel flavor (building it if needed: ~16 min cold)"
    t=$SECONDS
    if AETHER_KERNEL_FLAVOR=debug "$AETHER_ROOT/scripts/build-module.sh" > "$out/build-debug.log" 2>&1; then
        pass 1
        log "debug kernel + module ready in $((SECONDS - t))s"
        export AETHER_KERNEL_FLAVOR=debug
        run_job debug-smoke --timeout 900 "$AETHER_ROOT/scripts/guest/smoke.sh"
        run_job debug-target --timeout 2400 --nvme 2 "$AETHER_ROOT/scripts/guest/target-tests.sh"
        run_job debug-prefetch --timeout 2400 --nvme 2 "$AETHER_ROOT/scripts/guest/prefetch-tests.sh"
        run_job debug-fuzz --timeout 2400 --nvme 2 "$AETHER_ROOT/scripts/guest/fuzz-tests.sh" 20261204 10
        run_job debug-faults --timeout 1800 --nvme 2 "$AETHER_ROOT/scripts/guest/faults-tests.sh"
        run_job debug-teardown --timeout 1800 --nvme 2 "$AETHER_ROOT/scripts/guest/teardown-tests.sh" 10
        run_job debug-concurrency --timeout 1800 --smp 4 --nvme 2 "$AETHER_ROOT/scripts/guest/soak-tests.sh" 2000 1 30
        unset AETHER_KERNEL_FLAVOR
    else
        tail -20 "$out/build-debug.log" >&2
        fail 1 "building the debug kernel flavor or aether.ko against it - see $out/build-debug.log"
    fi
fi

log "make test took $((SECONDS - started))s; logs in $out"
summary
[ "$failed" = 0 ]
