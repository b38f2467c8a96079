// SPDX-License-Identifier: GPL-2.0

//! KUnit suites built into aether.ko. They run in the kernel when the module
//! loads (`make test` boots QEMU for that) and report KTAP.
//!
//! - `aether_kernel_ext`: the safe layer (debugfs lifetimes, per-CPU data,
//!   bounded formatting).
//! - `aether_tuning`: parameters through the real debugfs files (VFS writes
//!   and reads), the `dmsetup message` handler and module-parameter defaults.
//! - `aether_telemetry`: per-CPU aggregation, reset, latency quantiles and the
//!   `dmsetup status` format.
//! - `aether_core_in_kernel`: aether-core compiled into the kernel, with
//!   overflow checks on, at edge values.

use crate::aether_core::{Outcome, Params, StreamId};
use crate::block_cache::Cache;
use crate::kernel_ext::page::{CachePage, PageRun};
use crate::target::new_engine;
use crate::debugfs_files::DeviceFiles;
use crate::kernel_ext::debugfs::Dir;
use crate::kernel_ext::fmt::BufWriter;
use crate::kernel_ext::kunit::{kunit_expect, kunit_expect_eq, kunit_suite};
use crate::kernel_ext::percpu::PerCpu;
use crate::kernel_ext::vfs::TestFile;
use crate::telemetry::{Counter, Direction, Snapshot, Telemetry, LAT_BUCKETS};
use crate::tuning::{self, DeviceTuning, Defaults, Settings, TuneError, Tunable};
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use kernel::{c_str, new_spinlock, prelude::*, str::CStr, sync::{Arc, SpinLock}};

// ---- aether_kernel_ext -------------------------------------------------------

/// A directory appears, nests, and is gone once its handles are dropped: creating
/// the same name again only succeeds if the first one was removed.
fn debugfs_dir_lifecycle() {
    let root = Dir::new(c_str!("aether-kunit"));
    kunit_expect!(root.is_present());
    let child = root.subdir(c_str!("child"));
    kunit_expect!(child.is_present());
    // A second directory of the same name in the same parent is refused (-EEXIST).
    kunit_expect!(!root.subdir(c_str!("child")).is_present());
    drop(root);
    // The child keeps its parent alive.
    kunit_expect!(!Dir::new(c_str!("aether-kunit")).is_present());
    drop(child);
    kunit_expect!(Dir::new(c_str!("aether-kunit")).is_present());
}

/// An absent parent yields absent children rather than entries in the root.
fn debugfs_absent_parent() {
    let first = Dir::new(c_str!("aether-kunit-dup"));
    let dup = Dir::new(c_str!("aether-kunit-dup"));
    kunit_expect!(first.is_present());
    kunit_expect!(!dup.is_present());
    kunit_expect!(!dup.subdir(c_str!("x")).is_present());
}

/// Every possible CPU has its own zeroed slot, and walking them sees each once.
fn percpu_slots_are_per_cpu() {
    let Ok(pc) = PerCpu::<[AtomicU64; 2]>::new() else {
        kunit_expect!(false);
        return;
    };
    let mut cpus = 0u64;
    pc.for_each_cpu(|slot| {
        kunit_expect_eq!(slot[0].load(Relaxed), 0);
        cpus += 1;
        slot[0].store(cpus, Relaxed);
    });
    kunit_expect!(cpus >= 1);
    pc.this_cpu()[1].fetch_add(5, Relaxed);
    let (mut sum0, mut sum1) = (0u64, 0u64);
    pc.for_each_cpu(|slot| {
        sum0 += slot[0].load(Relaxed);
        sum1 += slot[1].load(Relaxed);
    });
    kunit_expect_eq!(sum0, cpus * (cpus + 1) / 2);
    kunit_expect_eq!(sum1, 5);
}

