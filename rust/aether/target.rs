// SPDX-License-Identifier: GPL-2.0

//! The `aether` device-mapper target: where every bio enters.
//!
//! Table line: `<start> <len> aether <dev_path> [<#opt_args> <key> <value>...]`
//! with keys `enabled`, `cache_mb` and the gate parameters (`phi`, ...).
//!
//! [`AetherTarget::map`] is where a bio enters. A read is served from the
//! prefetch cache when every block it touches is there (`block_cache.rs`);
//! either way it goes through the stream detector, and the gate decides
//! whether and how far to prefetch (`gate_and_prefetch`, issuing through
//! `prefetch.rs`). Writes, discards and write-zeroes invalidate and fence
//! their blocks before going down. `end_io` ends fences, records latency and
//! queues the demand reads' device latency for the engine (`feedback.rs`).

use crate::aether_core::cache::FenceId;
use crate::aether_core::{Engine, Outcome, Params, StreamId};
use crate::block_cache::{Cache, Served, BLOCKS_PER_MB};
use crate::devices::{Attachment, Registry};
use crate::feedback::Feedback;
use crate::kernel_ext::bio::{Bio, BioOp, ParkedBio};
use crate::kernel_ext::bio_pool::BioPool;
use crate::kernel_ext::dm::{
    BlkStatus, DevId, DeviceVisitor, DmDev, MapResult, ResultWriter, StatusType, Target, TargetOperations, FEATURE_NOWAIT,
};
use crate::kernel_ext::print::ratelimit;
use crate::kernel_ext::shrinker::{Shrinker, ShrinkerOps};
use crate::kernel_ext::sync::{new_irq_spinlock, IrqSpinLock};
use crate::kernel_ext::time::ktime_get_ns;
use crate::kernel_ext::trace;
use crate::prefetch::{self, PrefetchRead, BIO_RESERVE};
use crate::telemetry::{Counter, Direction, Telemetry};
use crate::tuning::{self, DeviceTuning, Settings, TuneError, Tunable, DEFAULTS};
use core::cell::Cell;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use kernel::{alloc::KVBox, c_str, ffi::c_int, prelude::*, str::CStr, sync::Arc};

/// Longest `dmsetup table` argument text we keep.
const TABLE_ARGS_MAX: usize = 256;

/// Queued feedback is moved into the engine at most this often (ns).
const DRAIN_INTERVAL_NS: u64 = 1_000_000;

/// What `map` leaves in a bio's per-bio data for `end_io`.
#[derive(Clone, Copy, Default)]
pub(crate) struct PerBio {
    /// `ktime_get()` when the bio was mapped.
    start_ns: i64,
    kind: BioKind,
}

/// What a mapped bio was, for its completion.
#[derive(Clone, Copy, Default)]
enum BioKind {
    /// Flushes and anything not timed.
    #[default]
    Untimed,
    /// A read sent to the device.
    DeviceRead,
    /// A read served from the cache.
    CacheRead,
    /// A read parked until its prefetches complete (then served from RAM,
    /// or sent to the device).
    ParkedRead,
    /// A write, discard or write-zeroes holding a cache fence.
    Write { fence: FenceId, timed: bool },
}

/// Gate state of one device: changed only under its lock.
pub(crate) struct Gate {
    pub(crate) params: Params,
    pub(crate) engine: KVBox<Engine>,
    /// When queued feedback was last drained into the engine.
    last_drain_ns: u64,
}

/// State shared by the target, its prefetch reads, its shrinker, its debugfs
/// files and its messages.
///
/// Holds no device reference: debugfs readers may keep it alive briefly past
/// `dtr`. The device is reached only through the `Target` of a callback.
#[pin_data]
pub(crate) struct Shared {
    /// The underlying device as `major:minor`, for `dmsetup table`.
    dev_name: KVec<u8>,
    /// The aether device's `dev_t`, naming it in trace events.
    pub(crate) devt: u32,
    /// Whether reads go through the gate.
    pub(crate) enabled: AtomicBool,
    /// Between presuspend and resume: issue no prefetch.
    suspended: AtomicBool,
    /// Where the last read served in part ends: the rest of that read comes
    /// back to `map` from there, and the engine has already seen it.
    split_at: AtomicU64,
    /// The stream detector and gate. `map` only ever try-locks it (a busy
    /// gate skips one read's evaluation rather than wait); the lock disables
    /// interrupts, so any context may take it.
    #[pin]
    pub(crate) gate: IrqSpinLock<Gate>,
    #[pin]
    pub(crate) cache: Cache,
    /// The cache budget as last set, MiB.
    cache_mb: AtomicU32,
    pub(crate) telemetry: Telemetry,
    pub(crate) feedback: Feedback,
    /// The optional table arguments as given, for `dmsetup table`.
    table_args: KVec<u8>,
}

