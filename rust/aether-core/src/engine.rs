//! The per-device prefetch engine: the API the kernel module calls per bio.
//!
//! ```text
//! let mut e = Engine::new(Params::default());
//! let d = e.on_read(lba_sector, sectors, now_ns);   // every demand read
//! for i in 0..d.count { if let Some((start, len)) = d.extent(i) { /* issue readahead */ } }
//! e.on_write(lba_sector, sectors, now_ns);          // writes / discards
//! e.on_feedback(d.stream, Outcome::Timely);         // per prefetched extent
//! e.record_latency(ns);                             // demand read completed by the device
//! ```
//!
//! Cost per read: one stream lookup (one comparison on the fast path,
//! otherwise a scan of [`STREAM_SLOTS`] slots), an O(`HIST`) feature update,
//! three table lookups and one sigmoid lookup.  No allocation, no floats,
//! no panics.

use super::depth::P99Guard;
use super::gate::{Gate, GateEval};
use super::param::{ParamError, Params};
use super::stream::{window_cap, Lookup, Stream, StreamTable, HIST, STREAM_SLOTS};

/// Maximum lookahead of one stream, in sectors: 512 sectors = 256 KiB of
/// data prefetched and not yet consumed ahead of the stream's last read.
/// Requests larger than this get a single extent of this size (the first
/// 256 KiB of the next request), never a whole request of lookahead.  The
/// simulator gives every baseline the same cap in bytes.
pub const MAX_WINDOW_SECTORS: u32 = 512;

/// Identifies a stream for feedback: slot in the low 8 bits, generation in
/// the upper 24 bits (so feedback for a recycled slot is recognised).
/// At most 256 slots ([`Engine::stream_slots`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StreamId(pub u32);

impl StreamId {
    /// Slot index.
    pub fn slot(self) -> usize {
        (self.0 & 0xff) as usize
    }
    /// Generation.
    pub fn generation(self) -> u32 {
        self.0 >> 8
    }
}

/// What happened to prefetched data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Used by a demand read after it had arrived.
    Timely,
    /// Used by a demand read while still in flight.
    Late,
    /// Evicted or invalidated without being used.
    Wasted,
}

/// The engine's answer for one demand read.
///
/// When `prefetch` is true, issue `count` extents of `sectors` sectors; the
/// `i`-th starts at `start + i * stride` (see [`Decision::extent`]).  For a
/// sequential stream `stride == sectors`, so the extents form one
/// contiguous range of `count * sectors` sectors starting at `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decision {
    /// Whether to issue a prefetch.
    pub prefetch: bool,
    /// Stream the read was assigned to (pass back in [`Engine::on_feedback`]).
    pub stream: StreamId,
    /// First sector of the first extent.
    pub start: u64,
    /// Length of each extent, sectors.
    pub sectors: u32,
    /// Distance between extent starts, sectors (negative for reverse streams).
    pub stride: i64,
    /// Number of extents.
    pub count: u32,
    /// Gate probability `P` (Q16, `65536 == 1.0`).
    pub probability: u32,
}

impl Decision {
    /// Start and length of extent `i`, or `None` if `i >= count` or it is not
    /// representable.
    pub fn extent(&self, i: u32) -> Option<(u64, u32)> {
        if !self.prefetch || i >= self.count {
            return None;
        }
        let off = self.stride.checked_mul(i as i64)?;
        let s = if off >= 0 {
            self.start.checked_add(off as u64)?
        } else {
            self.start.checked_sub(off.unsigned_abs())?
        };
        Some((s, self.sectors))
    }

    /// True when the extents are adjacent and ascending (one range).
    pub fn is_contiguous(&self) -> bool {
        self.stride == self.sectors as i64
    }

    /// Total sectors requested.
    pub fn total_sectors(&self) -> u64 {
        if self.prefetch {
            (self.count as u64).saturating_mul(self.sectors as u64)
        } else {
            0
        }
    }
}

/// Counters and learned state, for debugfs / the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Demand reads seen.
    pub reads: u64,
    /// Writes / discards seen.
    pub writes: u64,
    /// Streams started.
    pub new_streams: u64,
    /// Reads for which the gate fired.
    pub gate_fired: u64,
    /// Prefetch decisions issued.
    pub prefetches: u64,
    /// Extents issued.
    pub extents: u64,
    /// Sectors issued.
    pub sectors: u64,
    /// Feedback: timely.
    pub timely: u64,
    /// Feedback: late.
    pub late: u64,
    /// Feedback: wasted.
    pub wasted: u64,
    /// Current (learned) phi, Q16 radians.
    pub phi: i32,
    /// Current effective threshold, Q16.
    pub epsilon_eff: u32,
    /// Measured waste fraction, Q16.
    pub waste_fraction: u32,
    /// Global depth cap from the P99 guard.
    pub depth_cap: u32,
    /// Last window p99, ns.
    pub p99_ns: u64,
    /// P99 baseline, ns.
    pub p99_baseline_ns: u64,
    /// Feedback calls whose stream slot had been recycled (no learning).
    pub stale_feedback: u64,
    /// Times the P99 guard cut the depth cap.
    pub guard_trips: u32,
}

/// Per-device prefetch engine.
#[derive(Debug, Clone)]
pub struct Engine {
    gate: Gate,
    table: StreamTable,
    guard: P99Guard,
    capacity: u64,
    stats: Stats,
    /// EWMA (weight 1/8) of device read latency, ns (0 = no sample yet).
    lat_ns: u64,
    /// Decision rule: 0 = the gate; `k > 0` = the ablation baseline "fire
    /// after `k` consecutive equal deltas" (same depth control).
    rule_k: u32,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(Params::DEFAULT)
    }
}

