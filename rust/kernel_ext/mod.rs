// SPDX-License-Identifier: GPL-2.0

//! Safe abstractions over the C APIs that the 6.12 `kernel` crate does not cover.
//!
//! Every `unsafe` block of aether lives below this directory. The shapes follow
//! upstream's later abstractions (6.18's `debugfs::Dir`, 6.15's KUnit suites,
//! the percpu series' `PerCpu`, the block layer's `Bio`), so the driver can move
//! to them on newer kernels by changing imports.

pub(crate) mod bindings;
pub(crate) mod bio;
pub(crate) mod bio_pool;
pub(crate) mod debugfs;
pub(crate) mod dm;
pub(crate) mod fmt;
pub(crate) mod kunit;
pub(crate) mod moduleparam;
pub(crate) mod page;
pub(crate) mod percpu;
pub(crate) mod print;
pub(crate) mod shrinker;
pub(crate) mod sync;
pub(crate) mod time;
pub(crate) mod trace;
pub(crate) mod vfs;
pub(crate) mod zeroable;
