//! Device and cache model, the replay loop and the metrics.
//!
//! * Device: at most `queue_depth` commands in flight.  Each command costs
//!   `overhead` of controller time (serialised: many small commands cost
//!   more than one large one), then the media `latency` (overlapped across
//!   commands), then its transfer `b / bandwidth` on one data path shared
//!   by all commands (FIFO): bandwidth spent on prefetching, wasted or
//!   not, delays later demand reads.  Demand and prefetch I/O share all of
//!   it (demand is submitted first).
//! * Cache: 4 KiB blocks, LRU, bounded (`cache_blocks`).  It holds demand
//!   and prefetched blocks; a prefetched block remembers whether it has
//!   been used, which policy tag issued it and whether it carries a
//!   readahead marker.  Writes and discards invalidate cached blocks
//!   (write-through, no-allocate).
//! * Time: closed loop (empty `ts_us`) issues the next request `think_us`
//!   after the previous one completed; open loop issues at `ts_us`.

use crate::policy::{Policy, Prefetch, ReadCtx};
use crate::trace::{Op, Req, BS};
use aether_core::Outcome;
use std::collections::{HashMap, VecDeque};

/// Simulation parameters.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Per-request device latency, µs.
    pub latency_us: u64,
    /// Device bandwidth, MB/s (bytes per µs).
    pub bandwidth_mbps: u64,
    /// Device queue depth (parallel servers).
    pub queue_depth: usize,
    /// Cache size in 4 KiB blocks.
    pub cache_blocks: usize,
    /// Think time between closed-loop requests, µs.
    pub think_us: u64,
    /// Controller time per command, ns (serialised across commands).
    pub overhead_ns: u64,
    /// Blocks of aether's own prefetch cache (`aether_core::cache`) for
    /// policies that run below the page cache (at most a quarter of
    /// `cache_blocks`, taken from the page cache).
    pub prefetch_blocks: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { latency_us: 100, bandwidth_mbps: 2000, queue_depth: 32, cache_blocks: 16_384, think_us: 20, overhead_ns: 2_000, prefetch_blocks: 4_096 }
    }
}

/// Device: `queue_depth` command slots, a serial controller (`overhead`
/// per command), overlapped media latency and one shared data path.
#[derive(Debug, Clone)]
pub struct Device {
    free_at: Vec<u64>,
    ctl_free: u64,
    path_free: u64,
    latency_ns: u64,
    overhead_ns: u64,
    bandwidth_mbps: u64,
    /// Requests submitted.
    pub requests: u64,
    /// Bytes transferred.
    pub bytes: u64,
}

impl Device {
    /// A new idle device.
    pub fn new(cfg: &Config) -> Self {
        Device {
            free_at: vec![0; cfg.queue_depth.max(1)],
            ctl_free: 0,
            path_free: 0,
            latency_ns: cfg.latency_us * 1000,
            overhead_ns: cfg.overhead_ns,
            bandwidth_mbps: cfg.bandwidth_mbps.max(1),
            requests: 0,
            bytes: 0,
        }
    }
    /// Submit `bytes` at `t_ns` (non-decreasing across calls); returns the
    /// completion time.
    pub fn submit(&mut self, t_ns: u64, bytes: u64) -> u64 {
        self.requests += 1;
        self.bytes += bytes;
        let (idx, free) = self.free_at.iter().copied().enumerate().min_by_key(|&(_, f)| f).unwrap_or((0, 0));
        let start = t_ns.max(free);
        let cmd = start.max(self.ctl_free) + self.overhead_ns;
        self.ctl_free = cmd;
        let tx = (cmd + self.latency_ns).max(self.path_free);
        let done = tx + bytes.saturating_mul(1000) / self.bandwidth_mbps;
        self.path_free = done;
        self.free_at[idx] = done;
        done
    }
}

/// State of a cached block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// When the data is (or will be) in memory, ns.
    pub ready_ns: u64,
    /// Brought in by a prefetch.
    pub prefetched: bool,
    /// A prefetched block that a demand read has used.
    pub used: bool,
    /// Policy tag of the prefetch (stream id).
    pub tag: u32,
    /// Readahead marker (`PG_readahead`).
    pub marker: bool,
    /// Gets one second chance at the LRU end while unused (AMP).
    pub chance: bool,
    stamp: u64,
}

