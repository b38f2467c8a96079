// SPDX-License-Identifier: GPL-2.0

//! The `aether` device-mapper target: where every bio enters.
//!
//! Table line: `<start> <len> aether <dev_path> [<#opt_args> <key> <value>...]`
//! with keys `enabled` and the gate parameters (`phi`, `epsilon`, ...).
//!
//! `map` passes every bio through to the NVMe namespace. Reads and writes also
//! go through aether-core's stream detector; for reads the gate decides whether
//! (and how far) to prefetch. In this version decisions are counted, not issued.
//! `end_io` records completion latency per CPU.

use crate::aether_core::{Engine, Params};
use crate::devices::{Attachment, Registry};
use crate::kernel_ext::bio::{Bio, BioOp};
use crate::kernel_ext::dm::{
    BlkStatus, DevId, DeviceVisitor, MapResult, ResultWriter, StatusType, Target, TargetOperations, FEATURE_NOWAIT,
};
use crate::kernel_ext::print::ratelimit;
use crate::kernel_ext::time::ktime_get_ns;
use crate::telemetry::{Counter, Direction, Telemetry};
use crate::tuning::{self, DeviceTuning, TuneError, Tunable, DEFAULTS};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
use kernel::{c_str, ffi::c_int, new_spinlock, prelude::*, str::CStr, sync::{Arc, SpinLock}};

/// Longest `dmsetup table` argument text we keep.
const TABLE_ARGS_MAX: usize = 256;

/// What `map` leaves in a bio's per-bio data for `end_io`.
#[derive(Clone, Copy)]
pub(crate) struct PerBio {
    /// `ktime_get()` when the bio was mapped.
    start_ns: i64,
    /// Which latency histogram the completion goes to, if any.
    dir: Option<Direction>,
}

/// Gate state of one device: changed only under its lock.
pub(crate) struct Gate {
    pub(crate) params: Params,
    pub(crate) engine: KBox<Engine>,
}

/// State shared by the target, its debugfs files and its messages.
///
/// Holds no device reference: debugfs readers may keep it alive briefly past
/// `dtr`. The device is reached only through the `Target` of a callback.
#[pin_data]
pub(crate) struct Shared {
    /// The underlying device as `major:minor`, for `dmsetup table`.
    dev_name: KVec<u8>,
    /// Whether reads go through the gate.
    pub(crate) enabled: AtomicBool,
    /// The stream detector and gate. Taken once per read or write bio, from
    /// process context only (never from `end_io`, which runs in IRQ context).
    #[pin]
    pub(crate) gate: SpinLock<Gate>,
    pub(crate) telemetry: Telemetry,
    /// The optional table arguments as given, for `dmsetup table`.
    table_args: KVec<u8>,
}

impl DeviceTuning for Shared {
    fn set(&self, name: &str, value: &str) -> Result<(), TuneError> {
        let mut gate = self.gate.lock();
        let mut enabled = self.enabled.load(Relaxed);
        let mut params = gate.params;
        tuning::apply(&mut params, &mut enabled, name, value)?;
        if params != gate.params {
            gate.params = params;
            gate.engine.set_params(params);
        }
        self.enabled.store(enabled, Relaxed);
        Ok(())
    }

    fn get(&self, t: Tunable, w: &mut dyn Write) -> core::fmt::Result {
        let params = self.gate.lock().params;
        tuning::show(&params, self.enabled.load(Relaxed), t, w)
    }

    fn write_stats(&self, w: &mut dyn Write, sep: &str, end: &str) -> core::fmt::Result {
        self.telemetry.snapshot().write_fields(w, sep, end)?;
        let s = self.gate.lock().engine.stats();
        write!(w, "enabled{}{}{}", sep, u8::from(self.enabled.load(Relaxed)), end)?;
        write!(w, "streams_created{}{}{}", sep, s.new_streams, end)?;
        // Decimals, like the tunables they derive from.
        write!(w, "gate_epsilon_eff{}", sep)?;
        tuning::write_q16(i32::try_from(s.epsilon_eff).unwrap_or(i32::MAX), w)?;
        write!(w, "{}gate_phi{}", end, sep)?;
        tuning::write_q16(s.phi, w)?;
        w.write_str(end)?;
        write!(w, "depth_cap{}{}{}", sep, s.depth_cap, end)
    }

    fn write_histograms(&self, w: &mut dyn Write) -> core::fmt::Result {
        self.telemetry.snapshot().write_histograms(w)
    }

    fn reset_stats(&self) {
        self.telemetry.reset();
    }
}

/// Allocates a ready engine for a device of `capacity` sectors. The engine is
/// built in zeroed heap memory and initialised in place: built by value it
/// would put several KiB on the kernel stack.
pub(crate) fn new_engine(params: Params, capacity: u64) -> Result<KBox<Engine>> {
    let mut engine: KBox<Engine> = KBox::init(kernel::init::zeroed(), GFP_KERNEL)?;
    engine.reset(params);
    engine.set_capacity(capacity);
    Ok(engine)
}

/// One `aether` table line. Fields drop in order: leave the device registry
/// (which may remove the debugfs files, waiting for their readers), then the
/// shared state. `kernel_ext::dm` puts the device afterwards, inside `dtr`.
pub(crate) struct AetherTarget {
    attachment: Attachment,
    shared: Arc<Shared>,
    dev: DevId,
}

