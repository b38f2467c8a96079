// SPDX-License-Identifier: GPL-2.0

//! Per-CPU I/O telemetry of one aether device.
//!
//! Each CPU counts into its own slot with relaxed atomic adds: no lock and no
//! cache line written by two CPUs on the per-bio path. `map` runs in process
//! context and `end_io` in (hard) interrupt context, which is why the slots are
//! atomics rather than plain integers. Readers sum the slots on demand.

use crate::aether_core::depth::LatencyHistogram;
use crate::kernel_ext::percpu::{per_cpu_struct, PerCpu};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use kernel::prelude::*;

/// Latency histogram buckets kept per CPU: bucket `i` counts completions that
/// took `[2^i, 2^(i+1))` ns; the last bucket also takes everything slower.
pub(crate) const LAT_BUCKETS: usize = 36;

per_cpu_struct! {
    /// One CPU's counters.
    pub(crate) struct CpuCounters {
        counters: [AtomicU64; Counter::COUNT],
        read_latency: [AtomicU64; LAT_BUCKETS],
        write_latency: [AtomicU64; LAT_BUCKETS],
    }
}

/// The counters, in the order `dmsetup status` and `stats` print them.
#[derive(Clone, Copy)]
pub(crate) enum Counter {
    Reads,
    ReadBytes,
    Writes,
    WriteBytes,
    Flushes,
    Discards,
    Other,
    ReadErrors,
    WriteErrors,
    GateOpen,
    GateClosed,
    GateSectors,
    GateSkipped,
    PrefetchIssued,
    PrefetchBytes,
    PrefetchHits,
    PrefetchLate,
    PrefetchWasted,
    PrefetchErrors,
    PrefetchStaleDropped,
    PrefetchAllocFailures,
    CacheReadHits,
    CacheInvalidated,
    FeedbackDropped,
}

impl Counter {
    pub(crate) const COUNT: usize = Counter::FeedbackDropped as usize + 1;
    pub(crate) const ALL: [Counter; Self::COUNT] = [
        Counter::Reads,
        Counter::ReadBytes,
        Counter::Writes,
        Counter::WriteBytes,
        Counter::Flushes,
        Counter::Discards,
        Counter::Other,
        Counter::ReadErrors,
        Counter::WriteErrors,
        Counter::GateOpen,
        Counter::GateClosed,
        Counter::GateSectors,
        Counter::GateSkipped,
        Counter::PrefetchIssued,
        Counter::PrefetchBytes,
        Counter::PrefetchHits,
        Counter::PrefetchLate,
        Counter::PrefetchWasted,
        Counter::PrefetchErrors,
        Counter::PrefetchStaleDropped,
        Counter::PrefetchAllocFailures,
        Counter::CacheReadHits,
        Counter::CacheInvalidated,
        Counter::FeedbackDropped,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Counter::Reads => "reads",
            Counter::ReadBytes => "read_bytes",
            Counter::Writes => "writes",
            Counter::WriteBytes => "write_bytes",
            Counter::Flushes => "flushes",
            Counter::Discards => "discards",
            Counter::Other => "other_bios",
            Counter::ReadErrors => "read_errors",
            Counter::WriteErrors => "write_errors",
            Counter::GateOpen => "gate_open",
            Counter::GateClosed => "gate_closed",
            Counter::GateSectors => "gate_sectors",
            // Reads whose gate evaluation was skipped: another CPU held the
            // gate (the read is still served or passed down).
            Counter::GateSkipped => "gate_skipped",
            // Prefetch counters are in 4 KiB blocks unless named bytes.
            Counter::PrefetchIssued => "prefetch_issued",
            Counter::PrefetchBytes => "prefetch_bytes",
            Counter::PrefetchHits => "prefetch_hits",
            Counter::PrefetchLate => "prefetch_late",
            Counter::PrefetchWasted => "prefetch_wasted",
            Counter::PrefetchErrors => "prefetch_errors",
            Counter::PrefetchStaleDropped => "prefetch_stale_dropped",
            Counter::PrefetchAllocFailures => "prefetch_alloc_failures",
            // Demand reads completed from RAM.
            Counter::CacheReadHits => "cache_read_hits",
            Counter::CacheInvalidated => "cache_invalidated",
            Counter::FeedbackDropped => "feedback_dropped",
        }
    }
}

/// Which latency histogram a completion goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

/// Bucket of a latency in ns: `floor(log2(ns))`, clamped to the table.
pub(crate) fn latency_bucket(ns: u64) -> usize {
    LatencyHistogram::bucket_of(ns).min(LAT_BUCKETS - 1)
}

/// A device's telemetry.
pub(crate) struct Telemetry {
    cpus: PerCpu<CpuCounters>,
}

impl Telemetry {
    pub(crate) fn new() -> Result<Self> {
        Ok(Self { cpus: PerCpu::new()? })
    }