impl Engine {
    /// Every field, by reference, in declaration order. The destructuring has
    /// no `..`, so a new field does not build until it is listed here too: the
    /// kernel driver allocates engines zero-filled and checks from these types
    /// that all-zero bytes are a valid value (`rust/kernel_ext/zeroable.rs`).
    pub fn fields(&self) -> (&Gate, &StreamTable, &P99Guard, &u64, &Stats, &u64, &u32) {
        let Engine { gate, table, guard, capacity, stats, lat_ns, rule_k } = self;
        (gate, table, guard, capacity, stats, lat_ns, rule_k)
    }

    /// A fresh engine (no streams, device capacity unknown).
    pub fn new(params: Params) -> Self {
        Engine {
            gate: Gate::new(params),
            table: StreamTable::new(),
            guard: P99Guard::new(),
            capacity: u64::MAX,
            stats: Stats::default(),
            lat_ns: 0,
            rule_k: 0,
        }
    }

    /// Forget all streams, statistics and learned state; keep the
    /// user-set parameters (with the learned `phi` replaced by `params.phi`).
    pub fn reset(&mut self, params: Params) {
        // Field by field, in place: the kernel builds engines in zeroed heap
        // memory and initialises them with this, because an `Engine`-sized
        // temporary (several KiB) does not belong on its 16 KiB stack.
        self.gate = Gate::new(params);
        self.table.clear();
        self.guard = P99Guard::new();
        self.stats = Stats::default();
        self.lat_ns = 0;
        self.rule_k = 0;
    }

    /// Replace the gate by the plain rule "prefetch once the last `k`
    /// deltas were equal" (`k` in 1..=9; 0 restores the gate).  Depth
    /// control is unchanged.  For the simulator's ablation.
    pub fn set_rule_k(&mut self, k: u32) {
        self.rule_k = k.min(HIST as u32 + 1);
    }

    /// Set the device size in sectors; no prefetch extends past it.
    pub fn set_capacity(&mut self, sectors: u64) {
        self.capacity = sectors;
    }

    /// Current parameters (`phi` is the learned value).
    pub fn params(&self) -> Params {
        self.gate.params()
    }

    /// Set one parameter from a decimal string.  On error nothing changes.
    pub fn set_param(&mut self, name: &str, value: &str) -> Result<(), ParamError> {
        let mut p = self.gate.params();
        p.set(name, value)?;
        self.gate.set_params(p);
        Ok(())
    }

    /// Format one parameter as a decimal.
    pub fn get_param<W: core::fmt::Write>(&self, name: &str, w: &mut W) -> Result<(), ParamError> {
        self.gate.params().get(name, w)
    }

    /// Replace all parameters.
    pub fn set_params(&mut self, params: Params) {
        self.gate.set_params(params);
    }

    /// Read-only view of a stream slot.
    pub fn stream(&self, id: StreamId) -> Option<&Stream> {
        self.table.get(id.slot()).filter(|s| s.valid && s.gen == id.generation())
    }