/// Bounded LRU block cache.
#[derive(Debug, Clone)]
pub struct Cache {
    map: HashMap<u64, Entry>,
    lru: VecDeque<(u64, u64)>,
    cap: usize,
    clock: u64,
}

impl Cache {
    /// An empty cache of `cap` blocks.
    pub fn new(cap: usize) -> Self {
        Cache { map: HashMap::new(), lru: VecDeque::new(), cap: cap.max(1), clock: 0 }
    }
    /// Is the block cached (arrived or in flight)?
    pub fn contains(&self, block: u64) -> bool {
        self.map.contains_key(&block)
    }
    /// Look at a block.
    pub fn get(&self, block: u64) -> Option<&Entry> {
        self.map.get(&block)
    }
    fn get_mut(&mut self, block: u64) -> Option<&mut Entry> {
        self.map.get_mut(&block)
    }
    /// Number of cached blocks.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    fn touch(&mut self, block: u64) {
        self.clock += 1;
        let c = self.clock;
        if let Some(e) = self.map.get_mut(&block) {
            e.stamp = c;
            self.lru.push_back((block, c));
        }
        self.compact();
    }
    /// Insert a block; returns the evicted entries.  An unused block with
    /// a second chance is moved to the MRU end once instead (and returned
    /// with `chance` still set, for the policy to hear about it).
    fn insert(&mut self, block: u64, mut e: Entry, evicted: &mut Vec<(u64, Entry)>) {
        self.clock += 1;
        e.stamp = self.clock;
        self.map.insert(block, e);
        self.lru.push_back((block, self.clock));
        while self.map.len() > self.cap {
            let Some((b, s)) = self.lru.pop_front() else { break };
            if self.map.get(&b).map(|x| x.stamp) == Some(s) {
                let again = self.map.get(&b).is_some_and(|x| x.chance && x.prefetched && !x.used);
                if again {
                    self.clock += 1;
                    let c = self.clock;
                    if let Some(x) = self.map.get_mut(&b) {
                        x.chance = false;
                        x.stamp = c;
                        evicted.push((b, Entry { chance: true, ..*x }));
                    }
                    self.lru.push_back((b, c));
                } else if let Some(old) = self.map.remove(&b) {
                    evicted.push((b, old));
                }
            }
        }
        self.compact();
    }
    fn remove(&mut self, block: u64) -> Option<Entry> {
        self.map.remove(&block)
    }
    fn compact(&mut self) {
        // Drop stale queue entries when the queue grows much larger than the map.
        if self.lru.len() > 4 * self.cap + 1024 {
            let map = &self.map;
            self.lru.retain(|(b, s)| map.get(b).map(|e| e.stamp) == Some(*s));
        }
    }
    fn drain_unused_prefetched(&self) -> u64 {
        self.map.values().filter(|e| e.prefetched && !e.used).count() as u64
    }
}

/// Results of one run (see the crate docs for the definitions).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Workload name.
    pub workload: String,
    /// Policy name.
    pub policy: String,
    /// Prefetched blocks used / prefetched blocks issued.
    pub accuracy: f64,
    /// Demand blocks served from prefetched data / demand blocks.
    pub coverage: f64,
    /// Prefetch hits whose data had arrived / prefetch hits.
    pub timeliness: f64,
    /// Prefetched bytes never used / demand bytes.
    pub waste: f64,
    /// Demand blocks found resident (arrived) in the cache / demand blocks.
    pub hit_ratio: f64,
    /// Device reads issued on the demand path (cache misses).
    pub demand_reads: u64,
    /// Blocks issued by prefetching.
    pub prefetched_blocks: u64,
    /// Demand read requests in the trace.
    pub read_requests: u64,
    /// Demand blocks (4 KiB).
    pub demand_blocks: u64,
    /// Prefetched blocks that were used.
    pub used_blocks: u64,
    /// Mean read latency, µs.
    pub mean_read_latency_us: f64,
    /// p99 read latency, µs.
    pub p99_read_latency_us: f64,
    /// Simulated time, ms.
    pub elapsed_ms: f64,
    /// Engine state at the end of the run (aether only).
    pub engine: Option<aether_core::Stats>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Replay `reqs` against `policy`.  Policies that run below the page cache