/// Reports a bad table line: one dmesg line naming the problem, and the
/// `ti->error` string `dmsetup` prints.
fn ctr_error(target: &mut Target, msg: &'static CStr, detail: &str) -> Error {
    pr_err!("bad table line: {} ({})\n", msg.to_str().unwrap_or("?"), detail);
    target.set_error(msg);
    EINVAL
}

/// Parses `[<#opt_args> <key> <value>...]` into `params`/`enabled`, and keeps
/// the text for `dmsetup table`.
fn parse_opt_args(target: &mut Target, args: &[&CStr], params: &mut Params, enabled: &mut bool, text: &mut KVec<u8>) -> Result {
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
        if let Err(e) = tuning::apply(params, enabled, k, v) {
            let msg = match e {
                TuneError::UnknownName => c_str!("Unknown optional argument"),
                _ => c_str!("Invalid optional argument value"),
            };
            pr_err!("bad table line: {} {}: {}\n", k, v, e.as_str());
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

impl TargetOperations for AetherTarget {
    type PerBio = PerBio;
    /// The mapped devices with aether tables and their debugfs directories.
    type Context = Arc<Registry>;

    /// `map` takes only a spinlock and never allocates or sleeps.
    const FEATURES: u64 = FEATURE_NOWAIT;

    fn ctr(registry: &Arc<Registry>, target: &mut Target, args: &[&CStr]) -> Result<Pin<KBox<Self>>> {
        let Some((path, opt)) = args.split_first() else {
            return Err(ctr_error(target, c_str!("Missing device path"), "usage: <dev_path> [<#opt_args> <key> <value>...]"));
        };
        let (mut params, mut enabled) = DEFAULTS.load();
        let mut table_args = KVec::new();
        parse_opt_args(target, opt, &mut params, &mut enabled, &mut table_args)?;

        let dev_id = match target.open_device(path) {
            Ok(id) => id,
            Err(e) => {
                pr_err!("cannot open device {}: error {}\n", path.to_str().unwrap_or("?"), e.to_errno());
                target.set_error(c_str!("Device lookup failed"));
                return Err(e);
            }
        };
        let dev = target.device(dev_id).ok_or(ENODEV)?;
        let engine = new_engine(params, dev.sectors())?;
        let mut dev_name = KVec::new();
        dev_name.extend_from_slice(dev.name().as_bytes(), GFP_KERNEL)?;
        let shared = Arc::pin_init(
            try_pin_init!(Shared {
                dev_name,
                enabled: AtomicBool::new(enabled),
                gate <- new_spinlock!(Gate { params, engine }, "aether_gate"),
                telemetry: Telemetry::new()?,
                table_args,
            }),
            GFP_KERNEL,
        )?;
        let attachment = registry.attach(target.mapped_device(), &shared)?;
        Ok(KBox::pin(Self { attachment, shared, dev: dev_id }, GFP_KERNEL)?)
    }

    fn resume(&self, target: &Target) {
        self.attachment.make_live(target.mapped_device());
    }

    fn map(&self, target: &Target, bio: &mut Bio) -> (MapResult, PerBio) {
        let s = &self.shared;
        let now = ktime_get_ns();
        let offset = bio.sector().wrapping_sub(target.begin());
        let bytes = u64::from(bio.size());
        let sectors = bio.size() >> 9;
        let mut dir = None;
        // Writes and discards invalidate what the detector knows of a range.
        let mut overwrites = false;
        match bio.op() {
            BioOp::Read => {
                s.telemetry.add(Counter::Reads, 1);
                s.telemetry.add(Counter::ReadBytes, bytes);
                dir = Some(Direction::Read);
                if s.enabled.load(Relaxed) && sectors != 0 {
                    let d = s.gate.lock().engine.on_read(offset, sectors, now as u64);
                    if d.prefetch {
                        s.telemetry.add(Counter::GateOpen, 1);
                        s.telemetry.add(Counter::GateSectors, d.total_sectors());
                    } else {
                        s.telemetry.add(Counter::GateClosed, 1);
                    }
                }
            }
            BioOp::Write if sectors == 0 => s.telemetry.add(Counter::Flushes, 1),
            BioOp::Write | BioOp::WriteZeroes => {
                s.telemetry.add(Counter::Writes, 1);
                s.telemetry.add(Counter::WriteBytes, bytes);
                dir = Some(Direction::Write);
                overwrites = true;
            }
            BioOp::Discard => {
                s.telemetry.add(Counter::Discards, 1);
                overwrites = true;
            }
            BioOp::Flush => s.telemetry.add(Counter::Flushes, 1),
            BioOp::Other => s.telemetry.add(Counter::Other, 1),
        }
        if overwrites && s.enabled.load(Relaxed) {
            s.gate.lock().engine.on_write(offset, sectors, now as u64);
        }
        let per_bio = PerBio { start_ns: now, dir };
        // `ctr` opened the device for this target, so the lookup cannot fail.
        let Some(dev) = target.device(self.dev) else { return (MapResult::Kill, per_bio) };
        bio.remap(dev, offset);
        (MapResult::Remapped, per_bio)
    }

    fn end_io(&self, _bio: &Bio, per_bio: &PerBio, status: BlkStatus) {
        let Some(dir) = per_bio.dir else { return };
        let t = &self.shared.telemetry;
        if !status.is_ok() {
            t.add(if dir == Direction::Read { Counter::ReadErrors } else { Counter::WriteErrors }, 1);
        }
        t.record_latency(dir, ktime_get_ns().saturating_sub(per_bio.start_ns) as u64);
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