impl Shared {
    /// Counts a prefetched block's outcome and queues it for the engine.
    pub(crate) fn record_outcome(&self, stream: StreamId, outcome: Outcome, blocks: u32) {
        let c = match outcome {
            Outcome::Timely => Counter::PrefetchHits,
            Outcome::Late => Counter::PrefetchLate,
            Outcome::Wasted => Counter::PrefetchWasted,
        };
        self.telemetry.add(c, u64::from(blocks));
        if !self.feedback.outcome(stream, outcome, blocks) {
            self.telemetry.add(Counter::FeedbackDropped, 1);
        }
    }

    fn settings(&self, params: Params) -> Settings {
        Settings { params, enabled: self.enabled.load(Relaxed), cache_mb: self.cache_mb.load(Relaxed) }
    }
}

impl DeviceTuning for Shared {
    fn set(&self, name: &str, value: &str) -> Result<(), TuneError> {
        let cfg = {
            let mut gate = self.gate.lock();
            let mut cfg = self.settings(gate.params);
            tuning::apply(&mut cfg, name, value)?;
            if cfg.params != gate.params {
                gate.params = cfg.params;
                gate.engine.set_params(cfg.params);
            }
            cfg
        };
        self.enabled.store(cfg.enabled, Relaxed);
        if cfg.cache_mb != self.cache_mb.load(Relaxed) {
            let mut sink = |st, o, n| self.record_outcome(st, o, n);
            self.cache.set_budget_mb(cfg.cache_mb, &mut sink).map_err(|_| TuneError::NoMemory)?;
            self.cache_mb.store(cfg.cache_mb, Relaxed);
        }
        Ok(())
    }

    fn get(&self, t: Tunable, w: &mut dyn Write) -> core::fmt::Result {
        let params = self.gate.lock().params;
        tuning::show(&self.settings(params), t, w)
    }

    fn write_stats(&self, w: &mut dyn Write, sep: &str, end: &str) -> core::fmt::Result {
        self.telemetry.snapshot().write_fields(w, sep, end)?;
        let s = {
            let mut gate = self.gate.lock();
            let g = &mut *gate;
            self.feedback.drain(&mut g.engine);
            g.last_drain_ns = ktime_get_ns() as u64;
            g.engine.stats()
        };
        write!(w, "enabled{}{}{}", sep, u8::from(self.enabled.load(Relaxed)), end)?;
        write!(w, "streams_created{}{}{}", sep, s.new_streams, end)?;
        // Decimals, like the tunables they derive from.
        write!(w, "gate_epsilon_eff{}", sep)?;
        tuning::write_q16(i32::try_from(s.epsilon_eff).unwrap_or(i32::MAX), w)?;
        write!(w, "{}gate_phi{}", end, sep)?;
        tuning::write_q16(s.phi, w)?;
        w.write_str(end)?;
        write!(w, "depth_cap{}{}{}", sep, s.depth_cap, end)?;
        write!(w, "device_p99_us{}{}{}", sep, s.p99_ns / 1000, end)?;
        let occ = self.cache.occupancy();
        let mb = self.cache_mb.load(Relaxed);
        write!(w, "cache_bytes{}{}{}", sep, u64::from(occ.used()) * 4096, end)?;
        write!(w, "cache_limit_bytes{}{}{}", sep, u64::from(mb) * u64::from(BLOCKS_PER_MB) * 4096, end)?;
        write!(w, "cache_in_flight_blocks{}{}{}", sep, occ.in_flight, end)?;
        write!(w, "cache_unused_blocks{}{}{}", sep, occ.unused, end)?;
        write!(w, "cache_consumed_blocks{}{}{}", sep, occ.consumed, end)?;
        write!(w, "writes_in_flight{}{}{}", sep, self.cache.fenced_writes(), end)?;
        write!(w, "reads_parked{}{}{}", sep, self.cache.parked(), end)?;
        write!(w, "cache_wait_fallbacks{}{}{}", sep, self.cache.wait_fallbacks(), end)
    }