/// The status buffer truncates instead of overflowing and stays NUL-terminated.
fn bufwriter_truncates() {
    let mut raw = [0xffu8; 8];
    let mut w = buf_writer(&mut raw);
    let _ = w.write_str("hello, world");
    kunit_expect_eq!(w.len(), 7);
    drop(w);
    kunit_expect!(&raw == b"hello, \0");
}

kunit_suite!(aether_kernel_ext, [debugfs_dir_lifecycle, debugfs_absent_parent, percpu_slots_are_per_cpu, bufwriter_truncates]);

// ---- aether_tuning ---------------------------------------------------------

/// A device for the tuning interfaces without a device-mapper table: the same
/// parser and telemetry as the target, minus the gate engine.
#[pin_data]
struct TestDevice {
    #[pin]
    state: SpinLock<Settings>,
    telemetry: Telemetry,
}

impl DeviceTuning for TestDevice {
    fn set(&self, name: &str, value: &str) -> Result<(), TuneError> {
        let mut st = self.state.lock();
        let mut cfg = *st;
        tuning::apply(&mut cfg, name, value)?;
        *st = cfg;
        Ok(())
    }
    fn get(&self, t: Tunable, w: &mut dyn Write) -> core::fmt::Result {
        let cfg = *self.state.lock();
        tuning::show(&cfg, t, w)
    }
    fn write_stats(&self, w: &mut dyn Write, sep: &str, end: &str) -> core::fmt::Result {
        self.telemetry.snapshot().write_fields(w, sep, end)
    }
    fn write_histograms(&self, w: &mut dyn Write) -> core::fmt::Result {
        self.telemetry.snapshot().write_histograms(w)
    }
    fn reset_stats(&self) {
        self.telemetry.reset();
    }
}

fn test_device() -> Option<Arc<TestDevice>> {
    Arc::pin_init(
        try_pin_init!(TestDevice {
            state <- new_spinlock!(Settings { params: Params::DEFAULT, enabled: true, cache_mb: tuning::CACHE_MB_DEFAULT }),
            telemetry: Telemetry::new()?,
        }? Error),
        GFP_KERNEL,
    )
    .ok()
}

/// Reads a whole (small) file through the VFS.
fn read_file<'a>(path: &CStr, buf: &'a mut [u8; 512]) -> &'a [u8] {
    let n = TestFile::open(path, false).and_then(|f| f.read(buf)).unwrap_or(0);
    buf.get(..n).unwrap_or(&[])
}

/// One `write(2)` to a file through the VFS; the byte count or the errno.
fn write_file(path: &CStr, data: &[u8]) -> Result<usize> {
    TestFile::open(path, true)?.write(data)
}

const PHI: &CStr = c_str!("/sys/kernel/debug/aether-kunit-dev/t0/phi");
const EPSILON: &CStr = c_str!("/sys/kernel/debug/aether-kunit-dev/t0/epsilon");
const ENABLED: &CStr = c_str!("/sys/kernel/debug/aether-kunit-dev/t0/enabled");
const STATS: &CStr = c_str!("/sys/kernel/debug/aether-kunit-dev/t0/stats");