    /// Adds `n` to `c` on this CPU.
    pub(crate) fn add(&self, c: Counter, n: u64) {
        if let Some(slot) = self.cpus.this_cpu().counters.get(c as usize) {
            slot.fetch_add(n, Relaxed);
        }
    }

    /// Records one completion's latency on this CPU.
    pub(crate) fn record_latency(&self, dir: Direction, ns: u64) {
        let cpu = self.cpus.this_cpu();
        let hist = match dir {
            Direction::Read => &cpu.read_latency,
            Direction::Write => &cpu.write_latency,
        };
        if let Some(slot) = hist.get(latency_bucket(ns)) {
            slot.fetch_add(1, Relaxed);
        }
    }

    /// Sums every CPU's slots.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        self.cpus.for_each_cpu(|cpu| {
            for (sum, c) in s.counters.iter_mut().zip(cpu.counters.iter()) {
                *sum = sum.wrapping_add(c.load(Relaxed));
            }
            for (sum, c) in s.read_latency.iter_mut().zip(cpu.read_latency.iter()) {
                *sum = sum.wrapping_add(c.load(Relaxed));
            }
            for (sum, c) in s.write_latency.iter_mut().zip(cpu.write_latency.iter()) {
                *sum = sum.wrapping_add(c.load(Relaxed));
            }
        });
        s
    }

    /// Zeroes every CPU's slots (`dmsetup message ... reset_stats`). Updates
    /// racing with the reset may survive it; each is counted at most once.
    pub(crate) fn reset(&self) {
        self.cpus.for_each_cpu(|cpu| {
            let all = Iterator::chain(Iterator::chain(cpu.counters.iter(), cpu.read_latency.iter()), cpu.write_latency.iter());
            all.for_each(|c| c.store(0, Relaxed));
        });
    }
}

/// Telemetry summed over all CPUs at one moment.
#[derive(Clone, Copy)]
pub(crate) struct Snapshot {
    pub(crate) counters: [u64; Counter::COUNT],
    pub(crate) read_latency: [u64; LAT_BUCKETS],
    pub(crate) write_latency: [u64; LAT_BUCKETS],
}

impl Default for Snapshot {
    fn default() -> Self {
        Self { counters: [0; Counter::COUNT], read_latency: [0; LAT_BUCKETS], write_latency: [0; LAT_BUCKETS] }
    }
}

impl Snapshot {
    pub(crate) fn get(&self, c: Counter) -> u64 {
        self.counters.get(c as usize).copied().unwrap_or(0)
    }

    /// Upper bound (ns) of the bucket holding quantile `num/den` of `hist`, or
    /// 0 with no samples.
    pub(crate) fn quantile_ns(hist: &[u64; LAT_BUCKETS], num: u64, den: u64) -> u64 {
        let total: u64 = hist.iter().fold(0u64, |a, &b| a.saturating_add(b));
        if total == 0 || den == 0 {
            return 0;
        }
        // Rank of the sample we want, 1-based, rounded up.
        let rank = (total.saturating_mul(num).saturating_add(den - 1) / den).max(1);
        let mut seen = 0u64;
        for (i, &n) in hist.iter().enumerate() {
            seen = seen.saturating_add(n);
            if seen >= rank {
                return 1u64.checked_shl(i as u32 + 1).unwrap_or(u64::MAX);
            }
        }
        u64::MAX
    }

    /// Writes the counters and read/write p50/p99 as `key<sep>value` items,
    /// each followed by `end` (`"="`/`" "` for `dmsetup status`, `": "`/`"\n"`
    /// for debugfs `stats`).
    pub(crate) fn write_fields(&self, w: &mut dyn core::fmt::Write, sep: &str, end: &str) -> core::fmt::Result {
        for c in Counter::ALL {
            write!(w, "{}{}{}{}", c.name(), sep, self.get(c), end)?;
        }
        for (name, hist) in [("read", &self.read_latency), ("write", &self.write_latency)] {
            write!(w, "{}_p50_us{}{}{}", name, sep, Self::quantile_ns(hist, 50, 100) / 1000, end)?;
            write!(w, "{}_p99_us{}{}{}", name, sep, Self::quantile_ns(hist, 99, 100) / 1000, end)?;
        }
        Ok(())
    }

    /// Writes both histograms, one non-empty bucket per line:
    /// `read <lo_ns>-<hi_ns> <count>`.
    pub(crate) fn write_histograms(&self, w: &mut dyn core::fmt::Write) -> core::fmt::Result {
        writeln!(w, "# op lo_ns-hi_ns count (log2 buckets)")?;
        for (name, hist) in [("read", &self.read_latency), ("write", &self.write_latency)] {
            for (i, &n) in hist.iter().enumerate().filter(|(_, &n)| n != 0) {
                let lo = 1u64 << i;
                writeln!(w, "{} {}-{} {}", name, lo, lo.saturating_mul(2).saturating_sub(1), n)?;
            }
        }
        Ok(())
    }
}
