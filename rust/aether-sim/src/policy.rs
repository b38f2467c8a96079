//! Prefetch policies: `none`, `linux-ra`, `leap`, `amp` and `aether`, and
//! the ablation variants `aether-nolearn` (learning rate 0) and `k2-rule`
//! (prefetch after two equal deltas, aether's depth control).
//!
//! Every policy has the same maximum lookahead: [`LOOKAHEAD_BLOCKS`]
//! (256 KiB, `aether_core::MAX_WINDOW_SECTORS`) prefetched ahead of a
//! stream, except `linux-ra`, which keeps Linux's default
//! `read_ahead_kb = 128` (at most 128 KiB + 64 KiB async window ahead).
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
    /// Every block of the request that carried a readahead marker (now cleared).
    pub markers: &'a [u64],
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
    /// The extent's last block gets one second chance at the LRU end (AMP).
    pub chance_last: bool,
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
    /// An unused block with a second chance reached the LRU end and was
    /// moved back to the MRU end.
    fn on_second_chance(&mut self, _tag: u32, _block: u64) {}
    /// The current request is complete (deferred work may run).
    fn end_request(&mut self) {}
    /// `n` prefetched blocks of `tag` had `outcome` (aggregated, from the
    /// block cache of the below-page-cache model).
    fn on_feedback_blocks(&mut self, tag: u32, outcome: Outcome, n: u32) {
        for _ in 0..n {
            self.on_feedback(tag, 0, outcome);
        }
    }
    /// The policy runs below the page cache with aether's own prefetch
    /// cache (`aether_core::cache`), as the dm target does; the model then
    /// uses [`crate::model::run`]'s two-level variant.
    fn below_page_cache(&self) -> bool {
        false
    }
    /// Engine statistics, for policies built on aether-core.
    fn engine_stats(&self) -> Option<aether_core::Stats> {
        None
    }
}

/// Names of all policies, in report order.
pub const POLICIES: [&str; 5] = ["none", "linux-ra", "leap", "amp", "aether"];

/// The ablation: aether, aether without learning, and the plain rule.
pub const ABLATION: [&str; 3] = ["aether", "aether-nolearn", "k2-rule"];

/// Maximum lookahead per stream, blocks (256 KiB).
pub const LOOKAHEAD_BLOCKS: u64 = aether_core::MAX_WINDOW_SECTORS as u64 / 8;

/// Build a policy by name.
pub fn make(name: &str) -> Option<Box<dyn Policy>> {
    make_with(name, &Params::default())
}

