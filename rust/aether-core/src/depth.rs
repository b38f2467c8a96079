//! Prefetch depth control: per-stream AIMD and a global P99 latency guard.
//!
//! * [`Aimd`] keeps one stream's depth `d` (in extents, i.e. predicted
//!   future requests) in `[DEPTH_MIN, DEPTH_MAX]`.  A timely hit adds
//!   `1/d` (so `+1` per window of `d` timely hits, like TCP congestion
//!   avoidance); a late hit adds `1` (data arrived too late, so the window
//!   must reach further ahead); a wasted prefetch halves `d`, at most once
//!   per `d` feedback events (one multiplicative decrease per window).
//! * [`LatencyHistogram`] counts foreground latencies in log2 buckets of
//!   nanoseconds.  Every [`GUARD_WINDOW`] samples [`P99Guard`] estimates the
//!   window's p99 (log-linear interpolation inside the bucket), compares it
//!   with a slowly tracking baseline and either halves the global depth cap
//!   (p99 > `GUARD_MULT` x baseline) or raises it by one.

/// Smallest depth (extents).
pub const DEPTH_MIN: u32 = 1;
/// Largest depth (extents).
pub const DEPTH_MAX: u32 = 64;
/// Depth a new stream starts with.
pub const DEPTH_INIT: u32 = 4;
/// Samples per P99 evaluation window.
pub const GUARD_WINDOW: u32 = 256;
/// Guard multiple: the cap is cut when `p99 > GUARD_MULT * baseline`.
pub const GUARD_MULT: u64 = 2;

/// Per-stream additive-increase / multiplicative-decrease depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aimd {
    depth: u32,
    credit: u32,
    since_md: u32,
}

impl Default for Aimd {
    fn default() -> Self {
        Aimd::new()
    }
}

impl Aimd {
    /// Every field, by reference, in declaration order. The destructuring has
    /// no `..`, so a new field does not build until it is listed here too: the
    /// kernel driver allocates AIMD state (inside engines) zero-filled and checks from these types
    /// that all-zero bytes are a valid value (`rust/kernel_ext/zeroable.rs`).
    pub fn fields(&self) -> (&u32, &u32, &u32) {
        let Aimd { depth, credit, since_md } = self;
        (depth, credit, since_md)
    }

    /// A controller at [`DEPTH_INIT`].
    pub const fn new() -> Self {
        Aimd { depth: DEPTH_INIT, credit: 0, since_md: u32::MAX }
    }
    /// Current depth in extents.
    #[inline]
    pub fn depth(&self) -> u32 {
        self.depth
    }
    /// The prefetched data was used before the demand read needed it.
    pub fn on_timely(&mut self) {
        self.since_md = self.since_md.saturating_add(1);
        self.credit = self.credit.saturating_add(1);
        if self.credit >= self.depth {
            self.credit = 0;
            self.depth = self.depth.saturating_add(1).min(DEPTH_MAX);
        }
    }
    /// The prefetched data was used but had not arrived yet.
    pub fn on_late(&mut self) {
        self.since_md = self.since_md.saturating_add(1);
        self.depth = self.depth.saturating_add(1).min(DEPTH_MAX);
    }
    /// The prefetched data was evicted or invalidated unused.
    pub fn on_wasted(&mut self) {
        if self.since_md >= self.depth {
            self.depth = (self.depth / 2).max(DEPTH_MIN);
            self.credit = 0;
            self.since_md = 0;
        } else {
            self.since_md = self.since_md.saturating_add(1);
        }
    }
}

/// Number of log2 buckets (bucket `i` holds latencies in `[2^i, 2^(i+1))` ns,
/// bucket 0 also holds 0).
pub const HIST_BUCKETS: usize = 64;

/// Log2 histogram of latencies in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyHistogram {
    buckets: [u32; HIST_BUCKETS],
    count: u32,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

impl LatencyHistogram {
    /// Every field, by reference, in declaration order. The destructuring has
    /// no `..`, so a new field does not build until it is listed here too: the
    /// kernel driver allocates histograms (inside engines) zero-filled and checks from these types
    /// that all-zero bytes are a valid value (`rust/kernel_ext/zeroable.rs`).
    pub fn fields(&self) -> (&[u32; HIST_BUCKETS], &u32) {
        let LatencyHistogram { buckets, count } = self;
        (buckets, count)
    }

