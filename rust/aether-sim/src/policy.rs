//! Prefetch policies: `none`, `linux-ra`, `leap`, `amp` and `aether`.
//!
//! All baselines work on 4 KiB blocks (pages).  Each receives every demand
//! read with the cache state the kernel would see (first missing block,
//! readahead marker hit) and returns block extents to prefetch; the model
//! skips blocks that are already cached.  Feedback (used timely, used late,
//! wasted) is delivered per prefetched block with the tag the policy chose.

use crate::model::Cache;
use aether_core::{Engine, Outcome, Params, StreamId};

/// What a policy sees for one demand read.
pub struct ReadCtx<'a> {
    /// Submission time, ns.
    pub now_ns: u64,
    /// Start sector.
    pub lba: u64,
    /// Length, sectors.
    pub sectors: u32,
    /// First block.
    pub first: u64,
    /// Last block (inclusive).
    pub last: u64,
    /// First block of the request that is not cached.
    pub first_miss: Option<u64>,
    /// First block of the request that carried a readahead marker (now cleared).
    pub marker: Option<u64>,
    /// Cache contents before the read.
    pub cache: &'a Cache,
}

/// One prefetch extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefetch {
    /// First block.
    pub block: u64,
    /// Number of blocks.
    pub nblocks: u64,
    /// Tag returned with feedback.
    pub tag: u32,
    /// Block that gets a readahead marker, if any.
    pub marker: Option<u64>,
}

/// A prefetch policy.
pub trait Policy {
    /// Name as printed in the results.
    fn name(&self) -> &'static str;
    /// A demand read; push extents to prefetch into `out`.
    fn on_read(&mut self, ctx: &ReadCtx<'_>, out: &mut Vec<Prefetch>);
    /// A write or discard.
    fn on_write(&mut self, _now_ns: u64, _lba: u64, _sectors: u32) {}
    /// Outcome of one prefetched block.
    fn on_feedback(&mut self, _tag: u32, _block: u64, _outcome: Outcome) {}
    /// Latency of a foreground (demand) read that reached the device, ns.
    fn on_latency(&mut self, _ns: u64) {}
    /// Engine statistics, for policies built on aether-core.
    fn engine_stats(&self) -> Option<aether_core::Stats> {
        None
    }
}

/// Names of all policies, in report order.
pub const POLICIES: [&str; 5] = ["none", "linux-ra", "leap", "amp", "aether"];

/// Build a policy by name.
pub fn make(name: &str) -> Option<Box<dyn Policy>> {
    make_with(name, &Params::default())
}

/// Build a policy by name; `aether` uses `params`.
pub fn make_with(name: &str, params: &Params) -> Option<Box<dyn Policy>> {
    Some(match name {
        "none" => Box::new(NoPrefetch),
        "linux-ra" => Box::new(LinuxRa::new(32)),
        "leap" => Box::new(Leap::new(32, 8)),
        "amp" => Box::new(Amp::new()),
        "aether" => Box::new(Aether::new(*params)),
        _ => return None,
    })
}

/// No prefetching.
#[derive(Debug, Default)]
pub struct NoPrefetch;

impl Policy for NoPrefetch {
    fn name(&self) -> &'static str {
        "none"
    }
    fn on_read(&mut self, _ctx: &ReadCtx<'_>, _out: &mut Vec<Prefetch>) {}
}

// ---------------------------------------------------------------- linux-ra

/// Model of Linux 6.12 `mm/readahead.c` on-demand readahead for one file
/// (here: the block device), in pages.
///
/// * `page_cache_sync_ra` at the first missing page of a read:
///   start of file, oversize read or a sequential miss
///   (`index - prev_index <= 1`) starts an initial window
///   `get_init_ra_size(req)` (round up to a power of two, x4 if tiny, x2 if
///   small, else max) with `async_size = size - req`; otherwise context
///   readahead: count the contiguous cached pages before `index`
///   (`page_cache_prev_miss`); more than `req` of them start a window of
///   `min(history + req, max)` with `async_size = 1`, else the read is a
///   plain random read (no readahead).
/// * The page at `start + size - async_size` gets `PG_readahead`.
/// * `page_cache_async_ra` when a read hits a marked page: if it is the
///   expected marker, the window moves on (`start += size`, size grows x4
///   while below max/16, x2 while at most max/2, else max,
///   `async_size = size`); otherwise the window is rebuilt from the next
///   missing page (interleaved streams).
/// * `max` = `ra_pages` = 32 pages (128 KiB, the default `read_ahead_kb`).
#[derive(Debug, Clone)]
pub struct LinuxRa {
    max: u64,
    start: u64,
    size: u64,
    async_size: u64,
    prev_index: u64,
}

impl LinuxRa {
    /// `max_pages` is `ra_pages` (32 for 128 KiB).
    pub fn new(max_pages: u64) -> Self {
        LinuxRa { max: max_pages, start: 0, size: 0, async_size: 0, prev_index: u64::MAX }
    }

