// SPDX-License-Identifier: GPL-2.0

//! Logging helpers the 6.12 `kernel` crate lacks.

use super::bindings;

/// Whether a rate-limited message may be printed now. Refusals of user input
/// are logged through this, from aether's own budget (the C shim's
/// `DEFINE_RATELIMIT_STATE`), so a loop of bad writes cannot flood the log.
pub(crate) fn ratelimit() -> bool {
    // SAFETY: `__ratelimit` on a static state, which it locks itself.
    unsafe { bindings::aether_ratelimit() }
}