/// Writes through the real debugfs files round-trip; refused writes return the
/// right errno and change nothing.
fn debugfs_files_parse_and_refuse() {
    let Some(dev) = test_device() else {
        kunit_expect!(false);
        return;
    };
    let root = Dir::new(c_str!("aether-kunit-dev"));
    let files = DeviceFiles::new(&root, c_str!("t0"), dev.clone());
    kunit_expect!(files.as_ref().map_or(false, |f| f.is_present()));
    let mut buf = [0u8; 512];

    kunit_expect!(read_file(PHI, &mut buf) == b"0\n");
    kunit_expect_eq!(write_file(PHI, b"0.5\n").ok(), Some(4));
    kunit_expect!(read_file(PHI, &mut buf) == b"0.5\n");
    kunit_expect_eq!(write_file(PHI, b"-0.25").ok(), Some(5));
    kunit_expect!(read_file(PHI, &mut buf) == b"-0.25\n");

    // Refused: garbage, empty, out of range, overlong. The value stays.
    kunit_expect_eq!(write_file(PHI, b"garbage\n").err().map(|e| e.to_errno()), Some(EINVAL.to_errno()));
    kunit_expect_eq!(write_file(PHI, b"\n").err().map(|e| e.to_errno()), Some(EINVAL.to_errno()));
    kunit_expect_eq!(write_file(PHI, b"0.5 1").err().map(|e| e.to_errno()), Some(EINVAL.to_errno()));
    kunit_expect_eq!(write_file(EPSILON, b"7\n").err().map(|e| e.to_errno()), Some(EINVAL.to_errno()));
    kunit_expect_eq!(write_file(PHI, &[b'1'; 65]).err().map(|e| e.to_errno()), Some(EINVAL.to_errno()));
    kunit_expect!(read_file(PHI, &mut buf) == b"-0.25\n");
    kunit_expect!(read_file(EPSILON, &mut buf) == b"0.625\n");

    kunit_expect_eq!(write_file(ENABLED, b"0\n").ok(), Some(2));
    kunit_expect!(read_file(ENABLED, &mut buf) == b"0\n");
    kunit_expect!(write_file(ENABLED, b"2\n").is_err());
    kunit_expect!(read_file(ENABLED, &mut buf) == b"0\n");

    // Read-only files refuse writes.
    kunit_expect!(write_file(STATS, b"0\n").is_err());
    drop(files);
    // The directory went with the files.
    kunit_expect!(TestFile::open(PHI, false).is_err());
}

/// `dmsetup message` forms: set/get/reset_stats work; everything else is refused
/// with the right errno and changes nothing.
fn message_handler() {
    let Some(dev) = test_device() else {
        kunit_expect!(false);
        return;
    };
    let mut raw = [0u8; 64];
    let mut out = buf_writer(&mut raw);
    kunit_expect!(tuning::message(&*dev, &["set", "lambda2", "3.5"], &mut out).is_ok());
    kunit_expect!(tuning::message(&*dev, &["get", "lambda2"], &mut out).is_ok());
    kunit_expect_eq!(out.len(), 3);
    drop(out);
    kunit_expect!(raw.get(..4) == Some(b"3.5\0".as_slice()));

    let errno = |args: &[&str]| {
        let mut raw = [0u8; 64];
        tuning::message(&*dev, args, &mut buf_writer(&mut raw)).err().map(|e| e.to_errno())
    };
    kunit_expect_eq!(errno(&["set", "lambda2", "x"]), Some(EINVAL.to_errno()));
    kunit_expect_eq!(errno(&["set", "lambda2", "99"]), Some(EINVAL.to_errno()));
    kunit_expect_eq!(errno(&["set", "lambda9", "1"]), Some(EINVAL.to_errno()));
    kunit_expect_eq!(errno(&["set", "lambda2"]), Some(EINVAL.to_errno()));
    kunit_expect_eq!(errno(&["get"]), Some(EINVAL.to_errno()));
    kunit_expect_eq!(errno(&["frobnicate"]), Some(EINVAL.to_errno()));
    kunit_expect_eq!(errno(&[]), Some(EINVAL.to_errno()));
    kunit_expect_eq!(dev.state.lock().params.lambda2, 7 * 65536 / 2);

    dev.telemetry.add(Counter::Reads, 3);
    kunit_expect!(tuning::message(&*dev, &["reset_stats"], &mut buf_writer(&mut raw)).is_ok());
    kunit_expect_eq!(dev.telemetry.snapshot().get(Counter::Reads), 0);
}

