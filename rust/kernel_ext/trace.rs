// SPDX-License-Identifier: GPL-2.0

//! aether's trace events (`rust/shim/aether_trace.h`), as safe functions.
//!
//! Each function calls the shim's wrapper around `trace_aether_*()`, whose
//! body is one static-key branch: while an event is off the branch is a
//! patched no-op, so a disabled event costs one direct call with integers
//! already at hand; no clock read, lock or allocation happens for it (the
//! prefetch latency is worked out inside the event). A
//! Rust-side `trace_*_enabled()` check would be a call too (the static key
//! is C's), so it would save nothing. Events may fire in any context.
//!
//! `dev` is the aether device's `dev_t` ([`super::dm::MappedDevice::devt`]);
//! `lba` is a sector inside the target.

use super::bindings;
use super::dm::BlkStatus;
use crate::aether_core::cache::BLOCK_SECTORS;

/// The gate's verdict on a demand read of `sectors` at `lba`: probability
/// `prob` (Q16), `depth` extents of `pf_sectors` sectors in all.
#[allow(clippy::too_many_arguments)]
pub(crate) fn decision(
    dev: u32,
    stream: u32,
    lba: u64,
    sectors: u32,
    prob: u32,
    depth: u32,
    pf_sectors: u64,
    prefetch: bool,
) {
    // SAFETY: Plain values; a trace event may fire in any context.
    unsafe { bindings::aether_trace_decision(dev, stream, lba, sectors, prob, depth, pf_sectors, prefetch) }
}

/// A prefetch read of `sectors` at `lba` was handed down (`errno == 0`) or
/// could not be (`errno < 0`).
pub(crate) fn prefetch_issue(dev: u32, lba: u64, sectors: u32, errno: i32) {
    // SAFETY: Plain values; a trace event may fire in any context.
    unsafe { bindings::aether_trace_prefetch_issue(dev, lba, sectors, errno) }
}

/// A prefetch read issued at `issued_ns` (`ktime_get_ns()`) completed. The
/// event reads the clock itself, so a disabled event costs no clock read.
pub(crate) fn prefetch_done(dev: u32, lba: u64, sectors: u32, status: BlkStatus, issued_ns: u64) {
    // SAFETY: Plain values; a trace event may fire in any context.
    unsafe { bindings::aether_trace_prefetch_done(dev, lba, sectors, status.raw(), issued_ns) }
}

/// 4 KiB blocks that `sectors` at `lba` touch.
fn blocks_spanned(lba: u64, sectors: u32) -> u32 {
    if sectors == 0 {
        return 0;
    }
    let last = (lba + u64::from(sectors) - 1) / BLOCK_SECTORS;
    (last - lba / BLOCK_SECTORS + 1).min(u64::from(u32::MAX)) as u32
}

/// A demand read's first `sectors` at `lba` were served from RAM.
pub(crate) fn hit(dev: u32, lba: u64, sectors: u32) {
    // SAFETY: Plain values; a trace event may fire in any context.
    unsafe { bindings::aether_trace_hit(dev, lba, sectors, blocks_spanned(lba, sectors)) }
}

/// A demand read of `sectors` at `lba` found `blocks` prefetched blocks still
/// in flight, late for the first time.
pub(crate) fn late(dev: u32, lba: u64, sectors: u32, blocks: u32) {
    // SAFETY: Plain values; a trace event may fire in any context.
    unsafe { bindings::aether_trace_late(dev, lba, sectors, blocks) }
}

/// A write of `sectors` at `lba` dropped `blocks` cached blocks.
pub(crate) fn invalidate(dev: u32, lba: u64, sectors: u32, blocks: u32) {
    // SAFETY: Plain values; a trace event may fire in any context.
    unsafe { bindings::aether_trace_invalidate(dev, lba, sectors, blocks) }
}
