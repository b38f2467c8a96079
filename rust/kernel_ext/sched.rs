// SPDX-License-Identifier: GPL-2.0

//! Scheduling helpers.

use super::bindings;

/// Lets other tasks run if this one has used its share (`cond_resched()`).
/// Process context only, with no spinlock held.
pub(crate) fn cond_resched() {
    // SAFETY: `cond_resched` may sleep; callers are in process context and
    // hold no spinlock (documented precondition; it is not unsafe to break,
    // the kernel warns).
    unsafe { bindings::aether_cond_resched() };
}