    /// Counters and learned state.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        let p = self.gate.params();
        s.phi = p.phi;
        s.epsilon_eff = self.gate.epsilon_eff();
        s.waste_fraction = self.gate.waste_fraction();
        s.depth_cap = self.guard.cap();
        s.p99_ns = self.guard.last_p99_ns();
        s.p99_baseline_ns = self.guard.baseline_ns();
        s.guard_trips = self.guard.trips();
        s
    }

    /// A demand read of `sectors` sectors at `lba` (512-byte sectors).
    /// Returns what, if anything, to prefetch.
    #[inline]
    pub fn on_read(&mut self, lba: u64, sectors: u32, now_ns: u64) -> Decision {
        self.stats.reads = self.stats.reads.wrapping_add(1);
        if self.stats.reads & (DECAY_READS - 1) == 0 {
            self.gate.decay();
        }
        let slot = match self.table.lookup(lba, sectors, now_ns) {
            Lookup::New(i) => {
                self.stats.new_streams = self.stats.new_streams.wrapping_add(1);
                let id = self.table.get(i).map(|s| s.id(i)).unwrap_or(0);
                return Decision { stream: StreamId(id), ..Decision::default() };
            }
            Lookup::Hit(i) => i,
        };
        let stamp = self.table.tick();
        let cap = self.guard.cap();
        let capacity = self.capacity;
        let epoch = self.gate.epoch();
        let rule_k = self.rule_k;
        let seq_start = self.table.seq_start_q16();
        let Some(s) = self.table.slot_mut(slot) else {
            return Decision::default();
        };
        let region = StreamTable::region_of(s.last);
        let on_trend = s.observe(lba, sectors, stamp, now_ns);
        let pred = s.predicted();
        let moved = StreamTable::region_of(s.last) != region;
        let young = s.young_sample;
        s.young_sample = u32::MAX;
        let seq = s.seq_sample;
        s.seq_sample = 0;
        let d = decide(s, slot, lba, on_trend, &self.gate, epoch, cap, capacity, self.lat_ns, rule_k, seq_start, &mut self.stats);
        self.table.note_prediction(slot, pred);
        if d.prefetch {
            // Everything prefetched lies between this read and the far end
            // of the new extents (in the stream's direction).
            let far = d.extent(d.count.saturating_sub(1)).map(|(s, n)| (s, s.saturating_add(n as u64)));
            if let Some((fs, fe)) = far {
                let here = lba.saturating_add(sectors as u64);
                let (lo, hi) = if d.stride > 0 { (lba, fe) } else { (fs, here.max(fe)) };
                self.table.set_window(slot, lo, hi);
            }
        }
        if moved {
            self.table.index_region(slot);
        }
        if young != u32::MAX {
            self.table.note_young_sample(young);
        }
        if seq != 0 {
            self.table.note_seq_sample(seq == 1);
        }
        d
    }

    /// A write or discard of `sectors` at `lba`: streams whose prefetched
    /// window overlaps it forget that window (it will be re-issued).
    pub fn on_write(&mut self, lba: u64, sectors: u32, _now_ns: u64) {
        self.stats.writes = self.stats.writes.wrapping_add(1);
        let w_lo = lba;
        let w_hi = lba.saturating_add((sectors as u64).max(1));
        self.table.for_windows_overlapping(w_lo, w_hi, |s| {
            if !s.valid || s.ahead == 0 || s.stride == 0 {
                return true;
            }
            let span = (s.ahead as i64).saturating_mul(s.stride);
            let (lo, hi) = if s.stride > 0 {
                (
                    s.last.saturating_add(s.stride as u64),
                    s.last.saturating_add(span as u64).saturating_add(s.size as u64),
                )
            } else {
                (
                    s.last.saturating_sub(span.unsigned_abs()),
                    s.last.saturating_sub(s.stride.unsigned_abs()).saturating_add(s.size as u64),
                )
            };
            if w_lo < hi && lo < w_hi {
                s.ahead = 0;
                return true;
            }
            false
        });
    }

    /// Report what happened to one prefetched block (4 KiB) of stream
    /// `stream`: the same as [`Engine::on_feedback_blocks`] with one block.
    pub fn on_feedback(&mut self, stream: StreamId, outcome: Outcome) {
        self.on_feedback_blocks(stream, outcome, 1);
    }

    /// Report that `blocks` prefetched 4 KiB blocks of `stream` had
    /// `outcome` (the kernel and the simulator aggregate per stream and
    /// outcome; the stream's slot may have been recycled since, which the
    /// generation in `stream` detects).
    ///
    /// Units: the depth controller counts extents, so the blocks are
    /// converted to extents of the stream's request size (rounded up).  A
    /// late report is one late prefetch, whatever its size (the window
    /// grows once).  The gate learns once per call: one label per
    /// prefetch outcome, not per block, so that a large extent weighs no
    /// more than a small one in the learning of `phi`; the waste estimate
    /// behind `epsilon_eff` counts the extents.
    pub fn on_feedback_blocks(&mut self, stream: StreamId, outcome: Outcome, blocks: u32) {
        if blocks == 0 {
            return;
        }
        let n = blocks as u64;
        let used = match outcome {
            Outcome::Timely => {
                self.stats.timely = self.stats.timely.wrapping_add(n);
                true
            }
            Outcome::Late => {
                self.stats.late = self.stats.late.wrapping_add(n);
                true
            }
            Outcome::Wasted => {
                self.stats.wasted = self.stats.wasted.wrapping_add(n);
                false
            }
        };
        let live = self
            .table
            .get_mut(stream.slot())
            .filter(|s| s.valid && s.gen == stream.generation());
        match live {
            Some(s) => {
                // 8 sectors per block; an extent is `min(size, MAX_WINDOW_SECTORS)`.
                let ext = s.size.min(MAX_WINDOW_SECTORS) as u64;
                let sectors = n.saturating_mul(8);
                // checked_div: no division-by-zero panic path (size >= 1 anyway)
                let extents = sectors.saturating_add(ext.saturating_sub(1)).checked_div(ext).unwrap_or(1);
                let extents = extents.clamp(1, 64) as u32;
                match outcome {
                    Outcome::Timely => {
                        for _ in 0..extents {
                            s.aimd.on_timely();
                        }
                    }
                    Outcome::Late => s.aimd.on_late(),
                    Outcome::Wasted => {
                        for _ in 0..extents {
                            s.aimd.on_wasted();
                        }
                    }
                }
                let e = s.last_eval;
                self.gate.feedback_n(&e, used, true, extents);
            }
            None => {
                self.stats.stale_feedback = self.stats.stale_feedback.wrapping_add(1);
                let extents = n.div_ceil(4).clamp(1, 64) as u32;
                self.gate.feedback_n(&GateEval::default(), used, false, extents);
            }
        }
    }

    /// Record the latency, in nanoseconds, of one foreground (demand) read
    /// that reached the device (submission to completion, as a block-layer
    /// target sees it; reads served from the page cache never get here).
    /// Feeds the P99 guard.
    #[inline]
    pub fn record_latency(&mut self, ns: u64) {
        self.guard.record(ns);
        let x = ns.min(1 << 40) as i64;
        let l = self.lat_ns as i64; // <= 2^40
        self.lat_ns = if l == 0 { x as u64 } else { l.wrapping_add(x.wrapping_sub(l) >> 3).max(0) as u64 };
    }

    /// Number of stream slots.
    pub const fn stream_slots() -> usize {
        STREAM_SLOTS
    }
}

/// Every `DECAY_READS` reads the learned `phi` moves 1/16 of the way back
/// to the configured one (see [`Gate::decay`]), so that a gate that closed
/// itself (and hence gets no labels) reopens.
pub const DECAY_READS: u64 = 256;

