#!/usr/bin/env bash
# Builds aether.ko and aether_test.ko (the KUnit suites) at the repo root, out
# of tree via Kbuild.
#   scripts/build-module.sh            against aether's cached test kernel
#   scripts/build-module.sh KDIR       against any 6.12 build tree with CONFIG_RUST
#   scripts/build-module.sh --clean [KDIR]   remove the previous build's objects first
# Override RUSTC/BINDGEN in the environment to match a foreign kernel's toolchain.
#
# AETHER_KERNEL_FLAVOR=debug builds against the debug kernel instead, in a
# mirror of the sources under build/module-debug/ (Kbuild writes objects next
# to the sources, and the two kernels' objects must not mix); the module is
# build/module-debug/aether.ko. `--print` prints the .ko path on stdout.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

clean=0 print=0
while [ $# -gt 0 ]; do
    case $1 in
        --clean) clean=1; shift ;;
        --print) print=1; shift ;;
        *) break ;;
    esac
done
kdir=${1:-}
flavor=${AETHER_KERNEL_FLAVOR:-default}
run_setup
[ -n "$kdir" ] || kdir=$("$AETHER_ROOT/scripts/build-kernel.sh" --dir)
[ -f "$kdir/Makefile" ] || die "KDIR=$kdir is not a kernel build tree (no Makefile)"
grep -qx 'CONFIG_RUST=y' "$kdir/.config" 2>/dev/null || die "KDIR=$kdir: kernel not built with CONFIG_RUST=y"

# Kbuild writes objects into the checkout: one module build at a time.
exec 8>"$AETHER_ROOT/.aether-module.lock"
flock 8
mdir=$AETHER_ROOT
if [ "$flavor" != default ]; then
    mdir=$AETHER_ROOT/build/module-$flavor
    mkdir -p "$mdir"
    # Mirror only the sources Kbuild reads; tar keeps mtimes so rebuilds stay incremental.
    tar -C "$AETHER_ROOT" --exclude='*.o' --exclude='.*.cmd' --exclude='*.o.d' --exclude='*.rmeta' \
        --exclude='*.ko' --exclude='*.mod*' -cf - Kbuild rust | tar -C "$mdir" -xf -
fi
kmake=(make -C "$kdir" LLVM=1 RUSTC="${RUSTC:-$KRUSTC}" RUSTDOC="${RUSTDOC:-$KRUSTDOC}"
       BINDGEN="${BINDGEN:-$KBINDGEN}" M="$mdir")
if [ $clean = 1 ]; then
    "${kmake[@]}" clean >&2
    rm -rf "$mdir/build/kernel_ext"
fi
"${kmake[@]}" -j"$(nproc)" modules >&2
log "built $mdir/aether.ko and aether_test.ko against $kdir"
[ "$print" = 0 ] || echo "$mdir/aether.ko"
