// SPDX-License-Identifier: GPL-2.0

//! Logging helpers the 6.12 `kernel` crate lacks.

use super::bindings;

/// Whether a rate-limited message may be printed now (`printk_ratelimit()`):
/// refusals of user input are logged through this, so a loop of bad writes
/// cannot flood the log.
pub(crate) fn ratelimit() -> bool {
    // SAFETY: `__printk_ratelimit` only reads the NUL-terminated name.
    unsafe { bindings::__printk_ratelimit(kernel::c_str!("aether").as_char_ptr()) != 0 }
}