/// The decision for stream `s` after it absorbed the read at `lba`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn decide(
    s: &mut Stream,
    slot: usize,
    lba: u64,
    on_trend: bool,
    gate: &Gate,
    epoch: u64,
    cap: u32,
    capacity: u64,
    lat_ns: u64,
    rule_k: u32,
    seq_start: u32,
    stats: &mut Stats,
) -> Decision {
    s.ahead = if on_trend { s.ahead.saturating_sub(1) } else { 0 };
    let mut d = Decision { stream: StreamId(s.id(slot)), ..Decision::default() };
    if s.stride == 0 {
        return d;
    }
    if rule_k != 0 {
        return decide_rule(s, d, lba, rule_k, gate, cap, capacity, lat_ns, stats);
    }
    // Gate: memoised per stream while the features and the gate's epoch
    // are unchanged, so a steady stream re-evaluates nothing.
    // (`memo_steady` implies `steady`: it is cleared whenever the stream
    // leaves the steady state.)
    let mut e = if s.memo_steady && s.memo_epoch == epoch {
        s.memo_eval
    } else {
        evaluate(s, gate, epoch)
    };
    e.fire = e.p > gate.epsilon_eff();
    // Early start on evidence: at a stream's second read, a contiguous
    // first delta is trusted for one extent when the table has measured
    // that such young streams continue with probability > epsilon_eff.
    let early = !e.fire && s.nreq == 2 && s.delta == s.size as i64 && seq_start > gate.epsilon_eff();
    if early {
        e.fire = true;
        e.p = seq_start;
    }
    d.probability = e.p;
    if !e.fire {
        return d;
    }
    stats.gate_fired = stats.gate_fired.wrapping_add(1);
    let target = if early { 1 } else { s.aimd.depth().min(cap).min(s.win_cap) };
    if !wants_topup(s.ahead, target, s.size) {
        return d;
    }
    issue(s, d, e, lba, target, capacity, lat_ns, gate.epsilon_eff(), stats)
}

/// The ablation rule: fire once the last `k` deltas were equal (the
/// current one included), with the gate's depth control.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn decide_rule(
    s: &mut Stream,
    mut d: Decision,
    lba: u64,
    k: u32,
    gate: &Gate,
    cap: u32,
    capacity: u64,
    lat_ns: u64,
    stats: &mut Stats,
) -> Decision {
    let equal = if s.nreq < 2 { 0 } else { (s.run as u32).saturating_add(1) };
    if s.delta != s.stride || equal < k {
        return d;
    }
    d.probability = 1 << 16;
    stats.gate_fired = stats.gate_fired.wrapping_add(1);
    let target = s.aimd.depth().min(cap).min(s.win_cap);
    if !wants_topup(s.ahead, target, s.size) {
        return d;
    }
    let e = GateEval { theta: [0; 3], z: 0, p: 1 << 16, fire: true };
    issue(s, d, e, lba, target, capacity, lat_ns, gate.epsilon_eff(), stats)
}

/// Top the window of stream `s` up to `target` extents (the rarer half of
/// [`decide`], kept out of line so the per-read path stays small).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn issue(
    s: &mut Stream,
    mut d: Decision,
    e: GateEval,
    lba: u64,
    target: u32,
    capacity: u64,
    lat_ns: u64,
    eps_eff: u32,
    stats: &mut Stats,
) -> Decision {
    // Little's law: the window drains at one extent per `gap` ns and is
    // topped up when half of it is left, so 2 * latency / gap extents hide
    // the device latency (+4 extents of slack for bursty arrivals, since
    // `gap` is a mean); a deeper window only adds exposure to waste.
    // (Without latency samples the bound is off and the gap is not needed:
    // skip its division.)
    if lat_ns != 0 {
        s.refresh_gap();
    }
    s.need_cap = match (lat_ns, s.gap_ns) {
        (0, _) | (_, 0) => u32::MAX,
        (l, g) => (l.saturating_mul(2).checked_div(g).unwrap_or(u64::MAX)).saturating_add(4).min(u32::MAX as u64) as u32,
    };
    let floor = need_floor(s.size);
    let target = target.min(s.need_cap.max(floor));
    // Posterior predictive bound: after n deltas on trend, the Laplace
    // posterior gives P(the next m all follow it) = (n + 1) / (n + m + 1),
    // and extent m is used only if they do; issue it only while that
    // probability exceeds epsilon_eff: m <= (n + 1)(1 - eps) / eps.
    let eps = eps_eff as u64;
    let n1 = (s.trend_deltas() as u64).saturating_add(1);
    let by_posterior = (n1.saturating_mul(65_536u64.saturating_sub(eps)))
        .checked_div(eps)
        .unwrap_or(u64::MAX)
        .clamp(1, u32::MAX as u64) as u32;
    let target = target.min(by_posterior);
    s.win_cap = window_cap(s.size).min(s.need_cap.max(floor));
    if !wants_topup(s.ahead, target, s.size) {
        return d;
    }
    let want = target.saturating_sub(s.ahead);
    // ahead + 1 <= 65 extents and |stride| <= 2^20 sectors: no overflow.
    let first = (s.ahead as i64).wrapping_add(1).wrapping_mul(s.stride);
    // A request larger than the lookahead cap gets one extent of the cap:
    // the start of the next request (the target serves a bio's cached head
    // and sends the rest on).
    let size = s.size.min(MAX_WINDOW_SECTORS);
    let Some((start, count)) = fit_extents(lba, first, s.stride, size, want, capacity) else {
        return d;
    };
    s.ahead = s.ahead.saturating_add(count);
    s.last_eval = e;
    d.prefetch = true;
    d.start = start;
    d.sectors = size;
    d.stride = s.stride;
    d.count = count;
    stats.prefetches = stats.prefetches.wrapping_add(1);
    stats.extents = stats.extents.wrapping_add(count as u64);
    stats.sectors = stats.sectors.wrapping_add((count as u64).saturating_mul(size as u64));
    d
}

