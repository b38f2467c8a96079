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

/// Set up, measure, and tear down on every path: delete the I/O queues (unless the controller
/// is fatal), disable the controller, unmap the DMA buffer.
fn run(container: &File, bar: &Bar, h: &mut Handshake, o: &Opts, sig: &SignalFd, rep: &mut Report) -> Result<(), String> {
    let lay = nvme::Layout::new(o.qd, o.bs);
    if o.qd + 1 > h.cap.mqes {
        return Err(format!("--qd {} needs {} queue entries; the controller allows {} (CAP.MQES)", o.qd, o.qd + 1, h.cap.mqes));
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
    bar.w32(0x14, 0);
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
    measure(c, lay, o, ns, span, verify_file.as_ref(), sig, rep)
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
    // Each slot (= command id) has a fixed data buffer, so its PRP list is written once.
    let mut prp = Vec::with_capacity(o.qd as usize);
    for s in 0..o.qd {
        let (p1, p2, list) = nvme::prps(dma.iova + lay.data_of(s, o.bs), o.bs, dma.iova + lay.prp_list_of(s));
        dma.write_u64s(lay.prp_list_of(s), &list);
        prp.push((p1, p2));
    }
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
    if r.interrupted {
        t += "  interrupted: stopped submitting, drained, tore down\n";
    }
    t
}
