//! The user-space buffer cache of `bench --prefetch`: which prefetched extent lives in which
//! command slot, whether it has arrived, and what to tell aether-core's engine about it.
//!
//! One extent per slot (the slot's DMA buffer holds it). An extent is used once a demand read
//! falls inside it (feedback Timely if it had arrived, Late if still in flight) and freed when a
//! demand read reaches its end; a slot needed for a new extent evicts the oldest arrived,
//! never-used extent (feedback Wasted). Pure bookkeeping: host-tested, no device.

use aether_core::{Outcome, StreamId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub start: u64,
    pub len: u64,
    pub stream: StreamId,
    pub ready: bool,
    pub used: bool,
    /// Order of arrival, for eviction.
    pub seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The slot holds [off, off + len) and the data is there.
    Hit(u32),
    /// The slot's read of [off, off + len) is still in flight.
    InFlight(u32),
    Miss,
}

/// Extents by slot; slots are `first..first + n`.
pub struct Cache {
    first: u32,
    slots: Vec<Option<Extent>>,
    seq: u64,
}

impl Cache {
    pub fn new(first: u32, n: u32) -> Cache {
        Cache { first, slots: vec![None; n as usize], seq: 0 }
    }
    fn get(&self, slot: u32) -> Option<&Extent> {
        self.slots.get(slot.checked_sub(self.first)? as usize)?.as_ref()
    }
    fn get_mut(&mut self, slot: u32) -> Option<&mut Extent> {
        self.slots.get_mut(slot.checked_sub(self.first)? as usize)?.as_mut()
    }
    pub fn lookup(&self, off: u64, len: u64) -> Lookup {
        for (i, e) in self.slots.iter().enumerate() {
            if let Some(e) = e {
                if e.start <= off && off + len <= e.start + e.len {
                    let slot = self.first + i as u32;
                    return if e.ready { Lookup::Hit(slot) } else { Lookup::InFlight(slot) };
                }
            }
        }
        Lookup::Miss
    }
    /// True when [start, start + len) overlaps an extent already cached or in flight.
    pub fn overlaps(&self, start: u64, len: u64) -> bool {
        self.slots.iter().flatten().any(|e| start < e.start + e.len && e.start < start + len)
    }
    /// A slot for a new extent: a free one, or the oldest arrived unused one, whose stream
    /// is returned for Wasted feedback. `None` when every slot is in flight or in use.
    pub fn alloc(&mut self) -> Option<(u32, Option<StreamId>)> {
        if let Some(i) = self.slots.iter().position(|e| e.is_none()) {
            return Some((self.first + i as u32, None));
        }
        let (i, e) = self.slots.iter().enumerate().filter_map(|(i, e)| e.map(|e| (i, e))).filter(|(_, e)| e.ready && !e.used).min_by_key(|(_, e)| e.seq)?;
        self.slots[i] = None;
        Some((self.first + i as u32, Some(e.stream)))
    }
    /// Record an extent just submitted on `slot` (from [`Cache::alloc`]).
    pub fn insert(&mut self, slot: u32, start: u64, len: u64, stream: StreamId) {
        let i = (slot - self.first) as usize;
        self.slots[i] = Some(Extent { start, len, stream, ready: false, used: false, seq: 0 });
    }
    /// The read for `slot` completed.
    pub fn arrived(&mut self, slot: u32) {
        self.seq += 1;
        let seq = self.seq;
        if let Some(e) = self.get_mut(slot) {
            e.ready = true;
            e.seq = seq;
        }
    }
    /// A demand read of [off, off + len) was served from `slot`: the first use gives feedback
    /// (Timely if the data had arrived before the demand read, else Late); reaching the end
    /// of the extent frees the slot.
    pub fn use_extent(&mut self, slot: u32, off: u64, len: u64, was_ready: bool) -> Option<(StreamId, Outcome)> {
        let e = self.get_mut(slot)?;
        let fb = (!e.used).then_some((e.stream, if was_ready { Outcome::Timely } else { Outcome::Late }));
        e.used = true;
        if off + len >= e.start + e.len {
            let i = (slot - self.first) as usize;
            self.slots[i] = None;
        }
        fb
    }
    /// The extent in `slot`, if any.
    pub fn extent(&self, slot: u32) -> Option<Extent> {
        self.get(slot).copied()
    }
    /// Drop an extent whose read failed.
    pub fn drop_slot(&mut self, slot: u32) {
        if let Some(i) = slot.checked_sub(self.first) {
            if let Some(s) = self.slots.get_mut(i as usize) {
                *s = None;
            }
        }
    }
    /// Extents still cached, arrived and never used, at the end of a run (Wasted).
    pub fn unused(&self) -> impl Iterator<Item = StreamId> + '_ {
        self.slots.iter().flatten().filter(|e| !e.used).map(|e| e.stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_late_miss_and_free_on_end() {
        let mut c = Cache::new(1, 2);
        let (s, ev) = c.alloc().unwrap();
        assert_eq!((s, ev), (1, None));
        c.insert(s, 8192, 8192, StreamId(3));
        assert_eq!(c.lookup(8192, 4096), Lookup::InFlight(1));
        assert_eq!(c.lookup(4096, 4096), Lookup::Miss);
        assert_eq!(c.lookup(12288, 8192), Lookup::Miss, "not wholly inside");
        assert!(c.overlaps(12288, 8192) && !c.overlaps(0, 8192));
        assert_eq!(c.use_extent(1, 8192, 4096, false), Some((StreamId(3), Outcome::Late)));
        c.arrived(1);
        assert_eq!(c.lookup(12288, 4096), Lookup::Hit(1));
        assert_eq!(c.use_extent(1, 12288, 4096, true), None, "feedback once per extent");
        assert_eq!(c.lookup(12288, 4096), Lookup::Miss, "freed at its end");
        assert_eq!(c.alloc().unwrap(), (1, None));
    }

    #[test]
    fn eviction_takes_the_oldest_arrived_unused_extent() {
        let mut c = Cache::new(1, 2);
        c.insert(1, 0, 4096, StreamId(1));
        c.insert(2, 4096, 4096, StreamId(2));
        assert_eq!(c.alloc(), None, "both in flight: nothing to evict");
        c.arrived(2);
        c.arrived(1);
        assert_eq!(c.alloc(), Some((2, Some(StreamId(2)))), "slot 2 arrived first");
        c.insert(2, 8192, 4096, StreamId(5));
        assert_eq!(c.use_extent(1, 0, 2048, true), Some((StreamId(1), Outcome::Timely)));
        assert_eq!(c.alloc(), None, "slot 1 is in use, slot 2 in flight");
        assert_eq!(c.unused().collect::<Vec<_>>(), [StreamId(5)]);
    }
}
