#!/usr/bin/env bash
# Installs everything aether needs on a fresh Debian 12 machine. Idempotent:
# when everything is present it only checks and returns (a few seconds).
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
# Nested scripts of one `make` run check once.
[ -z "${AETHER_SETUP_DONE:-}" ] || exit 0

APT_PKGS=(
    "$KERNEL_SRC_PKG=$KERNEL_SRC_VER"
    "rustc-web=$RUSTC_WEB_VER" "rust-web-src=$RUSTC_WEB_VER" "libstd-rust-web-dev=$RUSTC_WEB_VER"
    clang lld llvm libclang-dev bc flex bison libelf-dev libssl-dev cpio xz-utils kmod
    make python3 python3-matplotlib qemu-system-x86 busybox-static fio dmsetup
)

missing=()
for spec in "${APT_PKGS[@]}"; do
    name=${spec%%=*}
    want=${spec#*=}; [ "$want" = "$spec" ] && want=
    have=$(dpkg-query -W -f='${db:Status-Abbrev}${Version}' "$name" 2>/dev/null || true)
    case $have in
        ii*) [ -z "$want" ] || [ "${have#ii }" = "$want" ] || [ "${have:3}" = "$want" ] || missing+=("$spec") ;;
        *) missing+=("$spec") ;;
    esac
done

if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "need root to install: ${missing[*]}"
    log "installing ${#missing[@]} Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! "$KBINDGEN" --version 2>/dev/null | grep -qx "bindgen $BINDGEN_VER"; then
    command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) for the host crates"
    log "installing bindgen-cli $BINDGEN_VER from crates.io (about a minute)"
    cargo install -q bindgen-cli --version "$BINDGEN_VER" --locked --force
fi

"$KRUSTC" --version | grep -q '^rustc 1\.85\.' || die "$KRUSTC is not rustc 1.85: $("$KRUSTC" --version)"
[ -d /usr/lib/rustlib/src/rust/library/core ] || die "rust-src missing under /usr/lib/rustlib/src/rust"
log "toolchain: $KERNEL_SRC_PKG $(dpkg-query -W -f='${Version}' "$KERNEL_SRC_PKG"), $("$KRUSTC" --version), $("$KBINDGEN" --version)"
