// SPDX-License-Identifier: GPL-2.0

//! One device's prefetch cache: aether-core's cache index over pages, under
//! an IRQ-safe lock.
//!
//! The index (which blocks, in which state, what to evict) is
//! `aether_core::cache`, shared with the simulator. This file adds what only
//! the kernel has: pages, the lock (taken from `map`, bio completions and the
//! shrinker, so it disables interrupts), the memory budget, and the copy of a
//! hit into a demand bio. Every block is 4 KiB of the table's extent:
//! block `b` is sectors `[8b, 8b + 8)` past the table's start.

use crate::aether_core::cache::{buckets_for, BlockCache, FenceId, Occupancy, Serve, Slot, Ticket, BLOCK_SECTORS};
use crate::aether_core::{Outcome, StreamId};
use crate::kernel_ext::bio::{Bio, ParkedBio, COPY_MAX_PAGES};
use crate::kernel_ext::resubmit::Resubmitter;
use crate::kernel_ext::sched::cond_resched;
use crate::kernel_ext::page::{CachePage, PageRun, RUN_PAGES};
use crate::kernel_ext::sync::{new_irq_spinlock, IrqSpinLock};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use kernel::{alloc::KVVec, init::PinInit, prelude::*, sync::Arc};

/// Where outcomes go: `(stream, outcome, blocks)`.
pub(crate) type Sink<'a> = &'a mut dyn FnMut(StreamId, Outcome, u32);

type Index = BlockCache<CachePage, KVVec<Slot<CachePage>>, KVVec<u32>>;

/// Reads that may wait for prefetches in flight at once, per device.
pub(crate) const WAITERS: usize = 16;

/// A demand read parked until the prefetches it overlaps complete.
struct Waiter {
    bio: ParkedBio,
    first: u64,
    blocks: u32,
    /// Where the read starts in its first block, bytes.
    offset_bytes: u32,
}

/// What the cache lock protects.
struct CacheState {
    index: Index,
    waiters: [Option<Waiter>; WAITERS],
}

/// What a parked read needs next.
enum WaiterAction {
    /// Its data is cached: these pages, then end it.
    Serve(Waiter, [Option<CachePage>; COPY_MAX_PAGES]),
    /// Part of its data is gone (a failed or dropped prefetch, an
    /// eviction): the device must serve it.
    Submit(ParkedBio),
}

/// Most blocks evicted or forgotten per hold of the cache lock by bulk
/// operations (clear, budget cuts): bounds the time interrupts are off.
const BATCH: u32 = 512;

/// Cache blocks per MiB of budget.
pub(crate) const BLOCKS_PER_MB: u32 = 256;

/// Tickets of one prefetch read, in block order.
pub(crate) struct TicketRun {
    pub(crate) first_block: u64,
    tickets: [Ticket; RUN_PAGES],
    len: usize,
}

impl TicketRun {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Keeps only the first `n` tickets.
    pub(crate) fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
    }

    fn tickets(&self) -> &[Ticket] {
        self.tickets.get(..self.len).unwrap_or(&[])
    }
}

/// Slot and bucket arrays for `blocks` blocks. May sleep.
fn storage(blocks: u32) -> Result<(KVVec<Slot<CachePage>>, KVVec<u32>)> {
    let mut slots = KVVec::with_capacity(blocks as usize, GFP_KERNEL)?;
    for _ in 0..blocks {
        slots.push(Slot::empty(), GFP_KERNEL)?;
    }
    let n = buckets_for(blocks as usize);
    let mut buckets = KVVec::with_capacity(n, GFP_KERNEL)?;
    for _ in 0..n {
        buckets.push(0u32, GFP_KERNEL)?;
    }
    Ok((slots, buckets))
}