    fn write_histograms(&self, w: &mut dyn Write) -> core::fmt::Result {
        self.telemetry.snapshot().write_histograms(w)
    }

    fn reset_stats(&self) {
        self.telemetry.reset();
    }

    fn drop_cache(&self) {
        self.cache.clear();
    }
}

/// Gives cached blocks back under memory pressure (in flight ones stay).
impl ShrinkerOps for Shared {
    fn count(&self) -> usize {
        self.cache.reclaimable() as usize
    }

    fn scan(&self, nr: usize) -> usize {
        let nr = nr.min(u32::MAX as usize) as u32;
        self.cache.shrink(nr, &mut |st, o, n| self.record_outcome(st, o, n)) as usize
    }
}

/// Allocates a ready engine for a device of `capacity` sectors. The engine
/// (32 KiB) is built in zeroed kvmalloc memory and initialised in place:
/// built by value it would overflow the kernel stack, and it need not be
/// physically contiguous.
pub(crate) fn new_engine(params: Params, capacity: u64) -> Result<KVBox<Engine>> {
    let mut engine: KVBox<Engine> = KVBox::init(kernel::init::zeroed(), GFP_KERNEL)?;
    engine.reset(params);
    engine.set_capacity(capacity);
    Ok(engine)
}

/// One `aether` table line. Fields drop in order: leave the device registry
/// (which may remove the debugfs files, waiting for their readers), stop the
/// shrinker, wait for prefetch reads in flight (their completions hold the
/// shared state), then the shared state. `kernel_ext::dm` puts the device
/// afterwards, inside `dtr`, so it outlives every prefetch read.
pub(crate) struct AetherTarget {
    attachment: Attachment,
    _shrinker: Shrinker<Shared>,
    reads: Pin<KBox<BioPool<PrefetchRead>>>,
    shared: Arc<Shared>,
    dev: DevId,
}

/// Reports a bad table line: one dmesg line naming the problem (within the
/// refusal rate limit, as table lines are user input too), and the
/// `ti->error` string `dmsetup` prints.
fn ctr_error(target: &mut Target, msg: &'static CStr, detail: &str) -> Error {
    if ratelimit() {
        pr_err!("bad table line: {} ({})\n", msg.to_str().unwrap_or("?"), detail);
    }
    target.set_error(msg);
    EINVAL
}

/// Parses `[<#opt_args> <key> <value>...]` into `cfg`, and keeps the text for
/// `dmsetup table`.
fn parse_opt_args(target: &mut Target, args: &[&CStr], cfg: &mut Settings, text: &mut KVec<u8>) -> Result {
    let Some((count, rest)) = args.split_first() else {
        return Ok(());
    };
    let count_str = count.to_str().unwrap_or("");
    let n: usize = match count_str.parse() {
        Ok(n) => n,
        Err(_) => return Err(ctr_error(target, c_str!("Invalid optional argument count"), count_str)),
    };
    if n != rest.len() || n % 2 != 0 {
        return Err(ctr_error(target, c_str!("Optional argument count does not match key/value pairs"), count_str));
    }
    text.extend_from_slice(count.as_bytes(), GFP_KERNEL)?;
    for pair in rest.chunks_exact(2) {
        let (Some(key), Some(value)) = (pair.first(), pair.get(1)) else {
            continue;
        };
        let (k, v) = (key.to_str().unwrap_or(""), value.to_str().unwrap_or(""));
        if let Err(e) = tuning::apply(cfg, k, v) {
            let msg = match e {
                TuneError::UnknownName => c_str!("Unknown optional argument"),
                _ => c_str!("Invalid optional argument value"),
            };
            if ratelimit() {
                pr_err!("bad table line: {} {}: {}\n", k, v, e.as_str());
            }
            target.set_error(msg);
            return Err(e.errno());
        }
        for part in [b" ".as_slice(), key.as_bytes(), b" ", value.as_bytes()] {
            text.extend_from_slice(part, GFP_KERNEL)?;
        }
    }
    if text.len() > TABLE_ARGS_MAX {
        return Err(ctr_error(target, c_str!("Optional arguments too long"), "over 256 bytes"));
    }
    Ok(())
}

