//! The prefetch cache's index and policy: a bounded set of 4 KiB blocks.
//!
//! This module decides *which* blocks are cached and in what state; it holds
//! no memory of its own. The caller provides the slot and bucket arrays (a
//! `KVVec` in the kernel, a `Vec` in the simulator) and a payload type `P`:
//! a page in the kernel, `()` in the simulator. One implementation, so the
//! simulator and the kernel agree on capacity, eviction and outcomes.
//!
//! Block life cycle:
//!
//! ```text
//!   free --reserve--> in flight --fill--> unused --serve--> consumed
//!                        |  (abort, or invalidated: the generation moves on,
//!                        |   so the late completion is dropped as stale)
//!   unused/consumed --evict, invalidate, shrink--> free
//! ```
//!
//! Eviction takes consumed blocks first (least recently served first): a
//! sequential reader never comes back to what it has read. Then the oldest
//! unused block, which counts as waste. In-flight blocks are never evicted:
//! their memory belongs to the read that fills them.
//!
//! Coherence: a write *invalidates* the blocks it overlaps and *fences* its
//! range until it completes; no block of a fenced range can be reserved, so
//! a prefetch can neither overtake a write on the device nor be filled with
//! data older than it.

use super::engine::{Outcome, StreamId};

/// Sectors (512 bytes) per cache block.
pub const BLOCK_SECTORS: u64 = 8;
/// Bytes per cache block.
pub const BLOCK_BYTES: u64 = 4096;
/// In-flight writes tracked one by one; more than this fence everything.
pub const FENCES: usize = 64;

const NIL: u32 = u32::MAX;

/// Where a slot is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not in the index.
    Free,
    /// Reserved for a prefetch read that has not completed.
    InFlight,
    /// Prefetched, not yet read by a demand request.
    Unused,
    /// Served to a demand request at least once.
    Consumed,
}

/// The lists a slot can be on (in-flight slots are on none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Free = 0,
    Unused = 1,
    Consumed = 2,
}

/// One cache slot. Made with [`Slot::EMPTY`]-like [`Slot::empty`].
#[derive(Debug)]
pub struct Slot<P> {
    block: u64,
    hash_next: u32,
    prev: u32,
    next: u32,
    gen: u32,
    stream: StreamId,
    state: State,
    /// A demand read arrived while the block was in flight.
    late: bool,
    payload: Option<P>,
}

impl<P> Slot<P> {
    /// A free slot, for filling the caller's slot array.
    pub const fn empty() -> Self {
        Slot {
            block: 0,
            hash_next: NIL,
            prev: NIL,
            next: NIL,
            gen: 0,
            stream: StreamId(0),
            state: State::Free,
            late: false,
            payload: None,
        }
    }
}

/// A reserved slot, to be passed back to [`BlockCache::fill`] or
/// [`BlockCache::abort`] when the read completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// Slot index.
    pub slot: u32,
    /// The slot's generation when reserved.
    pub gen: u32,
}

/// Why [`BlockCache::reserve`] reserved nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoReserve {
    /// The block is cached or already in flight.
    Present,
    /// A write to the block is in flight.
    Fenced,
    /// The budget is used up by in-flight blocks.
    Full,
}

/// What [`BlockCache::serve`] found for a demand read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// The first `blocks` blocks were valid; their payloads were handed to
    /// the caller. Fewer than asked only when a prefix was allowed.
    Hit {
        /// Blocks served.
        blocks: u32,
        /// Of those, blocks read for the first time.
        first_use: u32,
    },
    /// Not all blocks were valid.
    Miss {
        /// Valid blocks at the start of the range.
        valid_prefix: u32,
        /// Blocks of the range still in flight (now marked late).
        in_flight: u32,
    },
}

/// Identifies an in-flight write's fence, for [`BlockCache::fence_end`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FenceId(u8);

impl FenceId {
    /// The fence that stands for "some untracked write": it fences everything.
    pub const OVERFLOW: FenceId = FenceId(u8::MAX);

    /// The raw value, for storage in per-bio data.
    pub fn raw(self) -> u8 {
        self.0
    }

    /// From [`FenceId::raw`].
    pub fn from_raw(v: u8) -> Self {
        FenceId(v)
    }
}

#[derive(Debug, Clone, Copy)]
struct Fence {
    lo: u64,
    hi: u64,
    live: bool,
}

/// Block counts by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Occupancy {
    /// Reserved for reads in flight.
    pub in_flight: u32,
    /// Prefetched, not read yet.
    pub unused: u32,
    /// Read at least once.
    pub consumed: u32,
    /// Most blocks the cache may hold (in flight included).
    pub limit: u32,
}