/// What [`Cache::serve`] did with a demand read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    /// Nothing: the read goes to the device.
    No,
    /// All of it is in the bio.
    All,
    /// Its first `n` sectors are in the bio, which now ends there; the
    /// rest comes back to `map` as a new bio.
    Head(u32),
    /// Every block is cached or in flight (all of the read, or its first
    /// `n` sectors, to which the bio now ends): park it ([`Cache::park`])
    /// rather than read the device twice.
    Wait(Option<u32>),
}

/// A device's prefetch cache.
#[pin_data]
pub(crate) struct Cache {
    #[pin]
    state: IrqSpinLock<CacheState>,
    /// Blocks in flight or cached, mirrored from the index after every
    /// change so that reads skip the lock while nothing is cached.
    used: AtomicU32,
    /// Parked reads, mirrored likewise: most changes skip the waiter scan.
    parked: AtomicU32,
    /// Parked reads that went to the device after all.
    fallbacks: AtomicU64,
    /// Submits parked reads from process context when their data is gone.
    resubmit: Arc<Resubmitter>,
    /// Whole blocks in the table's extent; a partial last block is never
    /// cached.
    device_blocks: u64,
}

impl Cache {
    /// A cache of at most `budget_mb` MiB over a table of `sectors` sectors.
    pub(crate) fn new(budget_mb: u32, sectors: u64) -> impl PinInit<Self, Error> {
        let blocks = budget_mb.saturating_mul(BLOCKS_PER_MB);
        try_pin_init!(Self {
            state <- {
                let (slots, buckets) = storage(blocks)?;
                let index = BlockCache::new(slots, buckets, blocks).ok_or(EINVAL)?;
                new_irq_spinlock!(CacheState { index, waiters: [const { None }; WAITERS] }, "aether_cache")
            },
            used: AtomicU32::new(0),
            parked: AtomicU32::new(0),
            fallbacks: AtomicU64::new(0),
            resubmit: Resubmitter::new()?,
            device_blocks: sectors / BLOCK_SECTORS,
        }? Error)
    }

    fn sync_used(&self, index: &Index) {
        self.used.store(index.occupancy().used(), Relaxed);
    }

    /// Reads parked now.
    pub(crate) fn parked(&self) -> u32 {
        self.parked.load(Relaxed)
    }

    /// Parked reads that were sent to the device after all, so far.
    pub(crate) fn wait_fallbacks(&self) -> u64 {
        self.fallbacks.load(Relaxed)
    }

    /// Waits until parked reads handed to the workqueue are submitted.
    pub(crate) fn flush(&self) {
        self.resubmit.flush();
    }

    /// Block counts by state.
    pub(crate) fn occupancy(&self) -> Occupancy {
        self.state.lock().index.occupancy()
    }

