#!/usr/bin/env bash
# Builds (or reuses) aether's Rust-enabled 6.12 test kernel in a cache outside
# the checkout. The cache key covers the kernel package version, the config
# fragment and the toolchain, so an unchanged rerun costs a stat.
#
#   scripts/build-kernel.sh            build if needed, print nothing on stdout
#   scripts/build-kernel.sh --image    ... then print the bzImage path
#   scripts/build-kernel.sh --dir      ... then print the build tree (KDIR)
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

run_setup

# One build at a time per cache: a second caller waits for the first.
mkdir -p "$AETHER_CACHE"
exec 9>"$AETHER_CACHE/.build.lock"
if ! flock -n 9; then
    log "another kernel build is running in $AETHER_CACHE; waiting for it"
    flock 9
fi

src=$AETHER_CACHE/src/linux-$KERNEL_VERSION
if [ ! -e "$src/.aether-extracted" ]; then
    log "extracting /usr/src/$KERNEL_SRC_PKG.tar.xz to $src"
    rm -rf "$src.tmp" && mkdir -p "$src.tmp"
    tar -xJf "/usr/src/$KERNEL_SRC_PKG.tar.xz" -C "$src.tmp" --strip-components=1
    rm -rf "$src" && mv "$src.tmp" "$src" && touch "$src/.aether-extracted"
fi
have_ver=$(make -s -C "$src" kernelversion)
[ "$have_ver" = "$KERNEL_VERSION" ] || die "kernel source is $have_ver, expected $KERNEL_VERSION"

fragment=$AETHER_ROOT/scripts/aether.config
key=$( { echo "$KERNEL_SRC_VER"; cat "$fragment"; "$KRUSTC" --version; "$KBINDGEN" --version; clang --version | head -1; } \
       | sha256sum | cut -c1-12)
bdir=$AETHER_CACHE/kbuild/$KERNEL_VERSION-$key
mapfile -t vars < <(kmake_vars)

if [ ! -e "$bdir/.aether-built" ]; then
    log "building kernel $KERNEL_VERSION (key $key) in $bdir; about 8 minutes on 2 cores"
    mkdir -p "$bdir"
    cp "$fragment" "$bdir/.config"
    make -s -C "$src" O="$bdir" "${vars[@]}" olddefconfig >/dev/null
    # Every option the fragment asks for must have survived olddefconfig.
    lost=$(grep -E '^CONFIG_[A-Z0-9_]+=y$' "$fragment" | while read -r opt; do
        grep -qx "$opt" "$bdir/.config" || echo "${opt%=y}"; done)
    [ -z "$lost" ] || die "olddefconfig dropped: $(echo $lost) (is the Rust toolchain usable? try 'make -C $src LLVM=1 RUSTC=$KRUSTC rustavailable')"
    jobs=$(( $(nproc) + 1 ))
    start=$SECONDS
    make -C "$src" O="$bdir" "${vars[@]}" -j"$jobs" bzImage modules >"$bdir/build.log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 20
        n=$(grep -cE '^\s+(CC|RUSTC|AS|LD|AR|BINDGEN)' "$bdir/build.log" || true)
        log "kernel build: $((SECONDS - start))s, $n steps, at: $(tail -1 "$bdir/build.log" | cut -c1-70)"
    done
    if ! wait "$pid"; then
        tail -30 "$bdir/build.log" >&2
        die "kernel build failed; full log: $bdir/build.log"
    fi
    echo "$((SECONDS - start))" > "$bdir/.aether-built"
    log "kernel built in $((SECONDS - start))s"
    # Keep only the newest few build trees.
    ls -1dt "$AETHER_CACHE"/kbuild/*/ 2>/dev/null | tail -n +4 | xargs -r rm -rf
fi

case ${1:-} in
    --image) echo "$bdir/arch/x86/boot/bzImage" ;;
    --dir)   echo "$bdir" ;;
    --src)   echo "$src" ;;
    "") ;;
    *) die "unknown option $1 (use --image, --dir or --src)" ;;
esac