impl Occupancy {
    /// Blocks holding memory: in flight, unused and consumed.
    pub fn used(&self) -> u32 {
        self.in_flight + self.unused + self.consumed
    }
}

/// The cache index over caller-provided storage `S` (slots) and `B`
/// (hash buckets, a power of two long).
pub struct BlockCache<P, S, B>
where
    S: core::ops::DerefMut<Target = [Slot<P>]>,
    B: core::ops::DerefMut<Target = [u32]>,
{
    slots: S,
    buckets: B,
    hash_shift: u32,
    heads: [u32; 3],
    tails: [u32; 3],
    occ: Occupancy,
    fences: [Fence; FENCES],
    live_fences: u32,
    overflow_fences: u32,
}

/// Hash-bucket count for `slots` slots: the next power of two, at least 2.
pub fn buckets_for(slots: usize) -> usize {
    slots.max(2).next_power_of_two()
}

impl<P, S, B> BlockCache<P, S, B>
where
    S: core::ops::DerefMut<Target = [Slot<P>]>,
    B: core::ops::DerefMut<Target = [u32]>,
{
    /// An empty cache over `slots` (every slot [`Slot::empty`]) and `buckets`
    /// ([`buckets_for`]`(slots.len())` entries), holding at most `limit`
    /// blocks. Returns `None` if the bucket count is not a power of two or is
    /// smaller than the slot count, or if there are `u32::MAX` slots or more.
    pub fn new(slots: S, buckets: B, limit: u32) -> Option<Self> {
        let nb = buckets.len();
        if !nb.is_power_of_two() || nb < slots.len() || nb < 2 || slots.len() >= NIL as usize {
            return None;
        }
        let mut c = BlockCache {
            slots,
            buckets,
            hash_shift: 64 - nb.trailing_zeros(),
            heads: [NIL; 3],
            tails: [NIL; 3],
            occ: Occupancy::default(),
            fences: [Fence { lo: 0, hi: 0, live: false }; FENCES],
            live_fences: 0,
            overflow_fences: 0,
        };
        c.rebuild(limit);
        Some(c)
    }

    /// Moves every block into larger storage (same slot indices, so tickets
    /// stay valid) and returns the old storage, for the caller to free
    /// outside its lock. Returns the new storage back unchanged if it is
    /// smaller than the current one or malformed.
    #[allow(clippy::type_complexity)]
    pub fn regrow(&mut self, mut slots: S, mut buckets: B, limit: u32) -> Result<(S, B), (S, B)> {
        let nb = buckets.len();
        if slots.len() < self.slots.len() || !nb.is_power_of_two() || nb < slots.len() || slots.len() >= NIL as usize {
            return Err((slots, buckets));
        }
        for (new, old) in slots.iter_mut().zip(self.slots.iter_mut()) {
            core::mem::swap(new, old);
        }
        core::mem::swap(&mut self.slots, &mut slots);
        core::mem::swap(&mut self.buckets, &mut buckets);
        self.hash_shift = 64 - nb.trailing_zeros();
        self.rebuild(limit);
        Ok((slots, buckets))
    }

    /// Rebuilds the hash chains and lists from the slots' states, then
    /// evicts down to `limit`. Unused blocks keep their order by index, which
    /// only matters after a regrow.
    fn rebuild(&mut self, limit: u32) {
        for b in self.buckets.iter_mut() {
            *b = NIL;
        }
        self.heads = [NIL; 3];
        self.tails = [NIL; 3];
        self.occ = Occupancy { limit: limit.min(self.slots.len() as u32), ..Occupancy::default() };
        for i in 0..self.slots.len() as u32 {
            let st = self.slot(i).state;
            match st {
                State::Free => self.push_tail(List::Free, i),
                State::InFlight => self.occ.in_flight += 1,
                State::Unused => {
                    self.occ.unused += 1;
                    self.push_tail(List::Unused, i);
                }
                State::Consumed => {
                    self.occ.consumed += 1;
                    self.push_tail(List::Consumed, i);
                }
            }
            if st != State::Free {
                let block = self.slot(i).block;
                self.hash_insert(i, block);
            }
        }
        self.evict_to_limit(&mut |_, _, _| {});
    }

    /// Block counts.
    pub fn occupancy(&self) -> Occupancy {
        self.occ
    }

    /// Slots in the storage: the largest limit possible without a regrow.
    pub fn capacity(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Changes the budget; evicts at once down to it (at most the capacity).
    pub fn set_limit(&mut self, limit: u32, sink: &mut (impl FnMut(StreamId, Outcome, u32) + ?Sized)) {
        self.occ.limit = limit.min(self.capacity());
        self.evict_to_limit(sink);
    }

    fn evict_to_limit(&mut self, sink: &mut (impl FnMut(StreamId, Outcome, u32) + ?Sized)) {
        while self.occ.used() > self.occ.limit {
            if !self.evict_one(sink) {
                break;
            }
        }
    }

    fn slot(&self, i: u32) -> &Slot<P> {
        // Indices come from our own lists and chains, all < len.
        &self.slots[i as usize]
    }

    fn slot_mut(&mut self, i: u32) -> &mut Slot<P> {
        &mut self.slots[i as usize]
    }

    fn bucket(&self, block: u64) -> usize {
        (block.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.hash_shift) as usize
    }

    fn find(&self, block: u64) -> u32 {
        let mut i = self.buckets[self.bucket(block)];
        while i != NIL {
            let s = self.slot(i);
            if s.block == block {
                return i;
            }
            i = s.hash_next;
        }
        NIL
    }

    fn hash_insert(&mut self, i: u32, block: u64) {
        let b = self.bucket(block);
        let head = self.buckets[b];
        let s = self.slot_mut(i);
        s.block = block;
        s.hash_next = head;
        self.buckets[b] = i;
    }

    fn hash_remove(&mut self, i: u32) {
        let block = self.slot(i).block;
        let b = self.bucket(block);
        let next = self.slot(i).hash_next;
        if self.buckets[b] == i {
            self.buckets[b] = next;
            return;
        }
        let mut p = self.buckets[b];
        while p != NIL {
            let pn = self.slot(p).hash_next;
            if pn == i {
                self.slot_mut(p).hash_next = next;
                return;
            }
            p = pn;
        }
    }

    fn push_tail(&mut self, l: List, i: u32) {
        let t = self.tails[l as usize];
        {
            let s = self.slot_mut(i);
            s.prev = t;
            s.next = NIL;
        }
        if t == NIL {
            self.heads[l as usize] = i;
        } else {
            self.slot_mut(t).next = i;
        }
        self.tails[l as usize] = i;
    }

    fn push_head(&mut self, l: List, i: u32) {
        let h = self.heads[l as usize];
        {
            let s = self.slot_mut(i);
            s.prev = NIL;
            s.next = h;
        }
        if h == NIL {
            self.tails[l as usize] = i;
        } else {
            self.slot_mut(h).prev = i;
        }
        self.heads[l as usize] = i;
    }

    fn unlink(&mut self, l: List, i: u32) {
        let (p, n) = {
            let s = self.slot(i);
            (s.prev, s.next)
        };
        if p == NIL {
            self.heads[l as usize] = n;
        } else {
            self.slot_mut(p).next = n;
        }
        if n == NIL {
            self.tails[l as usize] = p;
        } else {
            self.slot_mut(n).prev = p;
        }
        let s = self.slot_mut(i);
        s.prev = NIL;
        s.next = NIL;
    }

    fn list_of(st: State) -> Option<List> {
        match st {
            State::Free => Some(List::Free),
            State::Unused => Some(List::Unused),
            State::Consumed => Some(List::Consumed),
            State::InFlight => None,
        }
    }

    /// Takes slot `i` out of the index and frees it (payload dropped, the
    /// generation moved on so a pending fill is refused). Reports an unused
    /// block as wasted.
    fn release(&mut self, i: u32, sink: &mut (impl FnMut(StreamId, Outcome, u32) + ?Sized)) {
        let (st, stream) = {
            let s = self.slot(i);
            (s.state, s.stream)
        };
        if st == State::Free {
            return;
        }
        self.hash_remove(i);
        match st {
            State::InFlight => self.occ.in_flight -= 1,
            State::Unused => {
                self.occ.unused -= 1;
                sink(stream, Outcome::Wasted, 1);
            }
            State::Consumed => self.occ.consumed -= 1,
            State::Free => {}
        }
        if let Some(l) = Self::list_of(st) {
            self.unlink(l, i);
        }
        let s = self.slot_mut(i);
        s.state = State::Free;
        s.late = false;
        s.gen = s.gen.wrapping_add(1);
        s.payload = None;
        // Freed slots are reused first (their metadata is cache-warm).
        self.push_head(List::Free, i);
    }

    /// Evicts one block: the least recently served consumed block, else the
    /// oldest unused one. False if only in-flight blocks are left.
    fn evict_one(&mut self, sink: &mut (impl FnMut(StreamId, Outcome, u32) + ?Sized)) -> bool {
        let victim = match self.heads[List::Consumed as usize] {
            NIL => self.heads[List::Unused as usize],
            c => c,
        };
        if victim == NIL {
            return false;
        }
        self.release(victim, sink);
        true
    }

    /// Evicts up to `n` blocks that are not in flight (for a shrinker).
    /// Returns how many were freed.
    pub fn shrink(&mut self, n: u32, sink: &mut (impl FnMut(StreamId, Outcome, u32) + ?Sized)) -> u32 {
        let mut freed = 0;
        while freed < n && self.evict_one(sink) {
            freed += 1;
        }
        freed
    }

    /// Blocks a shrinker could free now.
    pub fn reclaimable(&self) -> u32 {
        self.occ.unused + self.occ.consumed
    }

    /// Forgets every block (in-flight reads will be dropped when they
    /// complete). An administrator's decision, not the prefetcher's: no
    /// outcome is reported. Returns how many unused blocks were dropped.
    pub fn clear(&mut self) -> u32 {
        let mut unused = 0;
        for i in 0..self.capacity() {
            self.release(i, &mut |_, _, n| unused += n);
        }
        unused
    }

    /// Reserves `block` for a prefetch read on behalf of `stream`, evicting
    /// within the budget if needed.
    pub fn reserve(
        &mut self,
        block: u64,
        stream: StreamId,
        sink: &mut (impl FnMut(StreamId, Outcome, u32) + ?Sized),
    ) -> Result<Ticket, NoReserve> {
        if self.find(block) != NIL {
            return Err(NoReserve::Present);
        }
        if self.is_fenced(block) {
            return Err(NoReserve::Fenced);
        }
        if self.occ.used() >= self.occ.limit && !self.evict_one(sink) {
            return Err(NoReserve::Full);
        }
        let i = self.heads[List::Free as usize];
        if i == NIL {
            return Err(NoReserve::Full);
        }
        self.unlink(List::Free, i);
        self.hash_insert(i, block);
        self.occ.in_flight += 1;
        let s = self.slot_mut(i);
        s.state = State::InFlight;
        s.stream = stream;
        s.late = false;
        Ok(Ticket { slot: i, gen: s.gen })
    }

    /// The read for `t` completed with `payload`. Returns the payload back if
    /// the slot was invalidated (or reused) meanwhile: the data is stale.
    pub fn fill(&mut self, t: Ticket, payload: P) -> Result<(), P> {
        let Some(s) = self.slots.get(t.slot as usize) else {
            return Err(payload);
        };
        if s.gen != t.gen || s.state != State::InFlight {
            return Err(payload);
        }
        let late = s.late;
        self.occ.in_flight -= 1;
        let (st, l) = if late { (State::Consumed, List::Consumed) } else { (State::Unused, List::Unused) };
        {
            let s = self.slot_mut(t.slot);
            s.state = st;
            s.payload = Some(payload);
        }
        if late {
            self.occ.consumed += 1;
        } else {
            self.occ.unused += 1;
        }
        self.push_tail(l, t.slot);
        self.evict_to_limit(&mut |_, _, _| {});
        Ok(())
    }

    /// The read for `t` failed: free its slot if it is still the same one.
    pub fn abort(&mut self, t: Ticket) {
        let live = self.slots.get(t.slot as usize).is_some_and(|s| s.gen == t.gen && s.state == State::InFlight);
        if live {
            self.release(t.slot, &mut |_, _, _| {});
        }
    }

    /// A demand read of blocks `[first, first + n)`. If all are valid and
    /// `n <= max`, or at least one leading block is valid and `prefix` is
    /// allowed, serves the leading valid blocks (at most `max`): calls `take`
    /// with each payload in order, marks them consumed and reports first
    /// uses as timely. Otherwise marks in-flight blocks late (reported as
    /// late) and serves nothing.
    pub fn serve(
        &mut self,
        first: u64,
        n: u32,
        max: u32,
        prefix: bool,
        sink: &mut (impl FnMut(StreamId, Outcome, u32) + ?Sized),
        take: impl FnMut(&P),
    ) -> Serve {
        let mut valid_prefix = 0;
        while valid_prefix < n {
            let i = self.find(first.wrapping_add(u64::from(valid_prefix)));
            if i == NIL || !matches!(self.slot(i).state, State::Unused | State::Consumed) {
                break;
            }
            valid_prefix += 1;
        }
        if valid_prefix > 0 && ((valid_prefix == n && n <= max) || prefix) {
            let blocks = valid_prefix.min(max);
            return Serve::Hit { blocks, first_use: self.take_blocks(first, blocks, sink, take) };
        }
        let mut in_flight = 0;
        for k in 0..n as u64 {
            let i = self.find(first.wrapping_add(k));
            if i == NIL || self.slot(i).state != State::InFlight {
                continue;
            }
            in_flight += 1;
            let s = self.slot_mut(i);
            if !s.late {
                s.late = true;
                let stream = s.stream;
                sink(stream, Outcome::Late, 1);
            }
        }
        Serve::Miss { valid_prefix, in_flight }
    }

    /// Hands the payloads of the (valid) blocks `[first, first + n)` to
    /// `take` and marks them consumed. Returns the first uses.
    fn take_blocks(
        &mut self,
        first: u64,
        n: u32,
        sink: &mut (impl FnMut(StreamId, Outcome, u32) + ?Sized),
        mut take: impl FnMut(&P),
    ) -> u32 {
        let mut first_use = 0;
        for k in 0..n as u64 {
            let i = self.find(first.wrapping_add(k));
            let (st, stream) = {
                let s = self.slot(i);
                (s.state, s.stream)
            };
            if let Some(p) = self.slot(i).payload.as_ref() {
                take(p);
            }
            if st == State::Unused {
                first_use += 1;
                sink(stream, Outcome::Timely, 1);
                self.unlink(List::Unused, i);
                self.occ.unused -= 1;
                self.occ.consumed += 1;
                self.slot_mut(i).state = State::Consumed;
            } else {
                self.unlink(List::Consumed, i);
            }
            // Most recently served goes last in eviction order.
            self.push_tail(List::Consumed, i);
        }
        first_use
    }

    /// A write or discard of blocks `[first, first + n)` is about to be sent
    /// down: forget them (unused ones count as wasted; in-flight ones will be
    /// dropped as stale). Returns how many blocks were cached or in flight.
    pub fn invalidate(&mut self, first: u64, n: u64, sink: &mut (impl FnMut(StreamId, Outcome, u32) + ?Sized)) -> u32 {
        let used = self.occ.used();
        if used == 0 {
            return 0;
        }
        let mut hit = 0;
        let end = first.saturating_add(n);
        if n > u64::from(used) {
            // A large range: scanning the slots is cheaper than n lookups.
            for i in 0..self.capacity() {
                let s = self.slot(i);
                if s.state != State::Free && s.block >= first && s.block < end {
                    self.release(i, sink);
                    hit += 1;
                }
            }
        } else {
            for b in first..end {
                let i = self.find(b);
                if i != NIL {
                    self.release(i, sink);
                    hit += 1;
                }
            }
        }
        hit
    }

    /// Fences blocks `[first, first + n)` while a write to them is in flight.
    pub fn fence_begin(&mut self, first: u64, n: u64) -> FenceId {
        for (k, f) in self.fences.iter_mut().enumerate() {
            if !f.live {
                *f = Fence { lo: first, hi: first.saturating_add(n), live: true };
                self.live_fences += 1;
                return FenceId(k as u8);
            }
        }
        self.overflow_fences += 1;
        FenceId::OVERFLOW
    }

    /// The write behind `id` completed.
    pub fn fence_end(&mut self, id: FenceId) {
        if id == FenceId::OVERFLOW {
            self.overflow_fences = self.overflow_fences.saturating_sub(1);
            return;
        }
        if let Some(f) = self.fences.get_mut(id.0 as usize) {
            if f.live {
                f.live = false;
                self.live_fences -= 1;
            }
        }
    }

    /// Writes in flight (fenced).
    pub fn fenced_writes(&self) -> u32 {
        self.live_fences + self.overflow_fences
    }

    fn is_fenced(&self, block: u64) -> bool {
        if self.overflow_fences != 0 {
            return true;
        }
        self.live_fences != 0 && self.fences.iter().any(|f| f.live && block >= f.lo && block < f.hi)
    }

    /// State of `block`, for tests and debugging.
    pub fn state_of(&self, block: u64) -> State {
        match self.find(block) {
            NIL => State::Free,
            i => self.slot(i).state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::vec;
    use std::vec::Vec;

    type C = BlockCache<u64, Vec<Slot<u64>>, Vec<u32>>;

    fn cache(slots: usize, limit: u32) -> C {
        let s: Vec<Slot<u64>> = (0..slots).map(|_| Slot::empty()).collect();
        BlockCache::new(s, vec![0; buckets_for(slots)], limit).unwrap()
    }

    #[derive(Default)]
    struct Events(Vec<(StreamId, Outcome, u32)>);
    impl Events {
        fn count(&self, o: Outcome) -> u32 {
            self.0.iter().filter(|e| e.1 == o).map(|e| e.2).sum()
        }
    }

    fn fetch(c: &mut C, ev: &mut Events, block: u64, stream: u32) -> Result<Ticket, NoReserve> {
        let t = c.reserve(block, StreamId(stream), &mut |s, o, n| ev.0.push((s, o, n)))?;
        c.fill(t, block * 10).map_err(|_| NoReserve::Present)?;
        Ok(t)
    }

    fn read(c: &mut C, ev: &mut Events, first: u64, n: u32) -> (Serve, Vec<u64>) {
        let mut got = Vec::new();
        let r = c.serve(first, n, 64, false, &mut |s, o, k| ev.0.push((s, o, k)), |p| got.push(*p));
        (r, got)
    }

    #[test]
    fn new_rejects_bad_storage() {
        let s: Vec<Slot<u64>> = (0..8).map(|_| Slot::empty()).collect();
        assert!(C::new(s, vec![0; 6], 8).is_none());
        let s: Vec<Slot<u64>> = (0..8).map(|_| Slot::empty()).collect();
        assert!(C::new(s, vec![0; 4], 8).is_none());
    }

    #[test]
    fn fill_then_serve_in_order() {
        let mut c = cache(16, 16);
        let mut ev = Events::default();
        for b in 100..104 {
            fetch(&mut c, &mut ev, b, 7).unwrap();
        }
        assert_eq!(c.occupancy().unused, 4);
        let (r, got) = read(&mut c, &mut ev, 100, 4);
        assert_eq!(r, Serve::Hit { blocks: 4, first_use: 4 });
        assert_eq!(got, vec![1000, 1010, 1020, 1030]);
        assert_eq!(ev.count(Outcome::Timely), 4);
        // A second read of the same blocks is a hit but not a first use.
        let (r, _) = read(&mut c, &mut ev, 101, 2);
        assert_eq!(r, Serve::Hit { blocks: 2, first_use: 0 });
        assert_eq!(ev.count(Outcome::Timely), 4);
        assert_eq!(c.occupancy().consumed, 4);
    }

    #[test]
    fn partial_and_missing_ranges_miss() {
        let mut c = cache(16, 16);
        let mut ev = Events::default();
        fetch(&mut c, &mut ev, 10, 1).unwrap();
        fetch(&mut c, &mut ev, 11, 1).unwrap();
        let (r, got) = read(&mut c, &mut ev, 10, 3);
        assert_eq!(r, Serve::Miss { valid_prefix: 2, in_flight: 0 });
        assert!(got.is_empty());
        let (r, _) = read(&mut c, &mut ev, 9, 2);
        assert_eq!(r, Serve::Miss { valid_prefix: 0, in_flight: 0 });
        assert_eq!(c.occupancy().unused, 2, "a miss consumes nothing");
        // With a prefix allowed, the valid head is served, at most `max`.
        let mut got = Vec::new();
        let r = c.serve(10, 3, 1, true, &mut |_, _, _| {}, |p| got.push(*p));
        assert_eq!(r, Serve::Hit { blocks: 1, first_use: 1 });
        assert_eq!(got, vec![100]);
        let r = c.serve(10, 3, 8, true, &mut |_, _, _| {}, |p| got.push(*p));
        assert_eq!(r, Serve::Hit { blocks: 2, first_use: 1 });
        // Without it, a range larger than `max` is not served even if valid.
        assert!(matches!(c.serve(10, 2, 1, false, &mut |_, _, _| {}, |_| {}), Serve::Miss { valid_prefix: 2, .. }));
    }

    #[test]
    fn in_flight_read_is_late_once_and_never_wasted() {
        let mut c = cache(8, 8);
        let mut ev = Events::default();
        let t = c.reserve(5, StreamId(3), &mut |_, _, _| {}).unwrap();
        let (r, _) = read(&mut c, &mut ev, 5, 1);
        assert_eq!(r, Serve::Miss { valid_prefix: 0, in_flight: 1 });
        let _ = read(&mut c, &mut ev, 5, 1);
        assert_eq!(ev.count(Outcome::Late), 1);
        c.fill(t, 50).unwrap();
        // Filled late: it is consumed, so evicting it is not waste.
        assert_eq!(c.state_of(5), State::Consumed);
        assert_eq!(c.clear(), 0);
        assert_eq!(ev.count(Outcome::Wasted), 0);
    }

    #[test]
    fn eviction_takes_consumed_first_then_oldest_unused() {
        let mut c = cache(4, 4);
        let mut ev = Events::default();
        for b in 0..4 {
            fetch(&mut c, &mut ev, b, 1).unwrap();
        }
        let _ = read(&mut c, &mut ev, 2, 1); // 2 consumed
        fetch(&mut c, &mut ev, 10, 1).unwrap(); // evicts 2
        assert_eq!(c.state_of(2), State::Free);
        assert_eq!(ev.count(Outcome::Wasted), 0);
        fetch(&mut c, &mut ev, 11, 1).unwrap(); // evicts 0, the oldest unused: waste
        assert_eq!(c.state_of(0), State::Free);
        assert_eq!(c.state_of(1), State::Unused);
        assert_eq!(ev.count(Outcome::Wasted), 1);
        // Served blocks go to the back: least recently served leaves first.
        let _ = read(&mut c, &mut ev, 1, 1);
        let _ = read(&mut c, &mut ev, 3, 1);
        let _ = read(&mut c, &mut ev, 1, 1);
        fetch(&mut c, &mut ev, 12, 1).unwrap();
        assert_eq!(c.state_of(3), State::Free);
        assert_eq!(c.state_of(1), State::Consumed);
    }

    #[test]
    fn in_flight_blocks_are_never_evicted() {
        let mut c = cache(2, 2);
        let mut ev = Events::default();
        let a = c.reserve(1, StreamId(1), &mut |_, _, _| {}).unwrap();
        let _b = c.reserve(2, StreamId(1), &mut |_, _, _| {}).unwrap();
        assert_eq!(c.reserve(3, StreamId(1), &mut |_, _, _| {}), Err(NoReserve::Full));
        assert_eq!(c.shrink(10, &mut |_, _, _| {}), 0);
        c.fill(a, 1).unwrap();
        assert_eq!(c.reclaimable(), 1);
        fetch(&mut c, &mut ev, 3, 1).unwrap();
        assert_eq!(c.state_of(1), State::Free);
        assert_eq!(c.state_of(2), State::InFlight);
    }

    #[test]
    fn duplicates_are_refused() {
        let mut c = cache(4, 4);
        let mut ev = Events::default();
        let _t = c.reserve(9, StreamId(1), &mut |_, _, _| {}).unwrap();
        assert_eq!(c.reserve(9, StreamId(2), &mut |_, _, _| {}), Err(NoReserve::Present));
        fetch(&mut c, &mut ev, 8, 1).unwrap();
        assert_eq!(c.reserve(8, StreamId(2), &mut |_, _, _| {}), Err(NoReserve::Present));
    }

    #[test]
    fn write_during_prefetch_drops_the_stale_fill() {
        let mut c = cache(4, 4);
        let mut ev = Events::default();
        let t = c.reserve(7, StreamId(1), &mut |_, _, _| {}).unwrap();
        assert_eq!(c.invalidate(7, 1, &mut |s, o, n| ev.0.push((s, o, n))), 1);
        assert_eq!(c.fill(t, 70), Err(70), "data read before the write is stale");
        assert_eq!(c.state_of(7), State::Free);
        // The slot was reused meanwhile: an old ticket is refused too.
        let t2 = c.reserve(7, StreamId(1), &mut |_, _, _| {}).unwrap();
        assert_eq!(t2.slot, t.slot);
        assert_ne!(t2.gen, t.gen);
        c.abort(t); // stale abort must not free the new reservation
        assert_eq!(c.state_of(7), State::InFlight);
        assert_eq!(c.fill(t2, 71), Ok(()));
        assert_eq!(ev.count(Outcome::Wasted), 0, "invalidating an in-flight block is not waste");
    }

    #[test]
    fn fences_block_prefetch_until_the_write_completes() {
        let mut c = cache(8, 8);
        let f = c.fence_begin(10, 4);
        for b in 10..14 {
            assert_eq!(c.reserve(b, StreamId(1), &mut |_, _, _| {}), Err(NoReserve::Fenced));
        }
        assert!(c.reserve(14, StreamId(1), &mut |_, _, _| {}).is_ok());
        c.fence_end(f);
        assert!(c.reserve(10, StreamId(1), &mut |_, _, _| {}).is_ok());
        // More writes in flight than fences: everything is fenced.
        let ids: Vec<FenceId> = (0..FENCES as u64 + 1).map(|k| c.fence_begin(1000 + k, 1)).collect();
        assert_eq!(ids.last(), Some(&FenceId::OVERFLOW));
        assert_eq!(c.reserve(5, StreamId(1), &mut |_, _, _| {}), Err(NoReserve::Fenced));
        for id in ids {
            c.fence_end(id);
        }
        assert_eq!(c.fenced_writes(), 0);
        assert!(c.reserve(5, StreamId(1), &mut |_, _, _| {}).is_ok());
    }

    #[test]
    fn invalidate_large_range_scans() {
        let mut c = cache(8, 8);
        let mut ev = Events::default();
        for b in [3u64, 500, 1 << 40] {
            fetch(&mut c, &mut ev, b, 1).unwrap();
        }
        assert_eq!(c.invalidate(0, u64::MAX, &mut |s, o, n| ev.0.push((s, o, n))), 3);
        assert_eq!(c.occupancy().used(), 0);
        assert_eq!(ev.count(Outcome::Wasted), 3);
    }

    #[test]
    fn budget_changes_evict_at_once() {
        let mut c = cache(8, 8);
        let mut ev = Events::default();
        for b in 0..8 {
            fetch(&mut c, &mut ev, b, 1).unwrap();
        }
        c.set_limit(3, &mut |s, o, n| ev.0.push((s, o, n)));
        assert_eq!(c.occupancy().used(), 3);
        assert_eq!(ev.count(Outcome::Wasted), 5);
        c.set_limit(100, &mut |_, _, _| {});
        assert_eq!(c.occupancy().limit, 8, "the limit is clamped to the capacity");
        c.set_limit(0, &mut |_, _, _| {});
        assert_eq!(c.reserve(1, StreamId(1), &mut |_, _, _| {}), Err(NoReserve::Full));
    }

    #[test]
    fn regrow_keeps_blocks_and_tickets() {
        let mut c = cache(4, 4);
        let mut ev = Events::default();
        fetch(&mut c, &mut ev, 1, 1).unwrap();
        let t = c.reserve(2, StreamId(1), &mut |_, _, _| {}).unwrap();
        let s: Vec<Slot<u64>> = (0..64).map(|_| Slot::empty()).collect();
        let (old_s, _) = c.regrow(s, vec![0; 64], 64).ok().unwrap();
        assert_eq!(old_s.len(), 4);
        assert_eq!(c.capacity(), 64);
        assert_eq!(c.state_of(1), State::Unused);
        c.fill(t, 20).unwrap();
        for b in 10..72 {
            fetch(&mut c, &mut ev, b, 1).unwrap();
        }
        assert_eq!(c.occupancy().used(), 64);
        // Smaller storage is handed back.
        let s: Vec<Slot<u64>> = (0..8).map(|_| Slot::empty()).collect();
        assert!(c.regrow(s, vec![0; 8], 8).is_err());
    }

    /// Random operations against a plain model: states, payloads and
    /// occupancy always agree, and the budget always holds.
    #[test]
    fn random_operations_match_a_model() {
        let mut c = cache(32, 24);
        let mut model: HashMap<u64, (State, u64)> = HashMap::new();
        let mut tickets: Vec<(u64, Ticket)> = Vec::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let mut sink = |_: StreamId, _: Outcome, _: u32| {};
        for step in 0..50_000u64 {
            let b = rnd(64);
            match rnd(6) {
                0 | 1 => {
                    if let Ok(t) = c.reserve(b, StreamId(1), &mut sink) {
                        assert!(!model.contains_key(&b) || model[&b].0 == State::Free);
                        model.insert(b, (State::InFlight, 0));
                        tickets.push((b, t));
                    }
                }
                2 if !tickets.is_empty() => {
                    let (tb, t) = tickets.swap_remove(rnd(tickets.len() as u64) as usize);
                    let ok = c.fill(t, step).is_ok();
                    if ok {
                        model.insert(tb, (State::Unused, step));
                    }
                }
                3 => {
                    let mut got = Vec::new();
                    if let Serve::Hit { .. } = c.serve(b, 1, 64, false, &mut sink, |p| got.push(*p)) {
                        let (_, v) = model[&b];
                        assert_eq!(got, vec![v]);
                        model.insert(b, (State::Consumed, v));
                    }
                }
                4 => {
                    c.invalidate(b, 2, &mut sink);
                    model.remove(&b);
                    model.remove(&(b + 1));
                }
                _ => {
                    c.shrink(1, &mut sink);
                }
            }
            // Evictions are the cache's choice: drop what it no longer has.
            model.retain(|k, _| c.state_of(*k) != State::Free);
            for (k, (st, _)) in &model {
                let got = c.state_of(*k);
                if *st == State::InFlight || got == State::InFlight {
                    assert_eq!(got, *st, "block {k} at step {step}");
                }
            }
            let o = c.occupancy();
            assert!(o.used() <= o.limit, "{o:?}");
            assert_eq!(o.used() as usize, model.len());
        }
    }
}