/// Module-parameter defaults take the same parser; refused values change nothing.
fn module_param_defaults() {
    let d = Defaults::new();
    kunit_expect!(d.set("epsilon", "0.75").is_ok());
    kunit_expect!(d.set("enabled", "0").is_ok());
    kunit_expect_eq!(d.set("epsilon", "1.5"), Err(TuneError::Value(crate::aether_core::ParamError::OutOfRange)));
    kunit_expect_eq!(d.set("nope", "1"), Err(TuneError::UnknownName));
    kunit_expect!(d.set("enabled", "yes").is_err());
    kunit_expect!(d.set("cache_mb", "16").is_ok());
    kunit_expect_eq!(d.set("cache_mb", "-1"), Err(TuneError::Value(crate::aether_core::ParamError::Invalid)));
    kunit_expect_eq!(d.set("cache_mb", "99999999"), Err(TuneError::CacheTooBig));
    let cfg = d.load();
    kunit_expect_eq!(cfg.params.epsilon, 3 * 65536 / 4);
    kunit_expect!(!cfg.enabled);
    kunit_expect_eq!(cfg.cache_mb, 16);
    kunit_expect_eq!(cfg.params.phi, Params::DEFAULT.phi);
}

kunit_suite!(aether_tuning, [debugfs_files_parse_and_refuse, message_handler, module_param_defaults]);

// ---- aether_telemetry ----------------------------------------------------

/// Counters and histograms sum over CPUs; reset zeroes them.
fn telemetry_aggregates() {
    let Ok(t) = Telemetry::new() else {
        kunit_expect!(false);
        return;
    };
    t.add(Counter::Reads, 2);
    t.add(Counter::ReadBytes, 8192);
    t.add(Counter::Reads, 1);
    t.record_latency(Direction::Read, 100_000); // bucket 16: [65536, 131072)
    t.record_latency(Direction::Read, 100_000);
    t.record_latency(Direction::Write, 3_000_000); // bucket 21
    let s = t.snapshot();
    kunit_expect_eq!(s.get(Counter::Reads), 3);
    kunit_expect_eq!(s.get(Counter::ReadBytes), 8192);
    kunit_expect_eq!(s.get(Counter::Writes), 0);
    kunit_expect_eq!(s.read_latency[16], 2);
    kunit_expect_eq!(s.write_latency[21], 1);
    kunit_expect_eq!(Snapshot::quantile_ns(&s.read_latency, 99, 100), 131_072);
    t.reset();
    kunit_expect_eq!(t.snapshot().get(Counter::Reads), 0);
    kunit_expect_eq!(t.snapshot().read_latency[16], 0);
}

/// Quantiles pick the bucket holding the rank; an empty histogram gives 0.
fn latency_quantiles() {
    let mut h = [0u64; LAT_BUCKETS];
    kunit_expect_eq!(Snapshot::quantile_ns(&h, 99, 100), 0);
    h[10] = 98; // < 2 us
    h[20] = 2; //  ~1-2 ms
    kunit_expect_eq!(Snapshot::quantile_ns(&h, 50, 100), 2048);
    kunit_expect_eq!(Snapshot::quantile_ns(&h, 99, 100), 2_097_152);
    h[LAT_BUCKETS - 1] = u64::MAX;
    // Saturating arithmetic: no overflow panic with absurd counts.
    kunit_expect!(Snapshot::quantile_ns(&h, 99, 100) > 0);
}

/// `dmsetup status` prints `key=value` pairs in a fixed order.
fn status_format() {
    let mut s = Snapshot::default();
    s.counters[Counter::Reads as usize] = 7;
    s.counters[Counter::GateOpen as usize] = 5;
    s.counters[Counter::GateClosed as usize] = 2;
    s.read_latency[16] = 1;
    let mut raw = [0u8; 512];
    let mut w = buf_writer(&mut raw);
    kunit_expect!(s.write_fields(&mut w, "=", " ").is_ok());
    let n = w.len();
    drop(w);
    // Byte comparisons: `str::contains` and friends pull in core panic paths
    // that 6.12's objtool does not know are noreturn.
    let text = raw.get(..n).unwrap_or(&[]);
    kunit_expect!(text.starts_with(b"reads=7 read_bytes=0 writes=0 "));
    kunit_expect!(text.windows(26).any(|w| w == b" gate_open=5 gate_closed=2"));
    kunit_expect!(text.ends_with(b"read_p50_us=131 read_p99_us=131 write_p50_us=0 write_p99_us=0 "));
}

