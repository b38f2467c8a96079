//! `bench`: polled NVMe reads from user space over VFIO.
//!
//! One I/O queue pair with interrupts off, commands in flight up to `--qd`, the completion
//! queue polled by phase bit, doorbells at the stride CAP.DSTRD gives. Every wait has a
//! timeout, a fatal controller (CSTS.CFS) ends the run, and SIGINT/SIGTERM (read from a
//! signalfd, so no handler and no unsafe) stop it: in every case the queues are deleted, the
//! controller disabled and the DMA buffer unmapped before returning, so `restore` works.

use crate::nvme::{self, Latency, Namespace, Pattern, Status};
use crate::parse::Bdf;
use crate::plan::UsageError;
use crate::sys::Roots;
use crate::vfio::{self, Bar, Cap, Ctrl, Dma, Handshake};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use serde::Serialize;
use std::fs::File;
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

/// Where `bench` maps its DMA buffer in the device's IOVA space.
const IOVA: u64 = 0x1000_0000;
const QID: u16 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    None,
    /// Compare with this file, which holds the device's bytes from offset 0 (e.g. a `dd` dump).
    File(PathBuf),
    /// Check the self-checking pattern of `aether-part pattern` in every 4 KiB block.
    Crc,
}

#[derive(Debug, Clone)]
pub struct Opts {
    pub pattern: Pattern,
    pub qd: u32,
    pub bs: u64,
    pub seconds: f64,
    pub ios: Option<u64>,
    pub offset: u64,
    pub span: Option<u64>,
    pub verify: Verify,
    pub nsid: u32,
    pub seed: u64,
    pub timeout: Duration,
    /// Let reads past the namespace end reach the device (to test status reporting).
    pub unchecked: bool,
    /// Drive aether-core's engine and prefetch into a user-space cache (QD1 reader).
    pub prefetch: bool,
    /// Busy "application" time after each completed read, before the next (as fio's thinktime).
    pub think: Duration,
}

/// Spin for `d`: the reader's own work between reads (a sleep would hand the CPU away).
fn think(d: Duration) {
    if !d.is_zero() {
        let t = Instant::now();
        while t.elapsed() < d {
            std::hint::spin_loop();
        }
    }
}

impl Opts {
    /// Checks that need no device: bad values are refused before anything is opened.
    pub fn validate(&self) -> Result<(), UsageError> {
        let e = |m: String| Err(UsageError(m));
        if self.qd == 0 || self.qd > nvme::MAX_QD {
            return e(format!("--qd {} is out of range (1..={})", self.qd, nvme::MAX_QD));
        }
        if self.bs == 0 || self.bs % nvme::PAGE != 0 || self.bs > nvme::MAX_BS {
            return e(format!("--bs {} must be a multiple of 4096 bytes, at most {} KiB", self.bs, nvme::MAX_BS >> 10));
        }
        if !(self.seconds > 0.0 && self.seconds <= 3600.0) {
            return e(format!("--seconds {} is out of range (0, 3600]", self.seconds));
        }
        if self.ios == Some(0) {
            return e("--ios must be at least 1".into());
        }
        if self.offset % nvme::PAGE != 0 {
            return e(format!("--offset {} must be a multiple of 4096 bytes", self.offset));
        }
        if self.span.is_some_and(|s| s < self.bs) {
            return e(format!("--span {} is smaller than --bs {}", self.span.unwrap_or(0), self.bs));
        }
        if self.think > Duration::from_secs(1) {
            return e(format!("--think-us {} is above one second", self.think.as_micros()));
        }
        if self.prefetch && self.qd != 1 {
            return e(format!("--prefetch models one synchronous reader: use --qd 1, not {}", self.qd));
        }
        if self.nsid == 0 || self.nsid == u32::MAX {
            return e(format!("--nsid {} is not a valid namespace id", self.nsid));
        }
        if let Verify::File(p) = &self.verify {
            let m = std::fs::metadata(p).map_err(|err| UsageError(format!("--verify {}: {err}", p.display())))?;
            if m.len() < self.offset + self.bs {
                return e(format!("--verify {} holds {} bytes, less than --offset + --bs", p.display(), m.len()));
            }
        }
        Ok(())
    }
}

/// A read the device completed with an error status.
#[derive(Debug, Clone, Serialize)]
pub struct IoError {
    pub offset: u64,
    pub slba: u64,
    pub status: Status,
    pub message: String,
}