    /// Serves a demand read of `sectors` sectors at `offset` (table-relative)
    /// from RAM, wholly if every block it touches is cached, or its cached
    /// head (at most [`COPY_MAX_PAGES`] blocks), leaving the rest to
    /// device-mapper as a new bio.
    pub(crate) fn serve(&self, bio: &mut Bio, offset: u64, sectors: u32, sink: Sink<'_>) -> Served {
        if self.used.load(Relaxed) == 0 || sectors == 0 {
            return Served::No;
        }
        let first = offset / BLOCK_SECTORS;
        let end = offset + u64::from(sectors);
        let last = (end - 1) / BLOCK_SECTORS;
        if last >= self.device_blocks {
            return Served::No;
        }
        let n = (last - first + 1).min(u64::from(u32::MAX)) as u32;
        let mut held: [Option<CachePage>; COPY_MAX_PAGES] = [const { None }; COPY_MAX_PAGES];
        let mut k = 0;
        let result = {
            let mut st = self.state.lock();
            let index = &mut st.index;
            let r = index.serve(first, n, COPY_MAX_PAGES as u32, true, &mut *sink, |page| {
                if let Some(h) = held.get_mut(k) {
                    *h = Some(page.clone());
                    k += 1;
                }
            });
            self.sync_used(index);
            r
        };
        let blocks = match result {
            Serve::Hit { blocks, .. } => blocks,
            Serve::Miss { in_flight, covered, .. } if in_flight > 0 && covered > 0 => {
                // Wait for the covered head (at most what one copy takes);
                // a longer read leaves its tail to come back through `map`.
                let head = covered.min(COPY_MAX_PAGES as u32);
                let head_end = (first + u64::from(head)) * BLOCK_SECTORS;
                if head_end < end {
                    if head_end <= offset || bio.accept_partial((head_end - offset) as u32).is_err() {
                        return Served::No;
                    }
                    return Served::Wait(Some((head_end - offset) as u32));
                }
                return Served::Wait(None);
            }
            Serve::Miss { .. } => return Served::No,
        };
        // The head ends at a block boundary inside the bio.
        let head_end = (first + u64::from(blocks)) * BLOCK_SECTORS;
        let served = if head_end < end {
            // `head_end - offset < sectors`, a u32.
            let head = (head_end - offset) as u32;
            if bio.accept_partial(head).is_err() {
                return Served::No;
            }
            Served::Head(head)
        } else {
            Served::All
        };
        // The copy runs outside the lock: the references keep the pages.
        let offset_bytes = ((offset % BLOCK_SECTORS) << 9) as u32;
        match bio.copy_from_pages(held.iter().flatten(), offset_bytes) {
            Ok(()) => served,
            // Cannot happen (the pages cover the bio), but a bio we did not
            // fill must still be read from the device.
            Err(_) => Served::No,
        }
    }

    /// A write, discard or write-zeroes of `sectors` at `offset` is about to
    /// go down: forget what it overlaps and fence its blocks until it
    /// completes. Returns the fence and how many blocks were forgotten.
    pub(crate) fn invalidate_and_fence(&self, offset: u64, sectors: u32, sink: Sink<'_>) -> (FenceId, u32) {
        let first = offset / BLOCK_SECTORS;
        let end = offset.saturating_add(u64::from(sectors)).div_ceil(BLOCK_SECTORS);
        let (fence, forgotten) = {
            let mut st = self.state.lock();
            let index = &mut st.index;
            let forgotten = index.invalidate(first, end - first, &mut *sink);
            let fence = index.fence_begin(first, end - first);
            self.sync_used(index);
            (fence, forgotten)
        };
        // Reads parked on forgotten blocks go to the device (they were
        // mapped before this write: either data is theirs to see).
        self.wake_waiters(sink, true);
        (fence, forgotten)
    }

    /// Parks a demand read of `sectors` at `offset` whose blocks are all
    /// cached or in flight (see [`Served::Wait`]) until the prefetches
    /// complete; finishes it at once if they already have, or sends it to
    /// the device if that is where its data is now (or no waiter slot is
    /// free). Process context (it may submit).
    pub(crate) fn park(&self, bio: ParkedBio, offset: u64, sectors: u32, sink: Sink<'_>) {
        let first = offset / BLOCK_SECTORS;
        let blocks = ((offset + u64::from(sectors) - 1) / BLOCK_SECTORS - first + 1) as u32;
        let waiter = Waiter { bio, first, blocks, offset_bytes: ((offset % BLOCK_SECTORS) << 9) as u32 };
        let action = {
            let mut st = self.state.lock();
            let ready = st.index.range_ready(first, blocks);
            // Parked reads waiting here or for submission stay within the
            // resubmitter's queue, so a completion can always hand one on.
            let room = (self.parked.load(Relaxed) as usize) + self.resubmit.queued() < WAITERS;
            match (ready, st.waiters.iter_mut().find(|w| w.is_none())) {
                (None, Some(slot)) if room => {
                    *slot = Some(waiter);
                    self.parked.fetch_add(1, Relaxed);
                    return;
                }
                (Some(true), _) => Self::take_pages(&mut st.index, waiter, &mut *sink),
                _ => WaiterAction::Submit(waiter.bio),
            }
        };
        self.finish(action, true);
    }