/// (aether) use [`run_dm`].
pub fn run(workload: &str, reqs: &[Req], policy: &mut dyn Policy, cfg: &Config) -> Metrics {
    if policy.below_page_cache() {
        return run_dm(workload, reqs, policy, cfg);
    }
    let mut dev = Device::new(cfg);
    let mut cache = Cache::new(cfg.cache_blocks);
    let mut evicted = Vec::new();
    let mut pf: Vec<Prefetch> = Vec::new();
    let mut markers: Vec<u64> = Vec::new();
    let mut lat: Vec<u64> = Vec::new();
    let (mut demand_blocks, mut demand_reads, mut read_requests) = (0u64, 0u64, 0u64);
    let (mut prefetched, mut used, mut timely, mut resident) = (0u64, 0u64, 0u64, 0u64);
    let mut prev_done = 0u64;
    let mut last_t = 0u64;

    let waste_fb = |policy: &mut dyn Policy, ev: &mut Vec<(u64, Entry)>| {
        for (b, e) in ev.drain(..) {
            if e.chance {
                policy.on_second_chance(e.tag, b);
            } else if e.prefetched && !e.used {
                policy.on_feedback(e.tag, b, Outcome::Wasted);
            }
        }
    };

    for r in reqs {
        let t = match r.ts_us {
            Some(ts) => (ts * 1000).max(last_t),
            None => prev_done + if prev_done == 0 && last_t == 0 { 0 } else { cfg.think_us * 1000 },
        };
        last_t = t;
        let first = r.lba / BS;
        let end_sector = r.lba.saturating_add(r.sectors as u64);
        let last = if r.sectors == 0 { first } else { (end_sector - 1) / BS };
        match r.op {
            Op::Flush => {
                prev_done = t;
            }
            Op::Write | Op::Discard => {
                if r.sectors == 0 {
                    prev_done = t;
                    continue;
                }
                for b in first..=last {
                    if let Some(e) = cache.remove(b) {
                        if e.prefetched && !e.used {
                            policy.on_feedback(e.tag, b, Outcome::Wasted);
                        }
                    }
                }
                policy.on_write(t, r.lba, r.sectors);
                prev_done = if r.op == Op::Write { dev.submit(t, r.sectors as u64 * 512) } else { t };
            }
            Op::Read => {
                if r.sectors == 0 {
                    prev_done = t;
                    continue;
                }
                read_requests += 1;
                let n = last - first + 1;
                demand_blocks += n;
                let mut first_miss = None;
                markers.clear();
                for b in first..=last {
                    match cache.get_mut(b) {
                        None => {
                            if first_miss.is_none() {
                                first_miss = Some(b);
                            }
                        }
                        Some(e) => {
                            if e.marker {
                                markers.push(b);
                                e.marker = false;
                            }
                        }
                    }
                }
                pf.clear();
                {
                    let marker = markers.first().copied();
                    let ctx = ReadCtx {
                        now_ns: t,
                        lba: r.lba,
                        sectors: r.sectors,
                        first,
                        last,
                        first_miss,
                        marker,
                        markers: &markers,
                        cache: &cache,
                    };
                    policy.on_read(&ctx, &mut pf);
                }
                // Demand: hits first (accounting), then one device read per missing run.
                let mut done = t;
                let mut run_start: Option<u64> = None;
                let mut b = first;
                while b <= last + 1 {
                    let missing = b <= last && !cache.contains(b);
                    if missing {
                        if run_start.is_none() {
                            run_start = Some(b);
                        }
                    } else {
                        if let Some(s) = run_start.take() {
                            let d = dev.submit(t, (b - s) * 4096);
                            demand_reads += 1;
                            // What a block-layer target sees: the latency of
                            // a foreground read that reached the device.
                            policy.on_latency(d - t);
                            for x in s..b {
                                let e = Entry { ready_ns: d, prefetched: false, used: false, tag: 0, marker: false, chance: false, stamp: 0 };
                                cache.insert(x, e, &mut evicted);
                            }
                            done = done.max(d);
                            waste_fb(policy, &mut evicted);
                        }
                        if let Some(&e) = cache.get(b).filter(|_| b <= last) {
                            if e.ready_ns <= t {
                                resident += 1;
                            }
                            if e.prefetched && !e.used {
                                used += 1;
                                let o = if e.ready_ns <= t {
                                    timely += 1;
                                    Outcome::Timely
                                } else {
                                    Outcome::Late
                                };
                                if let Some(m) = cache.get_mut(b) {
                                    m.used = true;
                                }
                                policy.on_feedback(e.tag, b, o);
                            }
                            done = done.max(e.ready_ns);
                            cache.touch(b);
                        }
                    }
                    b += 1;
                }
                // Prefetches: skip cached blocks, one device request per contiguous run.
                for p in pf.iter() {
                    let mut s: Option<u64> = None;
                    let end = p.block.saturating_add(p.nblocks);
                    let mut x = p.block;
                    while x <= end {
                        let want = x < end && !cache.contains(x);
                        if want {
                            if s.is_none() {
                                s = Some(x);
                            }
                        } else if let Some(st) = s.take() {
                            let d = dev.submit(t, (x - st) * 4096);
                            for y in st..x {
                                let e = Entry {
                                    ready_ns: d,
                                    prefetched: true,
                                    used: false,
                                    tag: p.tag,
                                    marker: p.marker == Some(y),
                                    chance: p.chance_last && y + 1 == end,
                                    stamp: 0,
                                };
                                cache.insert(y, e, &mut evicted);
                                prefetched += 1;
                            }
                            waste_fb(policy, &mut evicted);
                        }
                        if x == u64::MAX {
                            break;
                        }
                        x += 1;
                    }
                }
                let l = done - t;
                lat.push(l);
                prev_done = done;
                policy.end_request();
            }
        }
    }
    let leftover = cache.drain_unused_prefetched();
    let _ = leftover;
    lat.sort_unstable();
    let mean = if lat.is_empty() { 0.0 } else { lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1000.0 };
    let p99 = if lat.is_empty() { 0.0 } else { lat[((lat.len() * 99).div_ceil(100)).saturating_sub(1)] as f64 / 1000.0 };
    Metrics {
        workload: workload.to_string(),
        policy: policy.name().to_string(),
        accuracy: ratio(used, prefetched),
        coverage: ratio(used, demand_blocks),
        timeliness: ratio(timely, used),
        waste: ratio(prefetched - used, demand_blocks),
        hit_ratio: ratio(resident, demand_blocks),
        demand_reads,
        prefetched_blocks: prefetched,
        read_requests,
        demand_blocks,
        used_blocks: used,
        mean_read_latency_us: mean,
        p99_read_latency_us: p99,
        elapsed_ms: prev_done.max(last_t) as f64 / 1e6,
        engine: policy.engine_stats(),
    }
}