impl Drop for AetherTarget {
    /// Runs inside `dtr`, before the fields go: device-mapper has waited for
    /// every bio (parked ones included), so only the resubmit worker may
    /// still be finishing; wait for it, since it runs this module's code.
    fn drop(&mut self) {
        self.shared.cache.flush();
    }
}

impl AetherTarget {
    /// Runs the stream detector and the gate for a demand read, and issues
    /// the prefetch it decides on. Skipped (and counted) when another CPU
    /// holds the gate: waiting would cost every read what only one needs.
    fn gate_and_prefetch(&self, dev: &DmDev, offset: u64, sectors: u32, now: u64) {
        let s = &self.shared;
        let Some(mut gate) = s.gate.try_lock() else {
            s.telemetry.add(Counter::GateSkipped, 1);
            return;
        };
        let g = &mut *gate;
        if now.wrapping_sub(g.last_drain_ns) >= DRAIN_INTERVAL_NS {
            s.feedback.drain(&mut g.engine);
            g.last_drain_ns = now;
        }
        let d = g.engine.on_read(offset, sectors, now);
        drop(gate);
        trace::decision(s.devt, d.stream.0, offset, sectors, d.probability, d.count, d.total_sectors(), d.prefetch);
        if !d.prefetch {
            s.telemetry.add(Counter::GateClosed, 1);
            return;
        }
        s.telemetry.add(Counter::GateOpen, 1);
        s.telemetry.add(Counter::GateSectors, d.total_sectors());
        if !s.suspended.load(Relaxed) {
            prefetch::issue(s, self.reads.as_ref(), dev, &d, now);
        }
    }
}

impl TargetOperations for AetherTarget {
    type PerBio = PerBio;
    /// The mapped devices with aether tables and their debugfs directories.
    type Context = Arc<Registry>;

    /// `map` never sleeps: it takes spinlocks and allocates with GFP_NOWAIT.
    const FEATURES: u64 = FEATURE_NOWAIT;

    fn ctr(registry: &Arc<Registry>, target: &mut Target, args: &[&CStr]) -> Result<Pin<KBox<Self>>> {
        let Some((path, opt)) = args.split_first() else {
            return Err(ctr_error(target, c_str!("Missing device path"), "usage: <dev_path> [<#opt_args> <key> <value>...]"));
        };
        let mut cfg = DEFAULTS.load();
        let mut table_args = KVec::new();
        parse_opt_args(target, opt, &mut cfg, &mut table_args)?;

        let dev_id = match target.open_device(path) {
            Ok(id) => id,
            Err(e) => {
                if ratelimit() {
                    pr_err!("cannot open device {}: error {}\n", path.to_str().unwrap_or("?"), e.to_errno());
                }
                target.set_error(c_str!("Device lookup failed"));
                return Err(e);
            }
        };
        let dev = target.device(dev_id).ok_or(ENODEV)?;
        // Prefetches stay inside this table's extent, not the whole device.
        let sectors = target.len();
        let engine = new_engine(cfg.params, sectors)?;
        let mut dev_name = KVec::new();
        dev_name.extend_from_slice(dev.name().as_bytes(), GFP_KERNEL)?;
        let mut shrinker_name = KVec::new();
        shrinker_name.extend_from_slice(dev.name().as_bytes_with_nul(), GFP_KERNEL)?;
        let devt = target.mapped_device().devt();
        let shared = Arc::pin_init(
            try_pin_init!(Shared {
                dev_name,
                devt,
                enabled: AtomicBool::new(cfg.enabled),
                suspended: AtomicBool::new(false),
                split_at: AtomicU64::new(u64::MAX),
                gate <- new_irq_spinlock!(Gate { params: cfg.params, engine, last_drain_ns: 0 }, "aether_gate"),
                cache <- Cache::new(cfg.cache_mb, sectors),
                cache_mb: AtomicU32::new(cfg.cache_mb),
                telemetry: Telemetry::new()?,
                feedback: Feedback::new()?,
                table_args,
            }),
            GFP_KERNEL,
        )
        .inspect_err(|_| target.set_error(c_str!("Cannot allocate the prefetch cache")))?;
        let shrinker = Shrinker::register(CStr::from_bytes_with_nul(&shrinker_name)?, shared.clone())?;
        let reads = KBox::pin_init(BioPool::new(BIO_RESERVE), GFP_KERNEL)?;
        let attachment = registry.attach(target.mapped_device(), &shared)?;
        Ok(KBox::pin(Self { attachment, _shrinker: shrinker, reads, shared, dev: dev_id }, GFP_KERNEL)?)
    }