kunit_suite!(aether_telemetry, [telemetry_aggregates, latency_quantiles, status_format]);

// ---- aether_core_in_kernel -----------------------------------------------

/// A sequential reader gets most of its later reads prefetched: coverage of
/// reads 16..256 by earlier decisions is at least 90%. The core runs here with
/// the kernel's overflow checks on.
fn core_sequential_coverage() {
    let Ok(mut e) = new_engine(Params::DEFAULT, u64::MAX) else {
        kunit_expect!(false);
        return;
    };
    const N: usize = 256;
    let mut covered = [false; N];
    for i in 0..N as u64 {
        let d = e.on_read(i * 8, 8, i * 100_000);
        for k in 0..d.count {
            let Some((start, sectors)) = d.extent(k) else { continue };
            let end = start.saturating_add(u64::from(sectors));
            // Mark every later 8-sector read that lies inside the extent.
            for (j, c) in covered.iter_mut().enumerate().skip(i as usize + 1) {
                let (s, t) = (j as u64 * 8, j as u64 * 8 + 8);
                if s >= start && t <= end {
                    *c = true;
                }
            }
        }
    }
    let hits = covered.iter().skip(16).filter(|&&c| c).count();
    kunit_expect!(hits * 10 >= (N - 16) * 9);
}

/// Edge values (top of the LBA space, zero length, reversed order) do not
/// overflow, which in the kernel would be a panic.
fn core_edge_values() {
    let Ok(mut e) = new_engine(Params::DEFAULT, u64::MAX) else {
        kunit_expect!(false);
        return;
    };
    for i in 0..16u64 {
        let _ = e.on_read(u64::MAX - i * 8, 8, i);
        let _ = e.on_read(u64::MAX - 1, 0, i);
        let _ = e.on_read(0, u32::MAX, u64::MAX - i);
        e.on_write(u64::MAX - 4, 8, i);
    }
    kunit_expect!(e.stats().reads >= 48);
}

kunit_suite!(aether_core_in_kernel, [core_sequential_coverage, core_edge_values]);

// ---- aether_cache ---------------------------------------------------------

/// A cache of `mb` MiB over a 1 GiB table, and a sink counting outcomes.
fn test_cache(mb: u32) -> Option<Pin<KBox<Cache>>> {
    KBox::pin_init(Cache::new(mb, 1 << 21), GFP_KERNEL).ok()
}

/// Reserves and fills `n` blocks from `first` with fresh pages.
fn fetch(c: &Cache, first: u64, n: u64, wasted: &mut u32) -> usize {
    let mut next = first;
    let mut filled = 0;
    while next < first + n {
        let mut run = c.reserve_run(&mut next, first + n, StreamId(1), &mut |_, o, k| {
            if o == Outcome::Wasted {
                *wasted += k;
            }
        });
        if run.len() == 0 {
            break;
        }
        let mut pages = PageRun::new();
        while pages.len() < run.len() {
            match CachePage::alloc_nowait() {
                Some(p) => {
                    let _ = pages.push(p);
                }
                None => break,
            }
        }
        c.abort(&run, pages.len());
        run.truncate(pages.len());
        filled += run.len() - c.fill(&run, &mut pages) as usize;
    }
    filled
}

