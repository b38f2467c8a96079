# shellcheck shell=bash
# Shared settings for aether's scripts: pinned versions, cache layout, logging.
# Sourced, never run.

AETHER_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Pinned toolchain (see Documentation/admin-guide.rst, "What gets installed").
KERNEL_SRC_PKG=linux-source-6.12
KERNEL_SRC_VER=6.12.117-1~deb12u1
KERNEL_VERSION=6.12.117
RUSTC_WEB_VER=1.85.0+dfsg3-1~deb12u3
BINDGEN_VER=0.69.5

# The kernel must be built with Debian's rustc/rustdoc: rustup's have no
# rust-src, and rustup's rustdoc rejects 6.12's -Zno-jump-tables.
KRUSTC=/usr/bin/rustc
KRUSTDOC=/usr/bin/rustdoc
KBINDGEN=${KBINDGEN:-$HOME/.cargo/bin/bindgen}

AETHER_CACHE=${AETHER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aether}

# Scripts run setup.sh first; the ones they call need not repeat it.
run_setup() { "$AETHER_ROOT/scripts/setup.sh" && export AETHER_SETUP_DONE=1; }

log()  { printf '[aether] %s\n' "$*" >&2; }
die()  { printf '[aether] error: %s\n' "$*" >&2; exit 1; }

# Make variables every kernel/Kbuild invocation needs.
kmake_vars() {
    printf '%s\n' LLVM=1 "RUSTC=$KRUSTC" "RUSTDOC=$KRUSTDOC" "BINDGEN=$KBINDGEN"
}