    fn init_size(req: u64, max: u64) -> u64 {
        let n = req.max(1).next_power_of_two();
        if n <= max / 32 {
            n * 4
        } else if n <= max / 4 {
            n * 2
        } else {
            max
        }
    }

    fn next_size(cur: u64, max: u64) -> u64 {
        if cur < max / 16 {
            4 * cur
        } else if cur <= max / 2 {
            2 * cur
        } else {
            max
        }
    }

    fn submit(&self, out: &mut Vec<Prefetch>) {
        let marker = self.start + self.size - self.async_size;
        out.push(Prefetch { block: self.start, nblocks: self.size, tag: 0, marker: Some(marker) });
    }

    fn sync_ra(&mut self, index: u64, req: u64, cache: &Cache, out: &mut Vec<Prefetch>) {
        let max = self.max.max(req.min(self.max)); // bdi io_pages == ra_pages: no oversize boost
        let seq = self.prev_index != u64::MAX && index.wrapping_sub(self.prev_index) <= 1;
        if index == 0 || req > max || seq {
            self.start = index;
            self.size = Self::init_size(req, max);
            self.async_size = if self.size > req { self.size - req } else { self.size };
            self.submit(out);
            return;
        }
        // page_cache_prev_miss(index - 1, max)
        let mut contig = 0u64;
        let mut from_start = false;
        let mut k = index;
        while contig < max {
            if k == 0 {
                from_start = true;
                break;
            }
            k -= 1;
            if !cache.contains(k) {
                break;
            }
            contig += 1;
        }
        if contig <= req {
            return; // standalone small random read: read as is
        }
        if from_start {
            contig *= 2;
        }
        self.start = index;
        self.size = (contig + req).min(max);
        self.async_size = 1;
        self.submit(out);
    }

    fn async_ra(&mut self, index: u64, req: u64, cache: &Cache, out: &mut Vec<Prefetch>) {
        let max = self.max;
        let expected = (self.start + self.size).wrapping_sub(self.async_size);
        if self.size != 0 && index == expected {
            self.start += self.size;
            self.size = self.size.max(Self::next_size(self.size, max));
            self.async_size = self.size;
            self.submit(out);
            return;
        }
        // page_cache_next_miss(index + 1, max)
        let mut start = index + 1;
        while start - index <= max && cache.contains(start) {
            start += 1;
        }
        if start - index > max {
            return;
        }
        self.start = start;
        self.size = Self::next_size(start - index + req, max);
        self.async_size = self.size;
        self.submit(out);
    }
}

impl Policy for LinuxRa {
    fn name(&self) -> &'static str {
        "linux-ra"
    }
    fn on_read(&mut self, ctx: &ReadCtx<'_>, out: &mut Vec<Prefetch>) {
        let end = ctx.last + 1;
        if let Some(m) = ctx.first_miss {
            self.sync_ra(m, end - m, ctx.cache, out);
        } else if let Some(m) = ctx.marker {
            self.async_ra(m, end - m, ctx.cache, out);
        }
        // ra->prev_pos = end of the read
        self.prev_index = end;
    }
}

// -------------------------------------------------------------------- leap

/// Leap (Al Maruf & Chowdhury, ATC'20), after its reference
/// implementation (`swapin_readahead` with `find_trend`):
///
/// * a global history of the last `H` page-access deltas;
/// * trend = Boyer-Moore majority over the most recent `H/4`, else `H/2`,
///   else `H` deltas (a majority needs more than half of the window);
/// * every page of a request is logged; a request with a miss runs the
///   readahead once, from its last page (the pages of one request fault
///   back to back, so the earlier faults' readahead is demand anyway);
/// * on a miss: window `= roundup_pow2(hits + 2)` (at least 4), capped at
///   `max` pages (`1 << page_cluster`, 8), never below half of the previous
///   window; with a trend it reads `window - 1` pages along the trend,
///   without one it falls back to the aligned read-around cluster.
#[derive(Debug, Clone)]
pub struct Leap {
    hist: Vec<(i64, u64)>,
    head: usize,
    len: usize,
    hits: u64,
    last_window: u64,
    max: u64,
}