/// What `--prefetch` did: demand reads served from the cache (hits), from a prefetch still in
/// flight (late) or by the device (misses), and the engine's own counters.
#[derive(Debug, Default, Serialize)]
pub struct PrefetchReport {
    pub slots: u32,
    pub hits: u64,
    pub late: u64,
    pub misses: u64,
    pub extents_issued: u64,
    pub bytes_prefetched: u64,
    pub wasted: u64,
    pub engine_reads: u64,
    pub engine_gate_fired: u64,
    pub engine_timely: u64,
    pub engine_late: u64,
    pub engine_wasted: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub ok: bool,
    pub bdf: String,
    pub pattern: String,
    pub qd: u32,
    pub bs: u64,
    pub namespace: Option<Namespace>,
    pub offset: u64,
    pub span: u64,
    pub cap: Cap,
    pub doorbell_stride: u32,
    pub mdts_bytes: Option<u64>,
    pub ios: u64,
    pub elapsed_s: f64,
    pub iops: f64,
    pub mb_s: f64,
    pub latency: Latency,
    pub verify: String,
    pub verified_ios: u64,
    pub mismatches: u64,
    pub first_mismatch: Option<String>,
    pub io_error: Option<IoError>,
    pub prefetch: Option<PrefetchReport>,
    pub controller_fatal: bool,
    pub interrupted: bool,
    pub steps: Vec<String>,
    pub teardown: Vec<String>,
    pub error: Option<String>,
}

