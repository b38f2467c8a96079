// SPDX-License-Identifier: GPL-2.0

//! aether: an adaptive NVMe prefetcher, built as a device-mapper target.
//!
//! The crate root holds only module lines and `module!`. Where to look:
//! - `module.rs`: load and unload (target registration, the debugfs root).
//! - `target.rs`: the device-mapper target; `map` is where every bio enters and
//!   where the gate decides, `end_io` where it completes.
//! - `prefetch.rs`: prefetch reads, from the gate's decision to cached pages;
//!   `PrefetchRead::complete` is where a prefetch completes.
//! - `block_cache.rs`: the prefetch cache (aether-core's index over pages).
//! - `feedback.rs`: latencies and outcomes queued per CPU for the engine.
//! - `devices.rs`: one debugfs directory per mapped device, across reloads.
//! - `telemetry.rs`: per-CPU counters and latency histograms.
//! - `tuning.rs`, `debugfs_files.rs`, `params.rs`: debugfs, `dmsetup message`
//!   and module parameters, all through one parser.
//! - `../kernel_ext/`: the thin safe layer over C APIs 6.12's `kernel` crate lacks;
//!   all `unsafe` lives there.
//! - `../aether-core/`: the prefetch algorithm, shared unchanged with the host tools.
//! - `kunit_tests.rs`: KUnit suites that run when the module loads.

#[path = "../kernel_ext/mod.rs"]
mod kernel_ext;

// The host crate's files, compiled unchanged. Its `#![no_std]` is meaningful only
// as a crate root, and its public API is crate-internal here.
#[allow(unused_attributes, unused_imports, unreachable_pub, dead_code)]
#[path = "../aether-core/src/lib.rs"]
mod aether_core;

mod block_cache;
mod debugfs_files;
mod devices;
mod feedback;
mod kunit_tests;
mod module;
mod params;
mod prefetch;
mod target;
mod telemetry;
mod tuning;

use kernel::prelude::*;
use module::AetherModule;

module! {
    type: AetherModule,
    name: "aether",
    author: "aether developers",
    description: "Adaptive NVMe prefetcher: a device-mapper target with a learned prefetch gate",
    license: "GPL",
}
