#!/usr/bin/env bash
# `make demo`: installs what is missing, builds the kernel (cached) and
# aether.ko, boots QEMU with an emulated NVMe and shows aether at work.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
"$AETHER_ROOT/scripts/build-module.sh"
log "booting QEMU (TCG) with an emulated NVMe disk"
"$AETHER_ROOT/scripts/qemu-run.sh" --timeout 600 "$AETHER_ROOT/scripts/guest/demo.sh"