    /// An empty histogram.
    pub const fn new() -> Self {
        LatencyHistogram { buckets: [0; HIST_BUCKETS], count: 0 }
    }
    /// Bucket index of a latency.
    #[inline]
    pub fn bucket_of(ns: u64) -> usize {
        if ns == 0 {
            0
        } else {
            63u32.wrapping_sub(ns.leading_zeros()) as usize
        }
    }
    /// Add one sample.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        if let Some(b) = self.buckets.get_mut(Self::bucket_of(ns)) {
            *b = b.saturating_add(1);
        }
        self.count = self.count.saturating_add(1);
    }
    /// Samples recorded since the last reset.
    pub fn count(&self) -> u32 {
        self.count
    }
    /// Forget all samples.
    pub fn reset(&mut self) {
        *self = LatencyHistogram::new();
    }
    /// Estimate the `num/den` quantile in ns (0 if empty or `den == 0`).
    ///
    /// Finds the bucket holding the rank, then interpolates linearly inside
    /// `[2^i, 2^(i+1))`.
    pub fn quantile(&self, num: u32, den: u32) -> u64 {
        if self.count == 0 || den == 0 {
            return 0;
        }
        // rank = ceil(count * num / den), at least 1.
        let total = self.count as u64;
        let rank = total
            .saturating_mul(num as u64)
            .saturating_add((den as u64).wrapping_sub(1))
            .checked_div(den as u64)
            .unwrap_or(total)
            .max(1)
            .min(total);
        let mut seen: u64 = 0;
        for i in 0..HIST_BUCKETS {
            let c = self.buckets.get(i).copied().unwrap_or(0) as u64;
            if c == 0 {
                continue;
            }
            if seen.saturating_add(c) >= rank {
                // i < 64, so the shift never overflows (wrapping_shl avoids the check).
                let lo: u64 = if i == 0 { 0 } else { 1u64.wrapping_shl(i as u32) };
                let width: u64 = if i == 0 { 2 } else { 1u64.wrapping_shl(i as u32) };
                let into = rank.saturating_sub(seen); // 1..=c
                // lo + width * into / c  (width <= 2^63, into <= c < 2^32: use shifts to stay in range)
                let frac = width.checked_div(c).unwrap_or(0).saturating_mul(into);
                return lo.saturating_add(frac);
            }
            seen = seen.saturating_add(c);
        }
        u64::MAX
    }
}

/// Global P99 guard: a depth cap that reacts to foreground tail latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct P99Guard {
    hist: LatencyHistogram,
    baseline_ns: u64,
    last_p99_ns: u64,
    cap: u32,
    trips: u32,
}

impl Default for P99Guard {
    fn default() -> Self {
        P99Guard::new()
    }
}

impl P99Guard {
    /// Every field, by reference, in declaration order. The destructuring has
    /// no `..`, so a new field does not build until it is listed here too: the
    /// kernel driver allocates guards (inside engines) zero-filled and checks from these types
    /// that all-zero bytes are a valid value (`rust/kernel_ext/zeroable.rs`).
    pub fn fields(&self) -> (&LatencyHistogram, &u64, &u64, &u32, &u32) {
        let P99Guard { hist, baseline_ns, last_p99_ns, cap, trips } = self;
        (hist, baseline_ns, last_p99_ns, cap, trips)
    }