    /// Hands the pages of waiter `w`'s (valid) blocks over for serving.
    fn take_pages(index: &mut Index, w: Waiter, sink: Sink<'_>) -> WaiterAction {
        let mut held: [Option<CachePage>; COPY_MAX_PAGES] = [const { None }; COPY_MAX_PAGES];
        let mut k = 0;
        let _ = index.serve(w.first, w.blocks, COPY_MAX_PAGES as u32, false, &mut *sink, |page| {
            if let Some(h) = held.get_mut(k) {
                *h = Some(page.clone());
                k += 1;
            }
        });
        WaiterAction::Serve(w, held)
    }

    /// Serves or submits a parked read, outside the lock. `may_sleep`:
    /// process context, where submitting directly is allowed.
    fn finish(&self, action: WaiterAction, may_sleep: bool) {
        let bio = match action {
            WaiterAction::Serve(w, held) => match w.bio.fill_and_end(held.iter().flatten(), w.offset_bytes) {
                Ok(()) => return,
                Err(bio) => bio,
            },
            WaiterAction::Submit(bio) => bio,
        };
        self.fallbacks.fetch_add(1, Relaxed);
        if may_sleep {
            bio.submit();
        } else if let Err(bio) = self.resubmit.submit_later(bio) {
            // Cannot happen: parking keeps within the queue's room. Failing
            // the read is still better than hanging it.
            drop(bio);
        }
    }

    /// Finishes every parked read whose prefetches have all completed (or
    /// whose data is gone). Any context.
    pub(crate) fn wake_waiters(&self, sink: Sink<'_>, may_sleep: bool) {
        while self.parked.load(Relaxed) != 0 {
            let action = {
                let mut st = self.state.lock();
                let st = &mut *st;
                let mut found = None;
                for slot in st.waiters.iter_mut() {
                    // Only a waiter whose wait is over leaves its slot.
                    let Some(ready) = slot.as_ref().and_then(|w| st.index.range_ready(w.first, w.blocks)) else {
                        continue;
                    };
                    if let Some(w) = slot.take() {
                        self.parked.fetch_sub(1, Relaxed);
                        found = Some(if ready { Self::take_pages(&mut st.index, w, &mut *sink) } else { WaiterAction::Submit(w.bio) });
                        break;
                    }
                }
                self.sync_used(&st.index);
                found
            };
            match action {
                Some(a) => self.finish(a, may_sleep),
                None => break,
            }
        }
    }

    /// The write behind `fence` completed.
    pub(crate) fn fence_end(&self, fence: FenceId) {
        self.state.lock().index.fence_end(fence);
    }

    /// Reserves up to [`RUN_PAGES`] consecutive blocks from `*next` (and
    /// before `end`) for `stream`, skipping blocks it may not reserve before
    /// the run starts. Advances `*next` past what it looked at.
    pub(crate) fn reserve_run(&self, next: &mut u64, end: u64, stream: StreamId, sink: Sink<'_>) -> TicketRun {
        let end = end.min(self.device_blocks);
        let mut run = TicketRun { first_block: *next, tickets: [Ticket { slot: 0, gen: 0 }; RUN_PAGES], len: 0 };
        let mut st = self.state.lock();
        let index = &mut st.index;
        while *next < end && run.len < RUN_PAGES {
            match index.reserve(*next, stream, &mut *sink) {
                Ok(t) => {
                    if run.len == 0 {
                        run.first_block = *next;
                    }
                    if let Some(slot) = run.tickets.get_mut(run.len) {
                        *slot = t;
                        run.len += 1;
                    }
                }
                Err(_) if run.len > 0 => break,
                Err(_) => {}
            }
            *next += 1;
        }
        self.sync_used(index);
        drop(st);
        // Making room may have evicted blocks a parked read waits for.
        self.wake_waiters(sink, true);
        run
    }