/// Async trigger: top the window up once half of it is consumed (the
/// analogue of readahead's async marker: one prefetch per half window), or
/// as soon as 64 KiB of it are consumed: with large requests a half-window
/// trigger would leave half of the lookahead cap unused, and one command
/// per 64 KiB costs little.
#[inline(always)]
fn wants_topup(ahead: u32, target: u32, size: u32) -> bool {
    let missing = target.saturating_sub(ahead);
    ahead.saturating_mul(2) <= target || (missing as u64).saturating_mul(size as u64) >= TOPUP_SECTORS
}

/// Smallest window Little's law may leave: 128 KiB of extents (at least
/// two), so that a half-window top-up is one command of at least 64 KiB:
/// each command costs the device a slot for a whole latency, and at low
/// queue depth many small top-ups queue demand reads behind them.
#[inline]
pub fn need_floor(size: u32) -> u32 {
    (256u32.checked_div(size.max(1)).unwrap_or(0)).max(2)
}

/// See [`wants_topup`]: 64 KiB.
const TOPUP_SECTORS: u64 = 128;

/// Evaluate the gate for stream `s`, reusing its memo when the features
/// and the gate epoch are unchanged.
#[inline(never)]
fn evaluate(s: &mut Stream, gate: &Gate, epoch: u64) -> GateEval {
    let q = if s.steady {
        // what the three features evaluate to in the steady state
        [1 << 16, super::stream::laplace_q16(HIST as u8, HIST as u8), 1 << 16]
    } else {
        [s.chebyshev_q16(), s.share_q16(), s.run_q16()]
    };
    if s.memo_epoch == epoch && s.memo_q == q {
        s.memo_steady = s.steady;
        return s.memo_eval;
    }
    let e = gate.eval(q);
    s.memo_q = q;
    s.memo_eval = e;
    s.memo_epoch = epoch;
    s.memo_steady = s.steady;
    e
}

