// SPDX-License-Identifier: GPL-2.0

//! Clocks.

use super::bindings;

/// Monotonic time in nanoseconds (`ktime_get()`), usable in any context.
pub(crate) fn ktime_get_ns() -> i64 {
    // SAFETY: Reading the monotonic clock has no preconditions.
    unsafe { bindings::ktime_get() }
}
