// SPDX-License-Identifier: GPL-2.0

//! Safe abstractions over the C APIs that the 6.12 `kernel` crate does not cover.
//!
//! Every `unsafe` block of aether lives below this directory: the crate root
//! denies `unsafe_code` and allows it only on this module, so the compiler
//! enforces it. Driver-facing macros expand to safe code only. The shapes follow
//! upstream's later abstractions (6.18's `debugfs::Dir`, 6.15's KUnit suites,
//! the percpu series' `PerCpu`, the block layer's `Bio`), so the driver can move
//! to them on newer kernels by changing imports.

pub(crate) mod bindings;
pub(crate) mod bio;
pub(crate) mod bio_pool;
pub(crate) mod debugfs;
pub(crate) mod dm;
mod entry;
pub(crate) mod fmt;
#[cfg(aether_kunit)]
pub(crate) mod kunit;
pub(crate) mod moduleparam;
pub(crate) mod page;
pub(crate) mod percpu;
pub(crate) mod print;
pub(crate) mod resubmit;
pub(crate) mod sched;
pub(crate) mod shrinker;
pub(crate) mod sync;
pub(crate) mod time;
pub(crate) mod trace;
#[cfg(aether_kunit)]
pub(crate) mod vfs;
pub(crate) mod zeroable;
