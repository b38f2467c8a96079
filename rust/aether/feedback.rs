// SPDX-License-Identifier: GPL-2.0

//! Completions and outcomes on their way to the engine.
//!
//! The engine lives under the gate lock, which IRQ context must not wait for.
//! Demand-read latencies (from `end_io`) and prefetch outcomes (from hits,
//! evictions, invalidations and prefetch completions, in any context) are
//! dropped into small per-CPU rings of atomics instead; whoever next holds
//! the gate lock drains them into the engine ([`Feedback::drain`]).
//!
//! A slot is claimed with a per-CPU `fetch_add` and written with `swap`, so
//! two producers on one CPU (a completion interrupting `map`) never lose
//! each other's events; an event overwritten before it was drained is
//! counted as dropped. The rings are sized for about 1 ms of traffic at
//! 30k IOPS per CPU, and the drain runs at least every millisecond of
//! activity.

use crate::aether_core::{Engine, Outcome, StreamId};
use crate::kernel_ext::percpu::{per_cpu_struct, PerCpu};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use kernel::prelude::*;

const EVENT_SLOTS: usize = 64;
const LATENCY_SLOTS: usize = 64;
/// Marks a written slot (an event or sample is never all zero with it).
const VALID: u64 = 1 << 63;

per_cpu_struct! {
    /// One CPU's rings.
    pub(crate) struct CpuFeedback {
        next_event: AtomicU64,
        events: [AtomicU64; EVENT_SLOTS],
        next_latency: AtomicU64,
        latencies: [AtomicU64; LATENCY_SLOTS],
    }
}

fn encode(stream: StreamId, outcome: Outcome, blocks: u32) -> u64 {
    let o = match outcome {
        Outcome::Timely => 0u64,
        Outcome::Late => 1,
        Outcome::Wasted => 2,
    };
    VALID | (u64::from(blocks.min(0xffff)) << 34) | (o << 32) | u64::from(stream.0)
}

fn decode(v: u64) -> (StreamId, Outcome, u32) {
    let outcome = match (v >> 32) & 3 {
        0 => Outcome::Timely,
        1 => Outcome::Late,
        _ => Outcome::Wasted,
    };
    (StreamId(v as u32), outcome, ((v >> 34) & 0xffff) as u32)
}

/// A device's feedback rings.
pub(crate) struct Feedback {
    cpus: PerCpu<CpuFeedback>,
}

impl Feedback {
    pub(crate) fn new() -> Result<Self> {
        Ok(Self { cpus: PerCpu::new()? })
    }

    /// Queues `blocks` prefetched blocks of `stream` ending as `outcome`.
    /// False if an undrained event was overwritten.
    pub(crate) fn outcome(&self, stream: StreamId, outcome: Outcome, blocks: u32) -> bool {
        let cpu = self.cpus.this_cpu();
        let k = cpu.next_event.fetch_add(1, Relaxed) as usize % EVENT_SLOTS;
        store(cpu.events.get(k), encode(stream, outcome, blocks))
    }

    /// Queues one demand read's device latency.
    /// False if an undrained sample was overwritten.
    pub(crate) fn latency(&self, ns: u64) -> bool {
        let cpu = self.cpus.this_cpu();
        let k = cpu.next_latency.fetch_add(1, Relaxed) as usize % LATENCY_SLOTS;
        store(cpu.latencies.get(k), VALID | ns.min(VALID - 1))
    }

    /// Moves everything queued into `engine`. Call with the gate lock held.
    pub(crate) fn drain(&self, engine: &mut Engine) {
        self.cpus.for_each_cpu(|cpu| {
            // Read before swapping: most slots are empty, and a swap would
            // take each line away from the CPU that writes it.
            for slot in cpu.latencies.iter().filter(|s| s.load(Relaxed) != 0) {
                let v = slot.swap(0, Relaxed);
                if v & VALID != 0 {
                    engine.record_latency(v & !VALID);
                }
            }
            for slot in cpu.events.iter().filter(|s| s.load(Relaxed) != 0) {
                let v = slot.swap(0, Relaxed);
                if v & VALID != 0 {
                    let (stream, outcome, blocks) = decode(v);
                    engine.on_feedback_blocks(stream, outcome, blocks);
                }
            }
        });
    }
}

/// Writes `v` into a ring slot; false if it held an undrained value.
fn store(slot: Option<&AtomicU64>, v: u64) -> bool {
    slot.map_or(true, |s| s.swap(v, Relaxed) & VALID == 0)
}