    /// A guard with the cap at [`DEPTH_MAX`] and no baseline yet.
    pub const fn new() -> Self {
        P99Guard { hist: LatencyHistogram::new(), baseline_ns: 0, last_p99_ns: 0, cap: DEPTH_MAX, trips: 0 }
    }
    /// Current depth cap (extents).
    #[inline]
    pub fn cap(&self) -> u32 {
        self.cap
    }
    /// Baseline p99 in ns (0 before the first window).
    pub fn baseline_ns(&self) -> u64 {
        self.baseline_ns
    }
    /// p99 of the last complete window, ns.
    pub fn last_p99_ns(&self) -> u64 {
        self.last_p99_ns
    }
    /// How many windows tripped the guard.
    pub fn trips(&self) -> u32 {
        self.trips
    }
    /// Record one foreground latency; evaluates the guard every
    /// [`GUARD_WINDOW`] samples (amortised O(1): one 64-bucket scan per window).
    pub fn record(&mut self, ns: u64) {
        self.hist.record(ns);
        if self.hist.count() < GUARD_WINDOW {
            return;
        }
        let p99 = self.hist.quantile(99, 100);
        self.hist.reset();
        self.last_p99_ns = p99;
        if self.baseline_ns == 0 {
            self.baseline_ns = p99.max(1);
            return;
        }
        if p99 > self.baseline_ns.saturating_mul(GUARD_MULT) {
            // Multiplicative decrease of the cap; the baseline drifts up by
            // 1/16 of the excess so that a permanently slower device is
            // eventually accepted as the new normal.
            self.cap = (self.cap / 2).max(DEPTH_MIN);
            self.trips = self.trips.saturating_add(1);
            let excess = p99.saturating_sub(self.baseline_ns);
            self.baseline_ns = self.baseline_ns.saturating_add(excess / 16);
        } else {
            self.cap = self.cap.saturating_add(1).min(DEPTH_MAX);
            // Baseline: fast down, slow up (EWMA 1/16).
            if p99 < self.baseline_ns {
                self.baseline_ns = p99.max(1);
            } else {
                let excess = p99.saturating_sub(self.baseline_ns);
                self.baseline_ns = self.baseline_ns.saturating_add(excess / 16);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aimd_increase_and_decrease() {
        let mut a = Aimd::new();
        assert_eq!(a.depth(), DEPTH_INIT);
        for _ in 0..DEPTH_INIT {
            a.on_timely();
        }
        assert_eq!(a.depth(), DEPTH_INIT + 1);
        a.on_late();
        assert_eq!(a.depth(), DEPTH_INIT + 2);
        a.on_wasted();
        assert_eq!(a.depth(), (DEPTH_INIT + 2) / 2);
        // a burst of waste from the same window halves only once
        a.on_wasted();
        a.on_wasted();
        assert_eq!(a.depth(), (DEPTH_INIT + 2) / 2);
        for _ in 0..1000 {
            a.on_wasted();
        }
        assert_eq!(a.depth(), DEPTH_MIN);
        for _ in 0..100_000 {
            a.on_late();
        }
        assert_eq!(a.depth(), DEPTH_MAX);
    }

    #[test]
    fn histogram_buckets_and_quantile() {
        assert_eq!(LatencyHistogram::bucket_of(0), 0);
        assert_eq!(LatencyHistogram::bucket_of(1), 0);
        assert_eq!(LatencyHistogram::bucket_of(1024), 10);
        assert_eq!(LatencyHistogram::bucket_of(u64::MAX), 63);
        let mut h = LatencyHistogram::new();
        assert_eq!(h.quantile(99, 100), 0);
        for _ in 0..99 {
            h.record(100_000);
        }
        h.record(10_000_000);
        let p50 = h.quantile(50, 100);
        assert!((65_536..131_072).contains(&p50), "{p50}");
        let p99 = h.quantile(99, 100);
        assert!((65_536..131_072).contains(&p99), "{p99}");
        let p100 = h.quantile(100, 100);
        assert!(p100 >= 8_388_608, "{p100}");
        h.record(u64::MAX);
        let _ = h.quantile(100, 100);
        assert_eq!(h.quantile(1, 0), 0);
    }

    #[test]
    fn guard_cuts_on_tail_and_recovers() {
        let mut g = P99Guard::new();
        for _ in 0..GUARD_WINDOW {
            g.record(100_000);
        }
        let base = g.baseline_ns();
        assert!(base > 0);
        assert_eq!(g.cap(), DEPTH_MAX);
        // tail 10x the baseline in 2% of samples -> p99 jumps
        for _ in 0..3 {
            for i in 0..GUARD_WINDOW {
                g.record(if i % 50 == 0 { 1_000_000 } else { 100_000 });
            }
        }
        assert_eq!(g.cap(), DEPTH_MAX / 8);
        assert_eq!(g.trips(), 3);
        for _ in 0..10 {
            for _ in 0..GUARD_WINDOW {
                g.record(100_000);
            }
        }
        assert_eq!(g.cap(), DEPTH_MAX / 8 + 10);
    }
}