impl Leap {
    /// History of `h` deltas, window cap `max` pages.
    pub fn new(h: usize, max: u64) -> Self {
        Leap { hist: vec![(0, 0); h.max(4)], head: 0, len: 0, hits: 0, last_window: 0, max }
    }

    fn log(&mut self, page: u64) {
        let cap = self.hist.len();
        let delta = if self.len > 0 {
            let prev = (self.head + cap - 1) % cap;
            page.wrapping_sub(self.hist[prev].1) as i64
        } else {
            0
        };
        self.hist[self.head] = (delta, page);
        self.head = (self.head + 1) % cap;
        self.len = (self.len + 1).min(cap);
    }

    fn trend_in(&self, size: usize) -> Option<i64> {
        let cap = self.hist.len();
        let at = |j: usize| self.hist[(self.head + cap - 1 - j) % cap].0;
        // Boyer-Moore over the most recent `size` entries (the reference
        // implementation reads zeroed slots when the history is not full).
        let mut cand = at(0);
        let mut count = 1i64;
        for j in 1..size {
            if at(j) == cand {
                count += 1;
            } else {
                count -= 1;
            }
            if count == 0 {
                cand = at(j);
                count = 1;
            }
        }
        let n = (0..size).filter(|&j| at(j) == cand).count();
        if n > size / 2 {
            Some(cand)
        } else {
            None
        }
    }

    fn find_trend(&self) -> Option<i64> {
        let cap = self.hist.len();
        let mut size = cap / 4;
        while size <= cap {
            if let Some(d) = self.trend_in(size) {
                return Some(d);
            }
            size *= 2;
        }
        None
    }

    fn window(&mut self) -> u64 {
        let pages = self.hits + 2;
        self.hits = 0;
        let mut w = 4u64;
        while w < pages {
            w <<= 1;
        }
        let w = w.min(self.max);
        let w = w.max(self.last_window / 2);
        self.last_window = w;
        w
    }
}

impl Policy for Leap {
    fn name(&self) -> &'static str {
        "leap"
    }
    fn on_read(&mut self, ctx: &ReadCtx<'_>, out: &mut Vec<Prefetch>) {
        // Every page of the request is one access (one `lookup_swap_cache`).
        for page in ctx.first..=ctx.last {
            self.log(page);
        }
        // A miss runs `swapin_readahead` once; the request's pages fault
        // together, so the readahead starts from its last page.
        if ctx.first_miss.is_none() {
            return;
        }
        let page = ctx.last;
        let w = self.window();
        let mask = w - 1;
        match self.find_trend() {
            Some(d) => {
                for k in 1..=mask {
                    let off = (page as i64).wrapping_add(d.wrapping_mul(k as i64));
                    if off >= 0 && off as u64 != page {
                        out.push(Prefetch { block: off as u64, nblocks: 1, tag: 0, marker: None });
                    }
                }
            }
            None => {
                let start = (page & !mask).max(1);
                for b in start..=(page | mask) {
                    if b != page {
                        out.push(Prefetch { block: b, nblocks: 1, tag: 0, marker: None });
                    }
                }
            }
        }
    }
    fn on_feedback(&mut self, _tag: u32, _block: u64, outcome: Outcome) {
        if outcome != Outcome::Wasted {
            self.hits += 1; // TestClearPageReadahead on a swap-cache hit
        }
    }
}

// --------------------------------------------------------------------- amp

/// AMP (Gill & Bathen, FAST'07): per-stream prefetch degree `p` and
/// trigger distance `g`, adapted online.
///
/// * A stream is detected when a read starts right after the previous
///   read of a tracked stream (LRU table of 32 streams).
/// * Prefetching `p` blocks after the stream's prefetched end marks the
///   block `g` before the end of that set as the trigger; a read that
///   reaches the trigger issues the next set (asynchronous prefetch).
/// * `p += 1` when the last block of a prefetched set is read (the stream
///   consumed everything), `p -= 1` when a prefetched block is evicted
///   unused; `g += 1` when a read finds its block still in flight (late),
///   and `g <= p - 1` always.
#[derive(Debug, Clone)]
pub struct Amp {
    streams: Vec<AmpStream>,
    clock: u64,
}

#[derive(Debug, Clone, Copy)]
struct AmpStream {
    valid: bool,
    last: u64,
    pf_end: u64,
    trigger: u64,
    set_ends: [u64; 2],
    p: u64,
    g: u64,
    active: bool,
    stamp: u64,
}

