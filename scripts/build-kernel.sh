#!/usr/bin/env bash
# Builds (or reuses) aether's Rust-enabled 6.12 test kernel in a cache outside
# the checkout. The cache key covers the kernel package version, the config
# fragment and the toolchain, so an unchanged rerun costs a stat.
#
#   scripts/build-kernel.sh            build if needed, print nothing on stdout
#   scripts/build-kernel.sh --image    ... then print the bzImage path
#   scripts/build-kernel.sh --dir      ... then print the build tree (KDIR)
#
# AETHER_KERNEL_FLAVOR=debug builds a second kernel in the same cache (its own
# key and tree): scripts/aether-debug.config layered on scripts/aether.config,
# i.e. KASAN, lockdep, kmemleak on, debug objects. Default flavor: "default".
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

run_setup

flavor=${AETHER_KERNEL_FLAVOR:-default}
fragments=("$AETHER_ROOT/scripts/aether.config")
case $flavor in
    default) ;;
    debug) fragments+=("$AETHER_ROOT/scripts/aether-debug.config") ;;
    *) die "unknown AETHER_KERNEL_FLAVOR=$flavor (use default or debug)" ;;
esac
key=$( { echo "$KERNEL_SRC_VER"; cat "${fragments[@]}"; "$KRUSTC" --version; "$KBINDGEN" --version; clang --version | head -1; } \
       | sha256sum | cut -c1-12)
# The default flavor keeps its historical tree name so existing caches stay warm.
if [ "$flavor" = default ]; then tag=$KERNEL_VERSION-$key; else tag=$KERNEL_VERSION-$flavor-$key; fi
bdir=$AETHER_CACHE/kbuild/$tag
# One build at a time per cache: a second caller waits for the first. A tree
# that is already built needs no lock (so a cached flavor is not held up by
# the other flavor's build).
src=$AETHER_CACHE/src/linux-$KERNEL_VERSION
mkdir -p "$AETHER_CACHE"
exec 9>"$AETHER_CACHE/.build.lock"
if [ -e "$bdir/.aether-built" ] && [ -e "$src/.aether-extracted" ]; then
    :
elif ! flock -n 9; then
    log "another kernel build is running in $AETHER_CACHE; waiting for it"
    flock 9
fi

if [ ! -e "$src/.aether-extracted" ]; then
    log "extracting /usr/src/$KERNEL_SRC_PKG.tar.xz to $src"
    rm -rf "$src.tmp" && mkdir -p "$src.tmp"
    tar -xJf "/usr/src/$KERNEL_SRC_PKG.tar.xz" -C "$src.tmp" --strip-components=1
    rm -rf "$src" && mv "$src.tmp" "$src" && touch "$src/.aether-extracted"
fi
have_ver=$(make -s -C "$src" kernelversion)
[ "$have_ver" = "$KERNEL_VERSION" ] || die "kernel source is $have_ver, expected $KERNEL_VERSION"

mapfile -t vars < <(kmake_vars)

if [ ! -e "$bdir/.aether-built" ]; then
    log "building $flavor kernel $KERNEL_VERSION (key $key) in $bdir; about 15 (default) or 16 (debug) minutes on 2 cores"
    mkdir -p "$bdir"
    cat "${fragments[@]}" > "$bdir/.config"
    make -s -C "$src" O="$bdir" "${vars[@]}" olddefconfig >/dev/null
    # Every option the fragment asks for must have survived olddefconfig.
    # A later fragment may turn an earlier "=y" off ("# CONFIG_X is not set").
    lost=$(cat "${fragments[@]}" | grep -E '^CONFIG_[A-Z0-9_]+=y$' | while read -r opt; do
        grep -q "^# ${opt%=y} is not set" "${fragments[@]}" && continue
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
    # Keep only the newest few build trees of this flavor.
    ls -1dt "$AETHER_CACHE"/kbuild/*/ 2>/dev/null \
        | if [ "$flavor" = default ]; then grep -v -- '-debug-'; else grep -- "-$flavor-"; fi \
        | tail -n +4 | xargs -r rm -rf
fi

case ${1:-} in
    --image) echo "$bdir/arch/x86/boot/bzImage" ;;
    --dir)   echo "$bdir" ;;
    --src)   echo "$src" ;;
    "") ;;
    *) die "unknown option $1 (use --image, --dir or --src)" ;;
esac