    /// Gives back the reservations of `run` from position `from` on (their
    /// read will not be issued).
    pub(crate) fn abort(&self, run: &TicketRun, from: usize) {
        {
            let mut st = self.state.lock();
            let index = &mut st.index;
            for t in run.tickets().iter().skip(from) {
                index.abort(*t);
            }
            self.sync_used(index);
        }
        // Readers parked on these blocks must go to the device now.
        self.wake_waiters(&mut |_, _, _| {}, false);
    }

    /// The read for `run` completed with `pages`: cache them. Returns how
    /// many blocks were stale (written or dropped meanwhile) and discarded.
    pub(crate) fn fill(&self, run: &TicketRun, pages: &mut PageRun, sink: Sink<'_>) -> u32 {
        let mut stale = 0;
        {
            let mut st = self.state.lock();
            let index = &mut st.index;
            for (t, page) in run.tickets().iter().zip(pages.drain()) {
                // A stale page is simply dropped (`put_page` never sleeps).
                stale += u32::from(index.fill(*t, page).is_err());
            }
            self.sync_used(index);
        }
        self.wake_waiters(sink, false);
        stale
    }

    /// Sets the budget to `mb` MiB, evicting at once if it shrinks. Growing
    /// past the current storage allocates (may sleep).
    pub(crate) fn set_budget_mb(&self, mb: u32, sink: Sink<'_>) -> Result {
        let blocks = mb.saturating_mul(BLOCKS_PER_MB);
        let capacity = self.state.lock().index.capacity();
        let mut old = None;
        if blocks > capacity {
            let (slots, buckets) = storage(blocks)?;
            let mut st = self.state.lock();
            // Another writer may have grown it further meanwhile: then keep
            // theirs and free ours.
            old = Some(match st.index.regrow(slots, buckets, blocks) {
                Ok(old) | Err(old) => old,
            });
            self.sync_used(&st.index);
        }
        // Evict down to the new budget a batch at a time, so interrupts are
        // never off for long however large the cache was.
        loop {
            {
                let mut st = self.state.lock();
                let index = &mut st.index;
                let over = index.occupancy().used().saturating_sub(blocks);
                if over == 0 || index.shrink(over.min(BATCH), &mut *sink) == 0 {
                    index.set_limit(blocks, &mut *sink);
                    self.sync_used(index);
                    break;
                }
                self.sync_used(index);
            }
            cond_resched();
        }
        // Freed outside the lock: vfree may sleep.
        drop(old);
        self.wake_waiters(sink, true);
        Ok(())
    }

    /// Evicts up to `nr` blocks that are not in flight; returns how many.
    pub(crate) fn shrink(&self, nr: u32, sink: Sink<'_>) -> u32 {
        let n = {
            let mut st = self.state.lock();
            let index = &mut st.index;
            let n = index.shrink(nr, &mut *sink);
            self.sync_used(index);
            n
        };
        // Reclaim context: hand any read that lost its blocks to the worker.
        self.wake_waiters(sink, false);
        n
    }

    /// Blocks a shrinker could free now.
    pub(crate) fn reclaimable(&self) -> u32 {
        self.state.lock().index.reclaimable()
    }

    /// Forgets everything (reads in flight are dropped when they complete).
    /// Not the prefetcher's waste, so no outcome is reported.
    pub(crate) fn clear(&self) {
        let mut from = Some(0);
        let mut unused = 0;
        while let Some(f) = from {
            {
                let mut st = self.state.lock();
                from = st.index.clear_some(f, BATCH, &mut unused);
                self.sync_used(&st.index);
            }
            cond_resched();
        }
        self.wake_waiters(&mut |_, _, _| {}, true);
    }

    /// Writes in flight, fencing prefetches.
    pub(crate) fn fenced_writes(&self) -> u32 {
        self.state.lock().index.fenced_writes()
    }
}