    fn resume(&self, target: &Target) {
        self.shared.suspended.store(false, Relaxed);
        self.attachment.make_live(target.mapped_device());
    }

    fn presuspend(&self, _target: &Target) {
        self.shared.suspended.store(true, Relaxed);
    }

    fn presuspend_undo(&self, _target: &Target) {
        self.shared.suspended.store(false, Relaxed);
    }

    /// No demand bio is in flight now. Wait for the prefetches, then forget
    /// the cache: while suspended the device may change under us (a reload,
    /// or a tool writing the lower device), and a cache rebuilt from the
    /// next reads costs little.
    fn postsuspend(&self, _target: &Target) {
        self.reads.drain();
        self.shared.cache.flush();
        self.shared.cache.clear();
    }

    fn map(&self, target: &Target, bio: &mut Bio, pb: &mut PerBio) -> MapResult {
        let s = &self.shared;
        // `ctr` opened the device for this target, so the lookup cannot fail.
        let Some(dev) = target.device(self.dev) else { return MapResult::Kill };
        let now = ktime_get_ns();
        pb.start_ns = now;
        let offset = bio.sector().wrapping_sub(target.begin());
        let bytes = u64::from(bio.size());
        let sectors = bio.size() >> 9;
        // Counts what this bio makes late, for its trace event.
        let late = Cell::new(0u32);
        let mut sink = |st, o, n| {
            late.set(late.get().saturating_add(if o == Outcome::Late { n } else { 0 }));
            s.record_outcome(st, o, n)
        };
        match bio.op() {
            BioOp::Read => {
                s.telemetry.add(Counter::Reads, 1);
                s.telemetry.add(Counter::ReadBytes, bytes);
                pb.kind = BioKind::DeviceRead;
                if sectors != 0 {
                    // The rest of a read served in part was seen whole already.
                    // Load first: a compare-exchange on every read would bounce
                    // this shared line between CPUs even when nothing was split.
                    let rest_of_split = s.split_at.load(Relaxed) == offset
                        && s.split_at.compare_exchange(offset, u64::MAX, Relaxed, Relaxed).is_ok();
                    // The engine sees every read, hit or not: hits move the
                    // stream on and trigger the next window.
                    if s.enabled.load(Relaxed) && !rest_of_split {
                        self.gate_and_prefetch(dev, offset, sectors, now as u64);
                    }
                    let served = s.cache.serve(bio, offset, sectors, &mut sink);
                    // Whether this read then waits or goes down, the blocks it
                    // found in flight are late.
                    if late.get() != 0 {
                        trace::late(s.devt, offset, sectors, late.get());
                    }
                    match served {
                        Served::No => {}
                        Served::Wait(head) => {
                            // Its prefetches are in flight: wait for them
                            // rather than read the same blocks again.
                            if let Some(n) = head {
                                s.split_at.store(offset + u64::from(n), Relaxed);
                            }
                            s.telemetry.add(Counter::CacheReadWaits, 1);
                            pb.kind = BioKind::ParkedRead;
                            bio.remap(dev, offset);
                            return MapResult::Park;
                        }
                        served => {
                            trace::hit(s.devt, offset, if let Served::Head(n) = served { n } else { sectors });
                            if let Served::Head(n) = served {
                                s.split_at.store(offset + u64::from(n), Relaxed);
                            }
                            s.telemetry.add(Counter::CacheReadHits, 1);
                            pb.kind = BioKind::CacheRead;
                            return MapResult::Complete(BlkStatus::OK);
                        }
                    }
                }
            }
            BioOp::Write if sectors == 0 => s.telemetry.add(Counter::Flushes, 1),
            op @ (BioOp::Write | BioOp::WriteZeroes | BioOp::Discard) => {
                let timed = op != BioOp::Discard;
                if timed {
                    s.telemetry.add(Counter::Writes, 1);
                    s.telemetry.add(Counter::WriteBytes, bytes);
                } else {
                    s.telemetry.add(Counter::Discards, 1);
                }
                // Before the write goes down: nothing cached may be older
                // than it, and no prefetch may overtake it.
                let (fence, forgotten) = s.cache.invalidate_and_fence(offset, sectors, &mut sink);
                s.telemetry.add(Counter::CacheInvalidated, u64::from(forgotten));
                if forgotten != 0 {
                    trace::invalidate(s.devt, offset, sectors, forgotten);
                }
                pb.kind = BioKind::Write { fence, timed };
                if s.enabled.load(Relaxed) {
                    s.gate.lock().engine.on_write(offset, sectors, now as u64);
                }
            }
            BioOp::Flush => s.telemetry.add(Counter::Flushes, 1),
            BioOp::Other => s.telemetry.add(Counter::Other, 1),
        }
        bio.remap(dev, offset);
        MapResult::Remapped
    }

