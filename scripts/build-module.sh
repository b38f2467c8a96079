#!/usr/bin/env bash
# Builds aether.ko and aether_test.ko (the KUnit suites) at the repo root, out
# of tree via Kbuild.
#   scripts/build-module.sh            against aether's cached test kernel
#   scripts/build-module.sh KDIR       against any 6.12 build tree with CONFIG_RUST
#   scripts/build-module.sh --clean [KDIR]   remove the previous build's objects first
# Override RUSTC/BINDGEN in the environment to match a foreign kernel's toolchain.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

clean=0
if [ "${1:-}" = --clean ]; then clean=1; shift; fi
kdir=${1:-}
run_setup
[ -n "$kdir" ] || kdir=$("$AETHER_ROOT/scripts/build-kernel.sh" --dir)
[ -f "$kdir/Makefile" ] || die "KDIR=$kdir is not a kernel build tree (no Makefile)"
grep -qx 'CONFIG_RUST=y' "$kdir/.config" 2>/dev/null || die "KDIR=$kdir: kernel not built with CONFIG_RUST=y"

# Kbuild writes objects into the checkout: one module build at a time.
exec 8>"$AETHER_ROOT/.aether-module.lock"
flock 8
kmake=(make -C "$kdir" LLVM=1 RUSTC="${RUSTC:-$KRUSTC}" RUSTDOC="${RUSTDOC:-$KRUSTDOC}"
       BINDGEN="${BINDGEN:-$KBINDGEN}" M="$AETHER_ROOT")
if [ $clean = 1 ]; then
    "${kmake[@]}" clean >&2
    rm -rf "$AETHER_ROOT/build/kernel_ext"
fi
"${kmake[@]}" -j"$(nproc)" modules >&2
log "built $AETHER_ROOT/aether.ko and aether_test.ko against $kdir"