/// Reserved blocks fill with pages; a write in flight fences them; a write
/// during a read makes its fill stale; clearing frees everything.
fn cache_fill_fence_and_stale() {
    let Some(c) = test_cache(1) else {
        kunit_expect!(false);
        return;
    };
    let mut wasted = 0;
    kunit_expect_eq!(fetch(&c, 100, 40, &mut wasted), 40);
    let o = c.occupancy();
    kunit_expect_eq!((o.unused, o.in_flight), (40, 0));
    // Already cached: nothing new is reserved.
    kunit_expect_eq!(fetch(&c, 100, 40, &mut wasted), 0);

    // A write in flight over blocks 200..208 fences them until it ends.
    let (fence, forgotten) = c.invalidate_and_fence(200 * 8, 64, &mut |_, _, _| {});
    kunit_expect_eq!(forgotten, 0);
    kunit_expect_eq!(fetch(&c, 200, 8, &mut wasted), 0);
    c.fence_end(fence);
    kunit_expect_eq!(fetch(&c, 200, 8, &mut wasted), 8);

    // A write that lands while a read is in flight: the fill is stale.
    let mut next = 300;
    let mut run = c.reserve_run(&mut next, 304, StreamId(2), &mut |_, _, _| {});
    kunit_expect_eq!(run.len(), 4);
    let (fence, forgotten) = c.invalidate_and_fence(300 * 8, 32, &mut |_, _, _| {});
    kunit_expect_eq!(forgotten, 4);
    let mut pages = PageRun::new();
    for _ in 0..4 {
        if let Some(p) = CachePage::alloc_nowait() {
            let _ = pages.push(p);
        }
    }
    run.truncate(pages.len());
    kunit_expect_eq!(c.fill(&run, &mut pages) as usize, run.len());
    c.fence_end(fence);
    kunit_expect_eq!(c.occupancy().in_flight, 0);

    // Invalidating cached, never-read blocks is waste.
    let mut w = 0;
    let (fence, forgotten) = c.invalidate_and_fence(100 * 8, 80, &mut |_, o, k| {
        if o == Outcome::Wasted {
            w += k;
        }
    });
    c.fence_end(fence);
    kunit_expect_eq!((forgotten, w), (10, 10));
    c.clear();
    kunit_expect_eq!(c.occupancy().used(), 0);
}

/// The budget holds: shrinking it and the shrinker evict at once; growing
/// it past the storage reallocates and keeps what is cached.
fn cache_budget_and_shrinker() {
    let Some(c) = test_cache(1) else {
        kunit_expect!(false);
        return;
    };
    let mut wasted = 0;
    // Past the budget, the oldest unused blocks make room (and are waste).
    kunit_expect_eq!(fetch(&c, 0, 300, &mut wasted), 300);
    kunit_expect_eq!((c.occupancy().used(), wasted), (256, 44));
    kunit_expect_eq!(c.reclaimable(), 256);
    kunit_expect_eq!(c.shrink(56, &mut |_, _, _| {}), 56);
    kunit_expect_eq!(c.occupancy().used(), 200);
    kunit_expect!(c.set_budget_mb(2, &mut |_, _, _| {}).is_ok());
    kunit_expect_eq!(c.occupancy().limit, 512);
    kunit_expect_eq!(c.occupancy().used(), 200);
    kunit_expect_eq!(fetch(&c, 1000, 400, &mut wasted), 400);
    kunit_expect_eq!((c.occupancy().used(), wasted), (512, 44 + 88));
    let mut w = 0;
    kunit_expect!(c.set_budget_mb(0, &mut |_, o, k| {
        if o == Outcome::Wasted {
            w += k;
        }
    })
    .is_ok());
    kunit_expect_eq!((c.occupancy().used(), w), (0, 512));
    kunit_expect_eq!(fetch(&c, 5000, 8, &mut wasted), 0);
}

kunit_suite!(aether_cache, [cache_fill_fence_and_stale, cache_budget_and_shrinker]);

/// A formatter over a stack buffer.
fn buf_writer(raw: &mut [u8]) -> BufWriter<'_> {
    BufWriter::new(raw)
}