    fn park(&self, _target: &Target, bio: ParkedBio) {
        let s = &self.shared;
        // Remapped 1:1: the device sector is the table offset.
        let (offset, sectors) = (bio.sector(), bio.size() >> 9);
        // `map` already reported this read's late blocks; parking serves
        // only blocks that are all valid, which makes none late.
        s.cache.park(bio, offset, sectors, &mut |st, o, n| s.record_outcome(st, o, n));
    }

    fn end_io(&self, _bio: &Bio, pb: &PerBio, status: BlkStatus) {
        let s = &self.shared;
        let t = &s.telemetry;
        let ns = ktime_get_ns().saturating_sub(pb.start_ns) as u64;
        match pb.kind {
            BioKind::Untimed => {}
            BioKind::DeviceRead => {
                if status.is_error() {
                    t.add(Counter::ReadErrors, 1);
                }
                t.record_latency(Direction::Read, ns);
                // Only the device's latency feeds the P99 guard.
                if status.is_ok() && !s.feedback.latency(ns) {
                    t.add(Counter::FeedbackDropped, 1);
                }
            }
            BioKind::CacheRead | BioKind::ParkedRead => t.record_latency(Direction::Read, ns),
            BioKind::Write { fence, timed } => {
                s.cache.fence_end(fence);
                if status.is_error() {
                    t.add(Counter::WriteErrors, 1);
                }
                if timed {
                    t.record_latency(Direction::Write, ns);
                }
            }
        }
    }

    fn status(&self, kind: StatusType, out: &mut ResultWriter<'_>) {
        let s = &self.shared;
        let _ = match kind {
            StatusType::Info => s.write_stats(out, "=", " "),
            StatusType::Table => {
                let args = core::str::from_utf8(&s.table_args).unwrap_or("");
                let dev = core::str::from_utf8(&s.dev_name).unwrap_or("?");
                write!(out, "{}{}{}", dev, if args.is_empty() { "" } else { " " }, args)
            }
            StatusType::Ima => write!(out, "target_name=aether,device_name={};", core::str::from_utf8(&s.dev_name).unwrap_or("?")),
        };
    }

    fn message(&self, args: &[&CStr], out: &mut ResultWriter<'_>) -> Result {
        let mut words = [""; 4];
        if args.len() > words.len() {
            if ratelimit() {
                pr_err!("message refused: {} words (usage: set <param> <value> | get <param> | reset_stats)\n", args.len());
            }
            return Err(EINVAL);
        }
        for (w, a) in words.iter_mut().zip(args) {
            *w = a.to_str().map_err(|_| EINVAL)?;
        }
        tuning::message(&*self.shared, words.get(..args.len()).unwrap_or(&[]), out)
    }

    fn iterate_devices(&self, target: &Target, visitor: &mut DeviceVisitor) -> c_int {
        target.device(self.dev).map_or(0, |dev| visitor.visit(dev, 0, target.len()))
    }
}