/// AMP degree bounds (blocks).
const AMP_P_INIT: u64 = 4;
const AMP_P_MAX: u64 = 64;

impl Default for Amp {
    fn default() -> Self {
        Self::new()
    }
}

impl Amp {
    /// Empty stream table.
    pub fn new() -> Self {
        let s = AmpStream { valid: false, last: 0, pf_end: 0, trigger: 0, set_ends: [0; 2], p: AMP_P_INIT, g: 1, active: false, stamp: 0 };
        Amp { streams: vec![s; 32], clock: 0 }
    }

    fn issue(s: &mut AmpStream, tag: u32, out: &mut Vec<Prefetch>) {
        let start = s.pf_end;
        out.push(Prefetch { block: start, nblocks: s.p, tag, marker: None });
        s.pf_end = start + s.p;
        s.trigger = s.pf_end - 1 - s.g.min(s.p - 1);
        s.set_ends = [s.set_ends[1], s.pf_end];
    }
}

impl Policy for Amp {
    fn name(&self) -> &'static str {
        "amp"
    }
    fn on_read(&mut self, ctx: &ReadCtx<'_>, out: &mut Vec<Prefetch>) {
        self.clock += 1;
        let (first, last) = (ctx.first, ctx.last);
        let found = self.streams.iter().position(|s| s.valid && (first == s.last + 1 || (s.active && first > s.last && first < s.pf_end)));
        let i = match found {
            Some(i) => i,
            None => {
                let v = self.streams.iter().enumerate().min_by_key(|(_, s)| if s.valid { s.stamp } else { 0 }).map(|(i, _)| i).unwrap_or(0);
                self.streams[v] = AmpStream { valid: true, last, pf_end: last + 1, trigger: u64::MAX, set_ends: [0; 2], p: AMP_P_INIT, g: 1, active: false, stamp: self.clock };
                return;
            }
        };
        let tag = i as u32;
        let s = &mut self.streams[i];
        s.stamp = self.clock;
        s.last = last;
        if s.pf_end <= last {
            s.pf_end = last + 1;
        }
        if !s.active {
            // second sequential read: start the stream
            s.active = true;
            Self::issue(s, tag, out);
        } else if last >= s.trigger || ctx.first_miss.is_some() {
            Self::issue(s, tag, out);
        }
    }
    fn on_feedback(&mut self, tag: u32, block: u64, outcome: Outcome) {
        let Some(s) = self.streams.get_mut(tag as usize) else { return };
        if !s.valid {
            return;
        }
        match outcome {
            Outcome::Wasted => {
                s.p = (s.p - 1).max(1);
                s.g = s.g.min(s.p - 1);
            }
            Outcome::Late => {
                s.g = (s.g + 1).min(s.p.saturating_sub(1));
                if s.set_ends.contains(&(block + 1)) {
                    s.p = (s.p + 1).min(AMP_P_MAX);
                }
            }
            Outcome::Timely => {
                if s.set_ends.contains(&(block + 1)) {
                    s.p = (s.p + 1).min(AMP_P_MAX);
                }
            }
        }
    }
}

// ------------------------------------------------------------------ aether

/// The aether engine (aether-core) driven by the simulator.
#[derive(Debug, Clone)]
pub struct Aether {
    /// The engine.
    pub engine: Engine,
}

impl Aether {
    /// Engine with the given parameters.
    pub fn new(p: Params) -> Self {
        Aether { engine: Engine::new(p) }
    }
}

impl Policy for Aether {
    fn name(&self) -> &'static str {
        "aether"
    }
    fn on_read(&mut self, ctx: &ReadCtx<'_>, out: &mut Vec<Prefetch>) {
        let d = self.engine.on_read(ctx.lba, ctx.sectors, ctx.now_ns);
        for i in 0..d.count {
            if let Some((s, n)) = d.extent(i) {
                let b0 = s / 8;
                let b1 = (s + n.max(1) as u64 - 1) / 8;
                out.push(Prefetch { block: b0, nblocks: b1 - b0 + 1, tag: d.stream.0, marker: None });
            }
        }
    }
    fn on_write(&mut self, now_ns: u64, lba: u64, sectors: u32) {
        self.engine.on_write(lba, sectors, now_ns);
    }
    fn on_feedback(&mut self, tag: u32, _block: u64, outcome: Outcome) {
        self.engine.on_feedback(StreamId(tag), outcome);
    }
    fn on_latency(&mut self, ns: u64) {
        self.engine.record_latency(ns);
    }
    fn engine_stats(&self) -> Option<aether_core::Stats> {
        Some(self.engine.stats())
    }
}