type BlockCache = aether_core::cache::BlockCache<(), Vec<aether_core::cache::Slot<()>>, Vec<u32>>;

/// The two-level model of a prefetcher below the page cache, as the dm
/// target runs: the page cache (an LRU of `cache_blocks` minus the
/// prefetch cache, so that the memory equals the one-level model's; no
/// readahead)
/// holds what demand reads returned; a read's missing runs go down as bios
/// to the prefetcher, whose own cache is `aether_core::cache::BlockCache`
/// of `prefetch_blocks` blocks, the kernel's implementation: the target
/// serves a bio's valid head from it (64 blocks at a time) and sends the
/// rest to the device (in-flight blocks found there are reported late).  Writes invalidate both levels
/// and fence the block cache until they complete.  Outcomes are the block
/// cache's (timely on first use, late, wasted on eviction or invalidation),
/// aggregated per (stream, outcome) and delivered after each request.
pub fn run_dm(workload: &str, reqs: &[Req], policy: &mut dyn Policy, cfg: &Config) -> Metrics {
    use aether_core::cache::{buckets_for, Slot};
    use aether_core::StreamId;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut dev = Device::new(cfg);
    // Same memory as the one-level model: the prefetch cache (at most a
    // quarter of it) comes out of the page cache.
    let nslots = cfg.prefetch_blocks.min(cfg.cache_blocks / 4).max(2);
    let mut pc = Cache::new(cfg.cache_blocks.saturating_sub(nslots).max(1));
    let slots: Vec<Slot<()>> = (0..nslots).map(|_| Slot::empty()).collect();
    let Some(mut bc) = BlockCache::new(slots, vec![0; buckets_for(nslots)], nslots as u32) else {
        return Metrics { workload: workload.to_string(), policy: policy.name().to_string(), ..Metrics::default() };
    };
    let mut evicted = Vec::new();
    let mut pf: Vec<Prefetch> = Vec::new();
    let mut lat: Vec<u64> = Vec::new();
    let mut events: Vec<(StreamId, Outcome, u32)> = Vec::new();
    // In-flight prefetches: (done, ticket, block) by completion time; fences by end time.
    let mut pending: BinaryHeap<Reverse<(u64, u32, u32, u64)>> = BinaryHeap::new();
    let mut in_flight: HashMap<u64, u64> = HashMap::new();
    let mut fences: BinaryHeap<Reverse<(u64, u8)>> = BinaryHeap::new();
    let (mut demand_blocks, mut demand_reads, mut read_requests) = (0u64, 0u64, 0u64);
    let (mut prefetched, mut used, mut timely, mut resident) = (0u64, 0u64, 0u64, 0u64);
    let mut prev_done = 0u64;
    let mut last_t = 0u64;
    let deliver = |policy: &mut dyn Policy, ev: &mut Vec<(StreamId, Outcome, u32)>, used: &mut u64, timely: &mut u64| {
        for (s, o, n) in ev.drain(..) {
            match o {
                Outcome::Timely => {
                    *used += n as u64;
                    *timely += n as u64;
                }
                Outcome::Late => *used += n as u64,
                Outcome::Wasted => {}
            }
            policy.on_feedback_blocks(s.0, o, n);
        }
    };
    for r in reqs {
        let t = match r.ts_us {
            Some(ts) => (ts * 1000).max(last_t),
            None => prev_done + if prev_done == 0 && last_t == 0 { 0 } else { cfg.think_us * 1000 },
        };
        last_t = t;
        // Completions up to now.
        while let Some(&Reverse((done, slot, gen, block))) = pending.peek() {
            if done > t {
                break;
            }
            pending.pop();
            in_flight.remove(&block);
            let _ = bc.fill(aether_core::cache::Ticket { slot, gen }, ());
        }
        while let Some(&Reverse((done, id))) = fences.peek() {
            if done > t {
                break;
            }
            fences.pop();
            bc.fence_end(aether_core::cache::FenceId::from_raw(id));
        }
        let first = r.lba / BS;
        let end_sector = r.lba.saturating_add(r.sectors as u64);
        let last = if r.sectors == 0 { first } else { (end_sector - 1) / BS };
        match r.op {
            Op::Flush => prev_done = t,
            Op::Write | Op::Discard => {
                if r.sectors == 0 {
                    prev_done = t;
                    continue;
                }
                for b in first..=last {
                    pc.remove(b);
                }
                let n = last - first + 1;
                bc.invalidate(first, n, &mut |s, o, k| events.push((s, o, k)));
                policy.on_write(t, r.lba, r.sectors);
                prev_done = if r.op == Op::Write { dev.submit(t, r.sectors as u64 * 512) } else { t };
                let id = bc.fence_begin(first, n);
                fences.push(Reverse((prev_done, id.raw())));
            }
            Op::Read => {
                if r.sectors == 0 {
                    prev_done = t;
                    continue;
                }
                read_requests += 1;
                demand_blocks += last - first + 1;
                pf.clear();
                {
                    let ctx = ReadCtx {
                        now_ns: t,
                        lba: r.lba,
                        sectors: r.sectors,
                        first,
                        last,
                        first_miss: (first..=last).find(|&b| !pc.contains(b)),
                        marker: None,
                        markers: &[],
                        cache: &pc,
                    };
                    policy.on_read(&ctx, &mut pf);
                }
                let mut done = t;
                let mut b = first;
                while b <= last {
                    if let Some(&e) = pc.get(b) {
                        if e.ready_ns <= t {
                            resident += 1;
                        }
                        done = done.max(e.ready_ns);
                        pc.touch(b);
                        b += 1;
                        continue;
                    }
                    // A run of blocks missing from the page cache: one bio.
                    let s = b;
                    while b <= last && !pc.contains(b) {
                        b += 1;
                    }
                    // The target serves the bio's valid head from the block
                    // cache (at most COPY_MAX_PAGES = 64 blocks at a time) and
                    // sends the rest on; a bio with no valid head goes to the
                    // device (its in-flight blocks are reported late).
                    let mut h = s;
                    while h < b {
                        let n = (b - h) as u32;
                        match bc.serve(h, n, 64, true, &mut |st, o, k| events.push((st, o, k)), |_| {}) {
                            aether_core::cache::Serve::Hit { blocks, .. } if blocks > 0 => {
                                for x in h..h + blocks as u64 {
                                    let e = Entry { ready_ns: t, prefetched: false, used: false, tag: 0, marker: false, chance: false, stamp: 0 };
                                    pc.insert(x, e, &mut evicted);
                                    evicted.clear();
                                }
                                resident += blocks as u64;
                                h += blocks as u64;
                            }
                            _ => break,
                        }
                    }
                    let s = h;
                    let ready = if s < b {
                        let d = dev.submit(t, (b - s) * 4096);
                        demand_reads += 1;
                        policy.on_latency(d - t);
                        d
                    } else {
                        t
                    };
                    for x in s..b {
                        let e = Entry { ready_ns: ready, prefetched: false, used: false, tag: 0, marker: false, chance: false, stamp: 0 };
                        pc.insert(x, e, &mut evicted);
                        evicted.clear();
                    }
                    done = done.max(ready);
                }
                // Prefetches into the block cache, one device request per contiguous run.
                for p in pf.iter() {
                    let end = p.block.saturating_add(p.nblocks);
                    let mut x = p.block;
                    let mut run: Vec<(u64, aether_core::cache::Ticket)> = Vec::new();
                    while x <= end {
                        let got = if x < end && !pc.contains(x) {
                            bc.reserve(x, StreamId(p.tag), &mut |st, o, k| events.push((st, o, k))).ok()
                        } else {
                            None
                        };
                        match got {
                            Some(tk) => run.push((x, tk)),
                            None => {
                                if let Some(&(s0, _)) = run.first() {
                                    let d = dev.submit(t, (x - s0) * 4096);
                                    for (blk, tk) in run.drain(..) {
                                        pending.push(Reverse((d, tk.slot, tk.gen, blk)));
                                        in_flight.insert(blk, d);
                                        prefetched += 1;
                                    }
                                }
                            }
                        }
                        if x == u64::MAX {
                            break;
                        }
                        x += 1;
                    }
                }
                lat.push(done - t);
                prev_done = done;
            }
        }
        deliver(policy, &mut events, &mut used, &mut timely);
        policy.end_request();
    }
    lat.sort_unstable();
    let mean = if lat.is_empty() { 0.0 } else { lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1000.0 };
    let p99 = if lat.is_empty() { 0.0 } else { lat[((lat.len() * 99).div_ceil(100)).saturating_sub(1)] as f64 / 1000.0 };
    let used = used.min(prefetched);
    Metrics {
        workload: workload.to_string(),
        policy: policy.name().to_string(),
        accuracy: ratio(used, prefetched),
        coverage: ratio(used, demand_blocks),
        timeliness: ratio(timely, used),
        waste: ratio(prefetched - used, demand_blocks),
        hit_ratio: ratio(resident, demand_blocks),
        demand_reads,
        prefetched_blocks: prefetched,
        read_requests,
        demand_blocks,
        used_blocks: used,
        mean_read_latency_us: mean,
        p99_read_latency_us: p99,
        elapsed_ms: prev_done.max(last_t) as f64 / 1e6,
        engine: policy.engine_stats(),
    }
}