/// Block SIGINT and SIGTERM and read them from a non-blocking signalfd instead, so that an
/// interrupt is seen by the poll loop and the teardown always runs. They stay blocked until
/// the process exits (the caller reports and exits with 130).
fn signals() -> Result<SignalFd, String> {
    let mut m = SigSet::empty();
    m.add(Signal::SIGINT);
    m.add(Signal::SIGTERM);
    m.thread_block().map_err(|e| format!("blocking SIGINT/SIGTERM: {e}"))?;
    SignalFd::with_flags(&m, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(|e| format!("signalfd: {e}"))
}

pub fn bench(r: &Roots, b: &Bdf, o: &Opts) -> Report {
    let mut rep = Report {
        bdf: b.to_string(),
        pattern: o.pattern.to_string(),
        qd: o.qd,
        bs: o.bs,
        offset: o.offset,
        verify: match &o.verify {
            Verify::None => "none".into(),
            Verify::File(p) => format!("file {}", p.display()),
            Verify::Crc => "crc".into(),
        },
        ..Default::default()
    };
    let sig = match signals() {
        Ok(s) => s,
        Err(e) => {
            rep.error = Some(e);
            return rep;
        }
    };
    let mut h = Handshake { bdf: b.to_string(), ..Default::default() };
    let res = vfio::with_device(r, b, &mut h, |container, bar, h| run(container, bar, h, o, &sig, &mut rep));
    // The last step (BAR0 unmapped, group detached) happens after the teardown of `run`.
    let last = if h.steps.last().is_some_and(|s| s.starts_with("BAR0 unmapped")) { h.steps.pop() } else { None };
    rep.steps.append(&mut h.steps);
    rep.teardown.extend(last);
    rep.cap = h.cap;
    rep.doorbell_stride = 4 << rep.cap.dstrd;
    if let Err(e) = res {
        rep.error.get_or_insert(e);
    }
    if let Ok(Some(_)) = sig.read_signal() {
        rep.interrupted = true;
    }
    rep.ok = rep.error.is_none() && rep.mismatches == 0 && rep.io_error.is_none() && !rep.interrupted;
    rep
}

/// Prefetch slots of `--prefetch`, each with a buffer for the largest window aether-core opens.
const PF_SLOTS: u32 = 32;
const PF_BYTES: u64 = aether_core::MAX_WINDOW_SECTORS as u64 * 512;

/// Without `--prefetch`: `qd` slots of `bs`. With it: slot 0 for demand reads and
/// [`PF_SLOTS`] prefetch slots, all of the larger of `bs` and [`PF_BYTES`].
fn layout(o: &Opts) -> nvme::Layout {
    if o.prefetch {
        nvme::Layout::new(1 + PF_SLOTS, o.bs.max(PF_BYTES))
    } else {
        nvme::Layout::new(o.qd, o.bs)
    }
}

/// Set up, measure, and tear down on every path: delete the I/O queues (unless the controller
/// is fatal), disable the controller, unmap the DMA buffer.
fn run(container: &File, bar: &Bar, h: &mut Handshake, o: &Opts, sig: &SignalFd, rep: &mut Report) -> Result<(), String> {
    let lay = layout(o);
    if lay.qsize > h.cap.mqes {
        return Err(format!("{} commands in flight need {} queue entries; the controller allows {} (CAP.MQES)", lay.qsize - 1, lay.qsize, h.cap.mqes));
    }
    let (sq_db, cq_db) = nvme::doorbells(QID, h.cap.dstrd);
    if cq_db + 4 > bar.len {
        return Err(format!("I/O doorbells at 0x{sq_db:x}/0x{cq_db:x} (CAP.DSTRD={}) lie outside BAR0", h.cap.dstrd));
    }
    let len = NonZeroUsize::new(lay.len as usize).ok_or("empty DMA layout")?;
    let mut dma = Dma::new(container, len, IOVA)?;
    h.steps.push(format!("DMA buffer of {} KiB mapped at IOVA 0x{IOVA:x} (queues, PRP lists, {} x {} B data)", lay.len >> 10, o.qd, o.bs));
    let mut created = (false, false);
    let res = Ctrl::enable(bar, &dma, &h.cap, o.timeout).and_then(|mut c| {
        h.steps.push("controller enabled".into());
        let r = setup_and_measure(&mut c, &lay, o, sig, rep, &mut created, h);
        teardown(&mut c, created, rep);
        r
    });
    // Quiet the device before its memory goes: disable (again, if teardown already did), unmap.
    bar.w32(vfio::REG_CC, 0);
    match dma.unmap() {
        Ok(()) => rep.teardown.push("DMA buffer unmapped from the IOMMU".into()),
        Err(e) => {
            rep.teardown.push(format!("DMA unmap failed: {e}"));
            rep.error.get_or_insert(e);
        }
    }
    res
}

fn teardown(c: &mut Ctrl, created: (bool, bool), rep: &mut Report) {
    if let Some(csts) = c.fatal() {
        rep.controller_fatal = true;
        rep.teardown.push(format!("controller fatal (CSTS=0x{csts:x}): queues not deleted, controller reset"));
    } else {
        for (made, opc, what) in [(created.0, nvme::op::DELETE_SQ, "Delete I/O SQ"), (created.1, nvme::op::DELETE_CQ, "Delete I/O CQ")] {
            if made {
                match c.admin_ok(nvme::delete_queue_cmd(0, opc, QID), what) {
                    Ok(_) => rep.teardown.push(format!("{what} {QID}: done")),
                    Err(e) => {
                        rep.teardown.push(e.clone());
                        rep.error.get_or_insert(e);
                    }
                }
            }
        }
    }
    match c.disable() {
        Ok(()) => rep.teardown.push("controller disabled (CC.EN=0, CSTS.RDY=0)".into()),
        Err(e) => {
            rep.teardown.push(format!("disable: {e}"));
            rep.error.get_or_insert(e);
        }
    }
}

fn setup_and_measure(
    c: &mut Ctrl,
    lay: &nvme::Layout,
    o: &Opts,
    sig: &SignalFd,
    rep: &mut Report,
    created: &mut (bool, bool),
    h: &mut Handshake,
) -> Result<(), String> {
    let id = vfio::parse_identify(&c.identify(1, 0, "Identify Controller")?, c.cap.mpsmin_bytes);
    rep.mdts_bytes = id.mdts_bytes;
    h.steps.push(format!("Identify Controller: model '{}', serial '{}', MDTS {:?}", id.model, id.serial, id.mdts_bytes));
    if id.mdts_bytes.is_some_and(|m| o.bs > m) {
        return Err(format!("--bs {} exceeds the controller's transfer limit of {} bytes (MDTS)", o.bs, id.mdts_bytes.unwrap_or(0)));
    }
    let what = format!("Identify Namespace {}", o.nsid);
    let ns = nvme::parse_namespace(o.nsid, &c.identify(0, o.nsid, &what)?)
        .ok_or_else(|| format!("namespace {} is inactive or has an unsupported LBA format", o.nsid))?;
    rep.namespace = Some(ns);
    let ns_bytes = ns.blocks * ns.lba_bytes;
    h.steps.push(format!("{what}: {} blocks of {} bytes ({} MiB)", ns.blocks, ns.lba_bytes, ns_bytes >> 20));
    if o.bs % ns.lba_bytes != 0 || o.offset % ns.lba_bytes != 0 {
        return Err(format!("--bs {} and --offset {} must be multiples of the {}-byte LBA size", o.bs, o.offset, ns.lba_bytes));
    }
    let mut verify_file = None;
    let mut span = o.span.unwrap_or(ns_bytes.saturating_sub(o.offset));
    if let Verify::File(p) = &o.verify {
        let f = File::open(p).map_err(|e| format!("--verify {}: {e}", p.display()))?;
        let flen = f.metadata().map_err(|e| format!("--verify {}: {e}", p.display()))?.len();
        if o.span.is_none() {
            span = span.min(flen.saturating_sub(o.offset));
        } else if o.offset + span > flen {
            return Err(format!("--verify {} holds {flen} bytes, less than --offset + --span", p.display()));
        }
        verify_file = Some(f);
    }
    span -= span % o.bs;
    if span < o.bs || (!o.unchecked && o.offset + span > ns_bytes) {
        return Err(format!("--offset {} + --span {} does not fit namespace {} ({ns_bytes} bytes) with --bs {}", o.offset, span, o.nsid, o.bs));
    }
    rep.span = span;

    c.admin_ok(nvme::set_num_queues_cmd(0, 1), "Set Features (Number of Queues)")?;
    let iova = c.dma.iova;
    c.admin_ok(nvme::create_cq_cmd(0, QID, lay.qsize, iova + lay.io_cq), "Create I/O CQ")?;
    created.1 = true;
    c.admin_ok(nvme::create_sq_cmd(0, QID, lay.qsize, iova + lay.io_sq, QID), "Create I/O SQ")?;
    created.0 = true;
    h.steps.push(format!("I/O queue pair {QID} created: {} entries, polled (interrupts off), doorbell stride {}", lay.qsize, 4 << c.cap.dstrd));
    if o.prefetch {
        measure_prefetch(c, lay, o, ns, span, verify_file.as_ref(), sig, rep)
    } else {
        measure(c, lay, o, ns, span, verify_file.as_ref(), sig, rep)
    }
}

/// The timed loop. Keeps `o.qd` reads in flight until the time or count is up, then drains.
#[allow(clippy::too_many_arguments)]
fn measure(
    c: &mut Ctrl,
    lay: &nvme::Layout,
    o: &Opts,
    ns: Namespace,
    span: u64,
    verify_file: Option<&File>,
    sig: &SignalFd,
    rep: &mut Report,
) -> Result<(), String> {
    let dma = c.dma;
    let bar = c.bar;
    let (sq_db, cq_db) = nvme::doorbells(QID, c.cap.dstrd);
    let prp = write_prp_lists(dma, lay, o.qd, o.bs);
    let mut offsets = nvme::Offsets::new(o.pattern, o.offset, o.bs, span, o.seed);
    let nlb = (o.bs / ns.lba_bytes) as u32;
    let mut inflight: Vec<Option<(Instant, u64)>> = vec![None; o.qd as usize];
    let mut lat_ns: Vec<u64> = Vec::with_capacity(1 << 16);
    let (mut tail, mut head, mut phase) = (0u32, 0u32, true);
    let (mut submitted, mut outstanding) = (0u64, 0u32);
    let mut got = vec![0u8; if o.verify == Verify::None { 0 } else { o.bs as usize }];
    let mut want = vec![0u8; if verify_file.is_some() { o.bs as usize } else { 0 }];
    let mut stop = false;

    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(o.seconds);
    let mut submit = |slot: u32, inflight: &mut Vec<Option<(Instant, u64)>>, tail: &mut u32| {
        let off = offsets.next().unwrap_or(o.offset);
        let (p1, p2) = prp[slot as usize];
        let e = nvme::read_cmd(slot as u16, ns.nsid, off / ns.lba_bytes, nlb, p1, p2);
        dma.write_sqe(lay.io_sq + 64 * *tail as u64, &e);
        *tail = (*tail + 1) % lay.qsize;
        inflight[slot as usize] = Some((Instant::now(), off));
    };
    for slot in 0..o.qd {
        if o.ios.is_some_and(|n| submitted >= n) {
            break;
        }
        submit(slot, &mut inflight, &mut tail);
        submitted += 1;
        outstanding += 1;
    }
    fence(Ordering::SeqCst);
    bar.w32(sq_db, tail);

    let mut spins = 0u32;
    let mut next_check = start + Duration::from_millis(10);
    while outstanding > 0 {
        let cqe = lay.io_cq + 16 * head as u64;
        let dw3 = dma.r32(cqe + 12);
        if (dw3 & (1 << 16) != 0) != phase {
            spins = spins.wrapping_add(1);
            if spins % 256 != 0 {
                std::hint::spin_loop();
                continue;
            }
            let now = Instant::now();
            if now < next_check {
                continue;
            }
            next_check = now + Duration::from_millis(10);
            if let Some(csts) = c.fatal() {
                rep.controller_fatal = true;
                return Err(format!("controller fatal status (CSTS=0x{csts:x}) with {outstanding} reads in flight"));
            }
            if let Some(oldest) = inflight.iter().flatten().map(|(t, _)| *t).min() {
                if now.duration_since(oldest) > o.timeout {
                    return Err(format!("a read got no completion within {:?} ({outstanding} in flight)", o.timeout));
                }
            }
            if !stop && matches!(sig.read_signal(), Ok(Some(_))) {
                rep.interrupted = true;
                stop = true;
            }
            if !stop && now >= deadline {
                stop = true;
            }
            continue;
        }
        // The entry is ours: read the rest of it only after seeing the phase bit.
        fence(Ordering::Acquire);
        head = (head + 1) % lay.qsize;
        if head == 0 {
            phase = !phase;
        }
        bar.w32(cq_db, head);
        let cid = dw3 & 0xffff;
        let Some((t0, off)) = inflight.get_mut(cid as usize).and_then(|s| s.take()) else {
            return Err(format!("completion for command id {cid}, which is not in flight"));
        };
        let now = Instant::now();
        outstanding -= 1;
        let st = Status::from_dw3(dw3);
        if !st.ok() {
            let msg = format!("read of {} bytes at byte {off} (LBA {}) failed: {st}", o.bs, off / ns.lba_bytes);
            rep.io_error.get_or_insert(IoError { offset: off, slba: off / ns.lba_bytes, status: st, message: msg });
            stop = true;
        } else {
            lat_ns.push(now.duration_since(t0).as_nanos() as u64);
            rep.ios += 1;
            if !got.is_empty() {
                dma.copy_out(lay.data_of(cid, o.bs), &mut got);
                let bad = match verify_file {
                    Some(f) => {
                        f.read_exact_at(&mut want, off).map_err(|e| format!("reading the --verify file at {off}: {e}"))?;
                        got.iter()
                            .zip(&want)
                            .position(|(a, b)| a != b)
                            .map(|i| format!("byte {} differs from the --verify file", off + i as u64))
                    }
                    None => got.chunks_exact(nvme::CHECK_BLOCK).enumerate().find_map(|(i, blk)| {
                        nvme::check_block(blk, off + (i * nvme::CHECK_BLOCK) as u64).err()
                    }),
                };
                rep.verified_ios += 1;
                if let Some(m) = bad {
                    rep.mismatches += 1;
                    rep.first_mismatch.get_or_insert(m);
                }
            }
        }
        if !stop && (now >= deadline || o.ios.is_some_and(|n| submitted >= n)) {
            stop = true;
        }
        // A queue that never runs empty still looks for signals every 10 ms.
        if !stop && now >= next_check {
            next_check = now + Duration::from_millis(10);
            if matches!(sig.read_signal(), Ok(Some(_))) {
                rep.interrupted = true;
                stop = true;
            }
        }
        if !stop {
            think(o.think);
            submit(cid, &mut inflight, &mut tail);
            submitted += 1;
            outstanding += 1;
            fence(Ordering::SeqCst);
            bar.w32(sq_db, tail);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    rep.elapsed_s = elapsed;
    rep.iops = rep.ios as f64 / elapsed;
    rep.mb_s = rep.ios as f64 * o.bs as f64 / elapsed / 1e6;
    rep.latency = nvme::latency(&mut lat_ns);
    Ok(())
}

/// Each slot (= command id) has a fixed data buffer of `bs` bytes, so its PRP list is written
/// once; a shorter transfer uses a prefix of it. Returns (PRP1, PRP2) per slot for `bs` bytes.
fn write_prp_lists(dma: &Dma, lay: &nvme::Layout, slots: u32, bs: u64) -> Vec<(u64, u64)> {
    (0..slots)
        .map(|s| {
            let (p1, p2, list) = nvme::prps(dma.iova + lay.data_of(s, bs), bs, dma.iova + lay.prp_list_of(s));
            dma.write_u64s(lay.prp_list_of(s), &list);
            (p1, p2)
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    Slot(u32),
    Idle,
    NoneReady,
}

/// The I/O queue pair's ring state for the prefetch loop.
struct IoQ {
    sq_db: usize,
    cq_db: usize,
    tail: u32,
    head: u32,
    phase: bool,
    inflight: Vec<Option<Instant>>,
}

impl IoQ {
    fn submit(&mut self, dma: &Dma, lay: &nvme::Layout, e: &nvme::Sqe, slot: u32) {
        dma.write_sqe(lay.io_sq + 64 * self.tail as u64, e);
        self.tail = (self.tail + 1) % lay.qsize;
        self.inflight[slot as usize] = Some(Instant::now());
    }
    fn ring(&self, bar: &Bar) {
        fence(Ordering::SeqCst);
        bar.w32(self.sq_db, self.tail);
    }
    /// The next completion, if one is there: (command id, status).
    fn poll(&mut self, dma: &Dma, bar: &Bar, lay: &nvme::Layout) -> Result<Option<(u32, Status)>, String> {
        let dw3 = dma.r32(lay.io_cq + 16 * self.head as u64 + 12);
        if (dw3 & (1 << 16) != 0) != self.phase {
            return Ok(None);
        }
        fence(Ordering::Acquire);
        self.head = (self.head + 1) % lay.qsize;
        if self.head == 0 {
            self.phase = !self.phase;
        }
        bar.w32(self.cq_db, self.head);
        let cid = dw3 & 0xffff;
        match self.inflight.get_mut(cid as usize).and_then(|s| s.take()) {
            Some(_) => Ok(Some((cid, Status::from_dw3(dw3)))),
            None => Err(format!("completion for command id {cid}, which is not in flight")),
        }
    }
    fn outstanding(&self) -> usize {
        self.inflight.iter().flatten().count()
    }
}

/// `--prefetch`: one synchronous reader (slot 0) and aether-core's engine deciding, after every
/// demand read, what to read ahead into the prefetch slots. A demand read inside a cached
/// extent is copied from it (hit), inside one in flight waits for it (late), else goes to the
/// device (miss). The engine gets the same calls as in the kernel target: `on_read` per demand
/// read, `record_latency` per device read, `on_feedback` per prefetched extent.
#[allow(clippy::too_many_arguments)]
fn measure_prefetch(
    c: &mut Ctrl,
    lay: &nvme::Layout,
    o: &Opts,
    ns: Namespace,
    span: u64,
    verify_file: Option<&File>,
    sig: &SignalFd,
    rep: &mut Report,
) -> Result<(), String> {
    use crate::prefetch::{Cache, Lookup};
    let (dma, bar) = (c.dma, c.bar);
    let slot_bytes = o.bs.max(PF_BYTES);
    write_prp_lists(dma, lay, 1 + PF_SLOTS, slot_bytes);
    let (sq_db, cq_db) = nvme::doorbells(QID, c.cap.dstrd);
    let mut q = IoQ { sq_db, cq_db, tail: 0, head: 0, phase: true, inflight: vec![None; 1 + PF_SLOTS as usize] };
    let mut cache = Cache::new(1, PF_SLOTS);
    let mut eng = aether_core::Engine::new(aether_core::Params::DEFAULT);
    let ns_bytes = ns.blocks * ns.lba_bytes;
    eng.set_capacity(ns_bytes / 512);
    let mut pf = PrefetchReport { slots: PF_SLOTS, ..Default::default() };
    let mut offsets = nvme::Offsets::new(o.pattern, o.offset, o.bs, span, o.seed);
    let mut lat_ns: Vec<u64> = Vec::with_capacity(1 << 16);
    let mut got = vec![0u8; o.bs as usize];
    let mut want = vec![0u8; if verify_file.is_some() { o.bs as usize } else { 0 }];
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(o.seconds);
    let mut next_check = start + Duration::from_millis(10);
    let read_cmd = |slot: u32, off: u64, len: u64| {
        let (p1, p2, _) = nvme::prps(dma.iova + lay.data_of(slot, slot_bytes), len, dma.iova + lay.prp_list_of(slot));
        nvme::read_cmd(slot as u16, ns.nsid, off / ns.lba_bytes, (len / ns.lba_bytes) as u32, p1, p2)
    };
    let mut fail: Option<String> = None;

    // Poll until `want` completes, recording prefetch arrivals on the way.
    let wait = |q: &mut IoQ, cache: &mut Cache, want: Until, rep: &mut Report, next_check: &mut Instant| -> Result<(), String> {
        loop {
            let done = match want {
                Until::Slot(w) => q.inflight[w as usize].is_none(),
                Until::Idle => q.outstanding() == 0,
                Until::NoneReady => false,
            };
            if done {
                return Ok(());
            }
            match q.poll(dma, bar, lay)? {
                Some((cid, st)) => {
                    if !st.ok() {
                        let off = if cid == 0 { None } else { cache.extent(cid).map(|e| e.start) };
                        let off = off.unwrap_or(0);
                        let msg = format!("read at byte {off} (LBA {}) failed: {st}", off / ns.lba_bytes);
                        rep.io_error.get_or_insert(IoError { offset: off, slba: off / ns.lba_bytes, status: st, message: msg.clone() });
                        return Err(msg);
                    }
                    if cid != 0 {
                        cache.arrived(cid);
                    }
                }
                None if want == Until::NoneReady => return Ok(()),
                None => {
                    let now = Instant::now();
                    if now >= *next_check {
                        *next_check = now + Duration::from_millis(10);
                        if let Some(csts) = c.fatal() {
                            rep.controller_fatal = true;
                            return Err(format!("controller fatal status (CSTS=0x{csts:x})"));
                        }
                        if q.inflight.iter().flatten().any(|t| now.duration_since(*t) > o.timeout) {
                            return Err(format!("a read got no completion within {:?}", o.timeout));
                        }
                    }
                    std::hint::spin_loop();
                }
            }
        }
    };

    while Instant::now() < deadline && o.ios.is_none_or(|n| rep.ios < n) {
        if Instant::now() >= next_check {
            next_check = Instant::now() + Duration::from_millis(10);
            if matches!(sig.read_signal(), Ok(Some(_))) {
                rep.interrupted = true;
                break;
            }
        }
        let off = offsets.next().unwrap_or(o.offset);
        let t0 = Instant::now();
        // Take in what has arrived, so hit and late are told apart by the data, not by when
        // the completion queue was last looked at.
        if let Err(e) = wait(&mut q, &mut cache, Until::NoneReady, rep, &mut next_check) {
            fail = Some(e);
            break;
        }
        let mut device_ns = None;
        let (slot, base, was_ready) = match cache.lookup(off, o.bs) {
            Lookup::Hit(s) => {
                pf.hits += 1;
                (s, cache.extent(s).map_or(off, |e| e.start), true)
            }
            Lookup::InFlight(s) => {
                pf.late += 1;
                if let Err(e) = wait(&mut q, &mut cache, Until::Slot(s), rep, &mut next_check) {
                    fail = Some(e);
                    break;
                }
                (s, cache.extent(s).map_or(off, |e| e.start), false)
            }
            Lookup::Miss => {
                pf.misses += 1;
                q.submit(dma, lay, &read_cmd(0, off, o.bs), 0);
                q.ring(bar);
                if let Err(e) = wait(&mut q, &mut cache, Until::Slot(0), rep, &mut next_check) {
                    fail = Some(e);
                    break;
                }
                device_ns = Some(t0.elapsed().as_nanos() as u64);
                (0, off, false)
            }
        };
        // Serve the read: a copy out of the slot's buffer (the cache hit's real cost).
        dma.copy_out(lay.data_of(slot, slot_bytes) + (off - base), &mut got);
        if slot != 0 {
            if let Some((stream, outcome)) = cache.use_extent(slot, off, o.bs, was_ready) {
                eng.on_feedback(stream, outcome);
            }
        }
        let now = Instant::now();
        lat_ns.push(now.duration_since(t0).as_nanos() as u64);
        rep.ios += 1;
        if o.verify != Verify::None {
            let bad = match verify_file {
                Some(f) => {
                    f.read_exact_at(&mut want, off).map_err(|e| format!("reading the --verify file at {off}: {e}"))?;
                    got.iter().zip(&want).position(|(a, b)| a != b).map(|i| format!("byte {} differs from the --verify file", off + i as u64))
                }
                None => got.chunks_exact(nvme::CHECK_BLOCK).enumerate().find_map(|(i, blk)| nvme::check_block(blk, off + (i * nvme::CHECK_BLOCK) as u64).err()),
            };
            rep.verified_ios += 1;
            if let Some(m) = bad {
                rep.mismatches += 1;
                rep.first_mismatch.get_or_insert(m);
            }
        }
        if let Some(ns_) = device_ns {
            eng.record_latency(ns_);
        }
        let d = eng.on_read(off / 512, (o.bs / 512) as u32, now.duration_since(start).as_nanos() as u64);
        let mut issued = false;
        for i in 0..d.count {
            let Some((sec, n)) = d.extent(i) else { break };
            let (s0, len) = (sec * 512, (n as u64 * 512).min(slot_bytes));
            if s0 % ns.lba_bytes != 0 || len % ns.lba_bytes != 0 || len == 0 || s0 + len > ns_bytes || cache.overlaps(s0, len) {
                continue;
            }
            let Some((slot, evicted)) = cache.alloc() else { break };
            if let Some(st) = evicted {
                pf.wasted += 1;
                eng.on_feedback(st, aether_core::Outcome::Wasted);
            }
            q.submit(dma, lay, &read_cmd(slot, s0, len), slot);
            cache.insert(slot, s0, len, d.stream);
            pf.extents_issued += 1;
            pf.bytes_prefetched += len;
            issued = true;
        }
        if issued {
            q.ring(bar);
        }
        think(o.think);
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Drain the prefetches still in flight before the queues are deleted.
    let drained = wait(&mut q, &mut cache, Until::Idle, rep, &mut next_check);
    pf.wasted += cache.unused().count() as u64;
    let st = eng.stats();
    (pf.engine_reads, pf.engine_gate_fired, pf.engine_timely, pf.engine_late, pf.engine_wasted) = (st.reads, st.gate_fired, st.timely, st.late, st.wasted);
    rep.prefetch = Some(pf);
    rep.elapsed_s = elapsed;
    rep.iops = rep.ios as f64 / elapsed;
    rep.mb_s = rep.ios as f64 * o.bs as f64 / elapsed / 1e6;
    rep.latency = nvme::latency(&mut lat_ns);
    if let Some(e) = fail {
        return Err(e);
    }
    drained
}

/// The text form of a report.
pub fn text(r: &Report) -> String {
    let mut t = String::new();
    for s in &r.steps {
        t += &format!("  {s}\n");
    }
    for s in &r.teardown {
        t += &format!("  teardown: {s}\n");
    }
    if let Some(ns) = &r.namespace {
        t += &format!(
            "{} ns{}: {} {} B QD{} over {} MiB at byte {}: {} reads in {:.2} s\n",
            r.bdf, ns.nsid, r.pattern, r.bs, r.qd, r.span >> 20, r.offset, r.ios, r.elapsed_s
        );
    }
    if r.ios > 0 {
        let l = &r.latency;
        t += &format!(
            "  {:.0} IOPS, {:.1} MB/s, latency us: mean {:.1} p50 {:.1} p99 {:.1} p99.9 {:.1} max {:.1}\n",
            r.iops, r.mb_s, l.mean_us, l.p50_us, l.p99_us, l.p999_us, l.max_us
        );
    }
    if r.verify != "none" {
        t += &format!("  verify ({}): {} reads checked, {} mismatched\n", r.verify, r.verified_ios, r.mismatches);
    }
    if let Some(m) = &r.first_mismatch {
        t += &format!("  first mismatch: {m}\n");
    }
    if let Some(p) = &r.prefetch {
        t += &format!(
            "  prefetch ({} slots): {} hits, {} late, {} misses; {} extents ({} KiB) issued, {} wasted; engine: {} reads, gate fired {}\n",
            p.slots, p.hits, p.late, p.misses, p.extents_issued, p.bytes_prefetched >> 10, p.wasted, p.engine_reads, p.engine_gate_fired
        );
    }
    if r.interrupted {
        t += "  interrupted: stopped submitting, drained, tore down\n";
    }
    t
}