/// Place up to `want` extents of `size` sectors at `lba + first + i*stride`,
/// all inside `[0, capacity)`.  Returns the first start and the count, or
/// `None` if not even one fits.
#[inline]
fn fit_extents(lba: u64, first: i64, stride: i64, size: u32, want: u32, capacity: u64) -> Option<(u64, u32)> {
    if want == 0 || stride == 0 {
        return None;
    }
    let start = if first >= 0 {
        lba.checked_add(first as u64)?
    } else {
        lba.checked_sub(first.unsigned_abs())?
    };
    let size = size as u64;
    let end = start.checked_add(size)?;
    if end > capacity {
        return None;
    }
    let step = stride.unsigned_abs();
    // Extents that still fit after the first one.
    let room = if stride > 0 { capacity.wrapping_sub(end) } else { start }; // end <= capacity
    // All `want` extents fit when room >= step * (want - 1): no division.
    let need = step.checked_mul((want as u64).saturating_sub(1));
    let count = match need {
        Some(n) if room >= n => want,
        _ => room.checked_div(step).unwrap_or(0).saturating_add(1).min(want as u64) as u32,
    };
    Some((start, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::super::depth::{DEPTH_INIT, DEPTH_MAX};

    fn run_seq(e: &mut Engine, base: u64, n: u64, size: u32, stride: i64) -> (u32, Decision) {
        let mut fired = 0;
        let mut last = Decision::default();
        for i in 0..n {
            let lba = (base as i64 + stride * i as i64) as u64;
            let d = e.on_read(lba, size, i * 1000);
            if d.prefetch {
                fired += 1;
                last = d;
            }
        }
        (fired, last)
    }

    #[test]
    fn sequential_stream_prefetches_ahead() {
        let mut e = Engine::default();
        let (fired, d) = run_seq(&mut e, 1 << 20, 64, 8, 8);
        assert!(fired > 0);
        assert!(d.is_contiguous());
        assert_eq!(d.sectors, 8);
        assert!(d.count >= 1 && d.count <= DEPTH_INIT);
        let (s0, _) = d.extent(0).unwrap();
        assert!(s0 > (1 << 20) + 8 * 60, "{s0}");
        assert!(d.probability > Params::DEFAULT.epsilon as u32);
        // the window never runs more than `depth` extents ahead
        let st = e.stream(d.stream).unwrap();
        assert!(st.ahead <= DEPTH_INIT);
    }

    #[test]
    fn first_reads_do_not_prefetch() {
        let mut e = Engine::default();
        assert!(!e.on_read(100, 8, 0).prefetch);
        assert!(!e.on_read(108, 8, 1).prefetch);
        assert!(!e.on_read(116, 8, 2).prefetch);
    }

    #[test]
    fn random_reads_never_prefetch() {
        let mut e = Engine::default();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = e.on_read(x % (1 << 40), 8, i);
            assert!(!d.prefetch);
        }
        assert_eq!(e.stats().prefetches, 0);
    }

    #[test]
    fn reverse_and_strided_streams() {
        let mut e = Engine::default();
        let (fired, d) = run_seq(&mut e, 1 << 30, 40, 8, -8);
        assert!(fired > 0);
        assert_eq!(d.stride, -8);
        let (a, _) = d.extent(0).unwrap();
        let (b, _) = d.extent(1).unwrap_or((a - 8, 8));
        assert_eq!(b, a - 8);
        let mut e = Engine::default();
        let (fired, d) = run_seq(&mut e, 1 << 30, 40, 8, 256);
        assert!(fired > 0);
        assert_eq!(d.stride, 256);
        assert!(!d.is_contiguous());
    }

    #[test]
    fn reverse_stream_stops_at_sector_zero() {
        let mut e = Engine::default();
        for i in 0..20u64 {
            let lba = 160 - 8 * i;
            let d = e.on_read(lba, 8, i);
            for k in 0..d.count {
                let (s, n) = d.extent(k).unwrap();
                assert!(s.checked_add(n as u64).is_some());
                assert!(s <= lba);
            }
        }
    }

    #[test]
    fn max_lba_edges() {
        let mut e = Engine::default();
        for i in 0..40u64 {
            let lba = u64::MAX - 8 * (40 - i);
            let d = e.on_read(lba, 8, i);
            for k in 0..d.count {
                let (s, n) = d.extent(k).unwrap();
                assert!(s.checked_add(n as u64).is_some(), "extent wraps at {i}/{k}");
            }
        }
        for i in 0..10u64 {
            let _ = e.on_read(u64::MAX, 0, i);
            let _ = e.on_read(u64::MAX - i, u32::MAX, i);
            e.on_write(u64::MAX, u32::MAX, i);
        }
        // capacity clamp
        let mut e = Engine::default();
        e.set_capacity(1000);
        for i in 0..200u64 {
            let d = e.on_read(i * 8 % 1000, 8, i);
            for k in 0..d.count {
                let (s, n) = d.extent(k).unwrap();
                assert!(s + n as u64 <= 1000);
            }
        }
    }

    #[test]
    fn zero_length_and_delta_zero() {
        let mut e = Engine::default();
        for i in 0..50u64 {
            assert!(!e.on_read(4096, 8, i).prefetch, "re-reading one block must not prefetch");
        }
        for i in 0..50u64 {
            let _ = e.on_read(1 << 40, 0, i);
        }
    }

    #[test]
    fn feedback_drives_depth() {
        let mut e = Engine::default();
        let (_, d) = run_seq(&mut e, 0, 32, 8, 8);
        let id = d.stream;
        for _ in 0..500 {
            e.on_feedback(id, Outcome::Late);
        }
        assert_eq!(e.stream(id).unwrap().aimd.depth(), DEPTH_MAX);
        let mut fired = 0;
        let mut max_count = 0;
        for i in 32..200u64 {
            let d = e.on_read(i * 8, 8, i);
            if d.prefetch {
                fired += 1;
                max_count = max_count.max(d.count);
            }
        }
        assert!(fired > 0 && max_count > DEPTH_INIT, "{max_count}");
        for _ in 0..2000 {
            e.on_feedback(id, Outcome::Wasted);
        }
        assert_eq!(e.stream(id).unwrap().aimd.depth(), 1);
        let st = e.stats();
        assert_eq!(st.wasted, 2000);
        assert!(st.epsilon_eff > Params::DEFAULT.epsilon as u32);
        // stale ids are accepted and ignored for learning
        e.on_feedback(StreamId(0xffff_ffff), Outcome::Timely);
    }

    #[test]
    fn writes_reset_window() {
        let mut e = Engine::default();
        let (_, d) = run_seq(&mut e, 0, 32, 8, 8);
        let id = d.stream;
        assert!(e.stream(id).unwrap().ahead > 0);
        let (s0, _) = d.extent(0).unwrap();
        e.on_write(s0, 8, 0);
        assert_eq!(e.stream(id).unwrap().ahead, 0);
    }

    #[test]
    fn interleaved_streams_all_prefetch() {
        let mut e = Engine::default();
        let mut fired = [0u32; 8];
        for step in 0..64u64 {
            for k in 0..8u64 {
                let d = e.on_read((k << 32) + step * 8, 8, step);
                if d.prefetch {
                    fired[k as usize] += 1;
                }
            }
        }
        assert!(fired.iter().all(|&f| f > 3), "{fired:?}");
    }

    #[test]
    fn littles_law_bounds_the_window() {
        // 16 KiB reads (window cap 16 extents, floor 8): device latency
        // 100 us, one read every 20 us: need = 2*100/20 + 4 = 14.
        let mut e = Engine::default();
        for _ in 0..16 {
            e.record_latency(100_000);
        }
        let mut max_ahead = 0;
        let mut id = StreamId(0);
        for i in 0..4000u64 {
            let d = e.on_read((1 << 20) + i * 32, 32, i * 20_000);
            for _ in 0..d.count {
                e.on_feedback(d.stream, Outcome::Timely);
            }
            id = d.stream;
            max_ahead = max_ahead.max(e.stream(id).map(|s| s.ahead).unwrap_or(0));
        }
        let s = e.stream(id).unwrap();
        assert_eq!(s.gap_ns, 20_000);
        assert_eq!(s.need_cap, 14);
        assert!(max_ahead <= 14, "{max_ahead}");
        assert!(s.aimd.depth() > 14, "AIMD alone would go deeper: {}", s.aimd.depth());
        // A slower device lets the window grow again.
        for _ in 0..64 {
            e.record_latency(400_000);
        }
        let mut max_ahead = 0;
        for i in 4000..6000u64 {
            let d = e.on_read((1 << 20) + i * 32, 32, i * 20_000);
            max_ahead = max_ahead.max(e.stream(d.stream).map(|s| s.ahead).unwrap_or(0));
        }
        assert!(max_ahead > 14, "{max_ahead}");
    }

    #[test]
    fn p99_guard_caps_depth() {
        let mut e = Engine::default();
        for _ in 0..256 {
            e.record_latency(100_000);
        }
        assert_eq!(e.stats().depth_cap, DEPTH_MAX);
        for _ in 0..256 {
            e.record_latency(1_000_000);
        }
        assert_eq!(e.stats().depth_cap, DEPTH_MAX / 2);
        assert!(e.stats().p99_ns >= 524_288);
    }

    #[test]
    fn params_through_engine() {
        let mut e = Engine::default();
        e.set_param("epsilon", "1").unwrap();
        let (fired, _) = run_seq(&mut e, 0, 64, 8, 8);
        assert_eq!(fired, 0, "epsilon = 1 disables prefetching");
        assert_eq!(e.set_param("epsilon", "2"), Err(ParamError::OutOfRange));
        let mut b = super::super::param::FixedBuf::<16>::new();
        e.get_param("epsilon", &mut b).unwrap();
        assert_eq!(b.as_str(), "1");
    }

    /// Fraction of the reads of one clean sequential phase (after `skip`
    /// warm-up reads) whose block had been prefetched before the read.
    fn clean_phase_coverage(e: &mut Engine, base: u64, reads: u64, skip: u64, t0: u64) -> f64 {
        let mut pf = std::collections::HashSet::new();
        let (mut hit, mut n) = (0u64, 0u64);
        for i in 0..reads {
            let lba = base + 8 * i;
            if i >= skip {
                n += 1;
                if pf.remove(&lba) {
                    hit += 1;
                    let d = e.on_read(lba, 8, t0 + i * 1000);
                    e.on_feedback_blocks(d.stream, Outcome::Timely, 1);
                    for k in 0..d.count {
                        pf.insert(d.extent(k).unwrap().0);
                    }
                    continue;
                }
            }
            let d = e.on_read(lba, 8, t0 + i * 1000);
            for k in 0..d.count {
                let (s, _) = d.extent(k).unwrap();
                pf.insert(s);
            }
        }
        hit as f64 / n as f64
    }

    /// Issue 10: learning must not lock the gate shut.  After any phase of
    /// waste (here: 64k reads of short or jittery streams whose every
    /// prefetched block is reported wasted, at the default and at the
    /// largest learning rate), a clean sequential stream regains >= 95%
    /// coverage within 64 reads.
    #[test]
    fn learning_cannot_lock_the_gate_shut() {
        for lr in ["0.0039", "0.25", "1"] {
            for pattern in 0..3u64 {
                let mut e = Engine::default();
                e.set_param("learning_rate", lr).unwrap();
                let mut x: u64 = 0x1234_5678_9abc_def1 ^ pattern;
                let mut t = 0u64;
                for r in 0..8_000u64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let base = (x % (1 << 36)) & !7;
                    let len = match pattern {
                        0 => 6,                 // short runs: end-of-run waste
                        1 => 3 + (r % 8),       // mixed short runs
                        _ => 24,                // jittery runs (every 5th delta off)
                    };
                    for i in 0..len {
                        let jitter = if pattern == 2 && i % 5 == 4 { 64 } else { 0 };
                        t += 1000;
                        let d = e.on_read(base + 8 * i + jitter, 8, t);
                        if d.prefetch {
                            e.on_feedback_blocks(d.stream, Outcome::Wasted, d.count);
                        }
                    }
                }
                let phi = e.stats().phi;
                let cov = clean_phase_coverage(&mut e, 1 << 40, 2_000, 64, t + 1_000_000);
                assert!(cov >= 0.95, "lr {lr} pattern {pattern}: coverage {cov} after waste (phi {phi})");
            }
        }
    }

    #[test]
    fn learned_phi_is_bounded_and_decays() {
        let mut e = Engine::default();
        e.set_param("learning_rate", "1").unwrap();
        let (_, d) = run_seq(&mut e, 0, 64, 8, 8);
        // a jittery stream's decision, reported wasted many times
        for i in 0..64u64 {
            let _ = e.on_read((1 << 30) + i * 8 + (i % 3) * 8, 8, i);
        }
        for _ in 0..10_000 {
            e.on_feedback_blocks(d.stream, Outcome::Wasted, 4);
        }
        let span = super::super::gate::PHI_SPAN_Q16;
        let phi = e.stats().phi;
        assert!(phi.abs() <= span, "{phi}");
        // no labels: reads alone bring phi back to the configured 0
        for i in 0..(DECAY_READS * 200) {
            let _ = e.on_read((1 << 34) + (i * 7919 % 1000) * 1_000_000, 8, 1_000_000 + i);
        }
        assert_eq!(e.stats().phi, 0);
    }

    #[test]
    fn feedback_blocks_count_extents() {
        // One 64 KiB extent used = 16 blocks: the depth grows as for one
        // extent, not 16; 16 wasted blocks of it halve the depth once.
        let mut e = Engine::default();
        let (_, d) = run_seq(&mut e, 0, 32, 128, 128);
        let id = d.stream;
        let d0 = e.stream(id).unwrap().aimd.depth();
        e.on_feedback_blocks(id, Outcome::Late, 16);
        assert_eq!(e.stream(id).unwrap().aimd.depth(), d0 + 1);
        e.on_feedback_blocks(id, Outcome::Wasted, 16);
        assert_eq!(e.stream(id).unwrap().aimd.depth(), (d0 + 1) >> 1);
        let st = e.stats();
        assert_eq!((st.late, st.wasted), (16, 16));
        // blocks = 0 is a no-op, stale ids only count
        e.on_feedback_blocks(id, Outcome::Wasted, 0);
        assert_eq!(e.stats().wasted, 16);
        e.on_feedback_blocks(StreamId(0xffff_ff00), Outcome::Timely, 3);
        assert_eq!(e.stats().stale_feedback, 1);
        assert_eq!(e.stats().timely, 3);
    }

    #[test]
    fn lookahead_is_capped_in_bytes() {
        // 1 MiB requests: one extent of at most MAX_WINDOW_SECTORS ahead;
        // 256 KiB requests: one extent.
        for size in [2048u32, 512] {
            let mut e = Engine::default();
            let mut fired = 0;
            for i in 0..64u64 {
                let d = e.on_read(i * size as u64, size, i * 1000);
                assert!(d.total_sectors() <= MAX_WINDOW_SECTORS as u64, "{d:?}");
                if d.prefetch {
                    fired += 1;
                    e.on_feedback_blocks(d.stream, Outcome::Late, 64);
                }
            }
            assert!(fired > 30, "{size}: {fired}");
        }
        // small requests: the whole window stays within the cap
        let mut e = Engine::default();
        for i in 0..4000u64 {
            let d = e.on_read(i * 8, 8, i * 1000);
            for _ in 0..d.count {
                e.on_feedback(d.stream, Outcome::Late);
            }
            let s = e.stream(d.stream).unwrap();
            assert!(s.ahead as u64 * 8 <= MAX_WINDOW_SECTORS as u64, "ahead {}", s.ahead);
        }
    }

    #[test]
    fn many_interleaved_streams_are_tracked() {
        // 100 sequential readers round-robin (more than the old 32 slots).
        let mut e = Engine::default();
        let n = 100u64;
        let mut fired = std::vec![0u32; n as usize];
        for step in 0..64u64 {
            for k in 0..n {
                let d = e.on_read((k << 32) + step * 8, 8, step * 1000 + k);
                if d.prefetch {
                    fired[k as usize] += 1;
                }
            }
        }
        assert!(fired.iter().all(|&f| f > 3), "{fired:?}");
        assert!(e.stats().new_streams <= n + n / 10, "{}", e.stats().new_streams);
    }

    #[test]
    fn rule_k_fires_after_k_equal_deltas() {
        let mut e = Engine::default();
        e.set_rule_k(2);
        let first = (0..10u64).position(|i| e.on_read(1000 + i * 8, 8, i).prefetch);
        assert_eq!(first, Some(2), "third read = two equal deltas");
        let mut e = Engine::default();
        let first = (0..10u64).position(|i| e.on_read(1000 + i * 8, 8, i).prefetch);
        assert!(first > Some(2), "the gate waits longer without evidence: {first:?}");
    }

    #[test]
    fn early_start_on_evidence() {
        // Many short sequential runs at random places (6 reads each): the
        // table learns that contiguous young streams continue, and a new
        // run is then prefetched from its second read; runs of two reads
        // (that never continue) teach it the opposite.
        for (len, expect) in [(6u64, true), (2, false)] {
            let mut e = Engine::default();
            let mut x: u64 = 0x2545_f491_4f6c_dd1d;
            let mut t = 0;
            let mut fired_second = 0;
            for run in 0..400u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let base = (x % (1 << 36)) & !7;
                for i in 0..len {
                    t += 1000;
                    let d = e.on_read(base + 8 * i, 8, t);
                    if i == 1 && run >= 300 && d.prefetch {
                        fired_second += 1;
                    }
                }
            }
            assert_eq!(fired_second > 90, expect, "len {len}: {fired_second}");
            assert!(fired_second <= 100);
        }
    }

    /// The KUnit suite's `core_sequential_coverage` scenario, on the host:
    /// no feedback, no latency samples, 90% of reads 16..256 covered.  Also
    /// bounds the engine's size (the kernel allocates it on the heap).
    #[test]
    fn kunit_sequential_scenario_and_size() {
        let mut e = Engine::default();
        const N: usize = 256;
        let mut covered = [false; N];
        for i in 0..N as u64 {
            let d = e.on_read(i * 8, 8, i * 100_000);
            for k in 0..d.count {
                let (start, sectors) = d.extent(k).unwrap();
                let end = start + sectors as u64;
                for (j, c) in covered.iter_mut().enumerate().skip(i as usize + 1) {
                    if j as u64 * 8 >= start && j as u64 * 8 + 8 <= end {
                        *c = true;
                    }
                }
            }
        }
        let hits = covered.iter().skip(16).filter(|&&c| c).count();
        assert!(hits * 10 >= (N - 16) * 9, "{hits}");
        let size = core::mem::size_of::<Engine>();
        assert!(size <= 64 * 1024, "{size}");
        std::println!("size_of::<Engine>() = {size}");
    }
}