/// Build a policy by name; `aether` uses `params`.
pub fn make_with(name: &str, params: &Params) -> Option<Box<dyn Policy>> {
    Some(match name {
        "none" => Box::new(NoPrefetch),
        "linux-ra" => Box::new(LinuxRa::new(32)),
        "leap" => Box::new(Leap::new(32, LOOKAHEAD_BLOCKS)),
        "amp" => Box::new(Amp::new()),
        "aether" => Box::new(Aether::new(*params)),
        "aether-nolearn" => Box::new(Aether::named("aether-nolearn", Params { learning_rate: 0, ..*params }, 0)),
        "k2-rule" => Box::new(Aether::named("k2-rule", *params, 2)),
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

/// Model of Linux 6.12 `mm/readahead.c` / `mm/filemap.c` buffered reads of
/// one file (here: the block device), in pages (order-0 folios).
///
/// The request's pages are walked in order, as `filemap_get_pages` does
/// batch by batch:
///
/// * a missing page calls `page_cache_sync_ra(index, req = pages left)`:
///   start of file, oversize read or `index - prev_index <= 1` starts an
///   initial window `get_init_ra_size(req)` with `async_size = size - req`
///   if `size > req`, else `size >> 1`; otherwise context readahead counts
///   the cached pages before `index` (`page_cache_prev_miss`) and reads
///   `min(history + req, max)` pages with `async_size = 1` if they are
///   more than `req` (doubling the history if cached from page 0), else the
///   rest of the request as is;
/// * the window's page `start + size - async_size` gets `PG_readahead`;
///   a batch ends at such a page, so reaching it (in this read, even if it
///   was set by this read's own window) calls `page_cache_async_ra(index,
///   req = pages left)`: the expected marker moves the window on
///   (`start += size`, `size = get_next_ra_size`, `async_size = size`),
///   another one rebuilds it from `page_cache_next_miss`;
/// * `prev_pos` is the end of the read.  `max = ra_pages = 32` (128 KiB,
///   the default `read_ahead_kb`); `io_pages = ra_pages` (no oversize boost).
#[derive(Debug, Clone)]
pub struct LinuxRa {
    max: u64,
    start: u64,
    size: u64,
    async_size: u64,
    prev_index: u64,
    /// Ranges issued (or demand-read) during the current request.
    pending: Vec<(u64, u64)>,
    /// Markers set during the current request.
    marks: Vec<u64>,
}

impl LinuxRa {
    /// `max_pages` is `ra_pages` (32 for 128 KiB).
    pub fn new(max_pages: u64) -> Self {
        LinuxRa { max: max_pages, start: 0, size: 0, async_size: 0, prev_index: u64::MAX, pending: vec![], marks: vec![] }
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

    fn present(&self, cache: &Cache, b: u64) -> bool {
        cache.contains(b) || self.pending.iter().any(|&(s, e)| b >= s && b < e)
    }

    fn submit(&mut self, out: &mut Vec<Prefetch>) {
        let marker = self.start + self.size - self.async_size;
        out.push(Prefetch { block: self.start, nblocks: self.size, tag: 0, marker: Some(marker), chance_last: false });
        self.pending.push((self.start, self.start + self.size));
        self.marks.push(marker);
    }

    fn sync_ra(&mut self, index: u64, req: u64, cache: &Cache, out: &mut Vec<Prefetch>) {
        let max = self.max;
        let seq = self.prev_index != u64::MAX && index.wrapping_sub(self.prev_index) <= 1;
        if index == 0 || req > max || seq {
            self.start = index;
            self.size = Self::init_size(req, max);
            self.async_size = if self.size > req { self.size - req } else { self.size >> 1 };
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
            if !self.present(cache, k) {
                break;
            }
            contig += 1;
        }
        if contig <= req {
            // do_page_cache_ra(req, 0): the rest of the request, as is
            self.pending.push((index, index + req));
            return;
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
        while start - index <= max && self.present(cache, start) {
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
        self.pending.clear();
        self.marks.clear();
        let mut cached_marks: Vec<u64> = ctx.markers.to_vec();
        let mut pos = ctx.first;
        while pos < end {
            if !self.present(ctx.cache, pos) {
                self.sync_ra(pos, end - pos, ctx.cache, out);
            }
            let own = self.marks.iter().position(|&m| m == pos);
            let cached = cached_marks.iter().position(|&m| m == pos);
            if own.is_some() || cached.is_some() {
                if let Some(i) = own {
                    self.marks.swap_remove(i);
                    // the marker was set on this read's own window: it is
                    // no longer pending in the cache model
                    for p in out.iter_mut().filter(|p| p.marker == Some(pos)) {
                        p.marker = None;
                    }
                }
                if let Some(i) = cached {
                    cached_marks.swap_remove(i);
                }
                self.async_ra(pos, end - pos, ctx.cache, out);
            }
            pos += 1;
        }
        // ra->prev_pos = end of the read
        self.prev_index = end;
    }
}

// -------------------------------------------------------------------- leap

/// Leap (Al Maruf & Chowdhury, ATC'20), after its reference
/// implementation (`find_trend`) and the paper's window algorithm:
///
/// * a global history of the last `H` page-access deltas; every page of a
///   request is one access, logged in the order a read fills them
///   (ascending);
/// * trend = Boyer-Moore majority over the most recent `H/4`, else `H/2`,
///   else `H` deltas (a majority needs more than half of the window);
/// * the prefetch window is computed on every request, hit or miss
///   (`GetPrefetchWindowSize`): with `h` hits on prefetched pages since
///   the last prefetch, `w = roundup_pow2(h + 1)`, shrinking by at most
///   half per step; with no hit and no trend prefetching is suspended
///   (`w = 0`), with no hit but a trend `w = 1`;
/// * `w` pages (at most [`LOOKAHEAD_BLOCKS`]) along the trend, from the
///   request's end in its direction of travel (its last page for a
///   positive trend, its first page for a negative one).
#[derive(Debug, Clone)]
pub struct Leap {
    hist: Vec<i64>,
    head: usize,
    len: usize,
    last_first: Option<u64>,
    hits: u64,
    last_window: u64,
    max: u64,
}

impl Leap {
    /// History of `h` deltas, window cap `max` pages.
    pub fn new(h: usize, max: u64) -> Self {
        Leap { hist: vec![0; h.max(4)], head: 0, len: 0, last_first: None, hits: 0, last_window: 0, max }
    }

    fn log(&mut self, delta: i64) {
        let cap = self.hist.len();
        self.hist[self.head] = delta;
        self.head = (self.head + 1) % cap;
        self.len = (self.len + 1).min(cap);
    }

    fn trend_in(&self, size: usize) -> Option<i64> {
        if size > self.len {
            return None;
        }
        let cap = self.hist.len();
        let at = |j: usize| self.hist[(self.head + cap - 1 - j) % cap];
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
        if n > size / 2 && cand != 0 {
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

    fn window(&mut self, trend: bool) -> u64 {
        let h = self.hits;
        self.hits = 0;
        let w = if h == 0 {
            if trend {
                1
            } else {
                0
            }
        } else {
            (h + 1).next_power_of_two()
        };
        let w = w.max(self.last_window / 2);
        let w = if h == 0 && !trend { 0 } else { w };
        self.last_window = w;
        w
    }
}

impl Policy for Leap {
    fn name(&self) -> &'static str {
        "leap"
    }
    fn on_read(&mut self, ctx: &ReadCtx<'_>, out: &mut Vec<Prefetch>) {
        for page in ctx.first..=ctx.last {
            if let Some(prev) = self.last_first {
                self.log(page.wrapping_sub(prev) as i64);
            }
            self.last_first = Some(page);
        }
        let trend = self.find_trend();
        let w = self.window(trend.is_some()).min(self.max);
        let Some(d) = trend else { return };
        let from = if d > 0 { ctx.last } else { ctx.first };
        for k in 1..=w {
            let Some(s) = (from as i64).checked_add(d.saturating_mul(k as i64)) else { break };
            if s < 0 {
                break;
            }
            out.push(Prefetch { block: s as u64, nblocks: 1, tag: 0, marker: None, chance_last: false });
        }
    }
    fn on_feedback(&mut self, _tag: u32, _block: u64, outcome: Outcome) {
        if outcome != Outcome::Wasted {
            self.hits += 1;
        }
    }
}

// --------------------------------------------------------------------- amp

/// AMP (Gill & Bathen, FAST'07): per-stream prefetch degree `p` and
/// trigger distance `g`, adapted online.
///
/// * A stream continues when a read starts right after the previous read
///   of a stream, or inside its prefetched range; any number of streams is
///   tracked (the paper keeps `p` and `g` in the page metadata).  A read
///   that continues no stream starts one and prefetches `p` blocks
///   synchronously on the second read.
/// * Each prefetched set of `p` blocks marks the block `g` before its end
///   as the trigger; reading it issues the next set (asynchronous).
/// * `p += r` (the read's size in blocks) when a read hits the last block
///   of a prefetched set; the last block of every set gets a second chance
///   at the LRU end, and `p -= 1` when it takes it (it reached the LRU end
///   unused: `p` is too large); `g += 1` once per late prefetch (a read
///   waits for the first block of a set); `g <= p - 1` always.
/// * `p` is capped at [`LOOKAHEAD_BLOCKS`], the common lookahead cap.
#[derive(Debug, Clone, Default)]
pub struct Amp {
    /// Streams by id.
    streams: std::collections::HashMap<u32, AmpStream>,
    /// Stream id by the block of its last read.
    by_last: std::collections::BTreeMap<u64, u32>,
    next_id: u32,
}

#[derive(Debug, Clone)]
struct AmpStream {
    last: u64,
    pf_end: u64,
    trigger: u64,
    /// (first, last) blocks of recent sets.
    sets: std::collections::VecDeque<(u64, u64)>,
    p: u64,
    g: u64,
    active: bool,
    /// Size of the stream's current read, blocks.
    req: u64,
}

/// Initial AMP degree (blocks).
const AMP_P_INIT: u64 = 4;

impl Amp {
    /// Empty stream table.
    pub fn new() -> Self {
        Amp::default()
    }

    fn issue(s: &mut AmpStream, tag: u32, out: &mut Vec<Prefetch>) {
        let start = s.pf_end;
        let p = s.p.min(LOOKAHEAD_BLOCKS.saturating_sub(start.saturating_sub(s.last + 1))).max(1);
        out.push(Prefetch { block: start, nblocks: p, tag, marker: None, chance_last: true });
        s.pf_end = start + p;
        s.trigger = s.pf_end - 1 - s.g.min(p - 1);
        s.sets.push_back((start, s.pf_end - 1));
        if s.sets.len() > 8 {
            s.sets.pop_front();
        }
    }
}

impl Policy for Amp {
    fn name(&self) -> &'static str {
        "amp"
    }
    fn on_read(&mut self, ctx: &ReadCtx<'_>, out: &mut Vec<Prefetch>) {
        let (first, last) = (ctx.first, ctx.last);
        // the stream whose last read is closest below this one
        let found = self.by_last.range(..first).next_back().map(|(&l, &id)| (l, id)).filter(|&(l, id)| {
            let s = &self.streams[&id];
            first == l + 1 || (s.active && first > l && first < s.pf_end)
        });
        let Some((old_last, id)) = found else {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            let s = AmpStream { last, pf_end: last + 1, trigger: u64::MAX, sets: Default::default(), p: AMP_P_INIT, g: 1, active: false, req: last - first + 1 };
            if let Some(old) = self.by_last.insert(last, id) {
                self.streams.remove(&old);
            }
            self.streams.insert(id, s);
            return;
        };
        self.by_last.remove(&old_last);
        if let Some(old) = self.by_last.insert(last, id) {
            if old != id {
                self.streams.remove(&old);
            }
        }
        let Some(s) = self.streams.get_mut(&id) else { return };
        s.last = last;
        s.req = last - first + 1;
        if s.pf_end <= last {
            s.pf_end = last + 1;
        }
        if !s.active {
            s.active = true;
            Self::issue(s, id, out);
        } else if (last >= s.trigger || ctx.first_miss.is_some()) && s.pf_end <= last + LOOKAHEAD_BLOCKS {
            Self::issue(s, id, out);
        }
    }
    fn on_feedback(&mut self, tag: u32, block: u64, outcome: Outcome) {
        let Some(s) = self.streams.get_mut(&tag) else { return };
        match outcome {
            Outcome::Wasted => {}
            Outcome::Late | Outcome::Timely => {
                if outcome == Outcome::Late && s.sets.iter().any(|&(f, _)| f == block) {
                    s.g = (s.g + 1).min(s.p.saturating_sub(1));
                }
                if s.sets.iter().any(|&(_, l)| l == block) {
                    s.p = (s.p + s.req).min(LOOKAHEAD_BLOCKS);
                }
            }
        }
    }
    fn on_second_chance(&mut self, tag: u32, _block: u64) {
        let Some(s) = self.streams.get_mut(&tag) else { return };
        s.p = (s.p - 1).max(1);
        s.g = s.g.min(s.p - 1);
    }
}

// ------------------------------------------------------------------ aether

/// The aether engine (aether-core) driven by the simulator.
///
/// Feedback is queued per (stream, outcome) with a block count and
/// delivered with [`Engine::on_feedback_blocks`] when the request is
/// complete, as the kernel's deferred queue does.
#[derive(Debug, Clone)]
pub struct Aether {
    /// The engine.
    pub engine: Engine,
    name: &'static str,
    queue: Vec<(u32, Outcome, u32)>,
}

impl Aether {
    /// Engine with the given parameters.
    pub fn new(p: Params) -> Self {
        Aether::named("aether", p, 0)
    }

    /// Engine named `name`, with `rule_k` (0 = the gate; see
    /// [`Engine::set_rule_k`]).
    pub fn named(name: &'static str, p: Params, rule_k: u32) -> Self {
        let mut engine = Engine::new(p);
        engine.set_rule_k(rule_k);
        Aether { engine, name, queue: Vec::new() }
    }

    fn flush(&mut self) {
        for (tag, o, n) in self.queue.drain(..) {
            self.engine.on_feedback_blocks(StreamId(tag), o, n);
        }
    }
}

impl Policy for Aether {
    fn name(&self) -> &'static str {
        self.name
    }
    fn on_read(&mut self, ctx: &ReadCtx<'_>, out: &mut Vec<Prefetch>) {
        self.flush();
        let d = self.engine.on_read(ctx.lba, ctx.sectors, ctx.now_ns);
        let n = out.len();
        for i in 0..d.count {
            if let Some((s, len)) = d.extent(i) {
                let b0 = s / 8;
                let b1 = (s + len.max(1) as u64 - 1) / 8;
                // Adjacent extents (sequential or reverse streams) go down as
                // one request, as the kernel issues them.
                if let Some(last) = out[n..].last_mut() {
                    if last.block + last.nblocks == b0 {
                        last.nblocks += b1 - b0 + 1;
                        continue;
                    }
                    if b1 + 1 == last.block {
                        last.nblocks += last.block - b0;
                        last.block = b0;
                        continue;
                    }
                }
                out.push(Prefetch { block: b0, nblocks: b1 - b0 + 1, tag: d.stream.0, marker: None, chance_last: false });
            }
        }
    }
    fn on_write(&mut self, now_ns: u64, lba: u64, sectors: u32) {
        self.flush();
        self.engine.on_write(lba, sectors, now_ns);
    }
    fn on_feedback(&mut self, tag: u32, _block: u64, outcome: Outcome) {
        match self.queue.iter_mut().find(|(t, o, _)| *t == tag && *o == outcome) {
            Some(q) => q.2 = q.2.saturating_add(1),
            None => self.queue.push((tag, outcome, 1)),
        }
    }
    fn on_latency(&mut self, ns: u64) {
        self.engine.record_latency(ns);
    }
    fn end_request(&mut self) {
        self.flush();
    }
    fn on_feedback_blocks(&mut self, tag: u32, outcome: Outcome, n: u32) {
        self.queue.push((tag, outcome, n));
    }
    fn below_page_cache(&self) -> bool {
        true
    }
    fn engine_stats(&self) -> Option<aether_core::Stats> {
        Some(self.engine.stats())
    }
}
