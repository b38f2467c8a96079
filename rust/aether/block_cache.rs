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
use crate::kernel_ext::bio::{Bio, COPY_MAX_PAGES};
use crate::kernel_ext::page::{CachePage, PageRun, RUN_PAGES};
use crate::kernel_ext::sync::{new_irq_spinlock, IrqSpinLock};
use core::sync::atomic::{AtomicU32, Ordering::Relaxed};
use kernel::{alloc::KVVec, init::PinInit, prelude::*};

/// Where outcomes go: `(stream, outcome, blocks)`.
pub(crate) type Sink<'a> = &'a mut dyn FnMut(StreamId, Outcome, u32);

type Index = BlockCache<CachePage, KVVec<Slot<CachePage>>, KVVec<u32>>;

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
}

/// A device's prefetch cache.
#[pin_data]
pub(crate) struct Cache {
    #[pin]
    index: IrqSpinLock<Index>,
    /// Blocks in flight or cached, mirrored from the index after every
    /// change so that reads skip the lock while nothing is cached.
    used: AtomicU32,
    /// Whole blocks in the table's extent; a partial last block is never
    /// cached.
    device_blocks: u64,
}

impl Cache {
    /// A cache of at most `budget_mb` MiB over a table of `sectors` sectors.
    pub(crate) fn new(budget_mb: u32, sectors: u64) -> impl PinInit<Self, Error> {
        let blocks = budget_mb.saturating_mul(BLOCKS_PER_MB);
        try_pin_init!(Self {
            index <- {
                let (slots, buckets) = storage(blocks)?;
                let index = BlockCache::new(slots, buckets, blocks).ok_or(EINVAL)?;
                new_irq_spinlock!(index, "aether_cache")
            },
            used: AtomicU32::new(0),
            device_blocks: sectors / BLOCK_SECTORS,
        }? Error)
    }

    fn sync_used(&self, index: &Index) {
        self.used.store(index.occupancy().used(), Relaxed);
    }

    /// Block counts by state.
    pub(crate) fn occupancy(&self) -> Occupancy {
        self.index.lock().occupancy()
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
            let mut index = self.index.lock();
            let r = index.serve(first, n, COPY_MAX_PAGES as u32, true, &mut *sink, |page| {
                if let Some(h) = held.get_mut(k) {
                    *h = Some(page.clone());
                    k += 1;
                }
            });
            self.sync_used(&index);
            r
        };
        let Serve::Hit { blocks, .. } = result else {
            return Served::No;
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
        let mut index = self.index.lock();
        let forgotten = index.invalidate(first, end - first, &mut *sink);
        let fence = index.fence_begin(first, end - first);
        self.sync_used(&index);
        (fence, forgotten)
    }

    /// The write behind `fence` completed.
    pub(crate) fn fence_end(&self, fence: FenceId) {
        self.index.lock().fence_end(fence);
    }

    /// Reserves up to [`RUN_PAGES`] consecutive blocks from `*next` (and
    /// before `end`) for `stream`, skipping blocks it may not reserve before
    /// the run starts. Advances `*next` past what it looked at.
    pub(crate) fn reserve_run(&self, next: &mut u64, end: u64, stream: StreamId, sink: Sink<'_>) -> TicketRun {
        let end = end.min(self.device_blocks);
        let mut run = TicketRun { first_block: *next, tickets: [Ticket { slot: 0, gen: 0 }; RUN_PAGES], len: 0 };
        let mut index = self.index.lock();
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
        self.sync_used(&index);
        run
    }

    /// Gives back the reservations of `run` from position `from` on (their
    /// read will not be issued).
    pub(crate) fn abort(&self, run: &TicketRun, from: usize) {
        let mut index = self.index.lock();
        for t in run.tickets().iter().skip(from) {
            index.abort(*t);
        }
        self.sync_used(&index);
    }

    /// The read for `run` completed with `pages`: cache them. Returns how
    /// many blocks were stale (written or dropped meanwhile) and discarded.
    pub(crate) fn fill(&self, run: &TicketRun, pages: &mut PageRun) -> u32 {
        let mut stale = 0;
        let mut index = self.index.lock();
        for (t, page) in run.tickets().iter().zip(pages.drain()) {
            // A stale page is simply dropped (`put_page` never sleeps).
            stale += u32::from(index.fill(*t, page).is_err());
        }
        self.sync_used(&index);
        stale
    }

    /// Sets the budget to `mb` MiB, evicting at once if it shrinks. Growing
    /// past the current storage allocates (may sleep).
    pub(crate) fn set_budget_mb(&self, mb: u32, sink: Sink<'_>) -> Result {
        let blocks = mb.saturating_mul(BLOCKS_PER_MB);
        let capacity = self.index.lock().capacity();
        let mut old = None;
        if blocks > capacity {
            let (slots, buckets) = storage(blocks)?;
            let mut index = self.index.lock();
            // Another writer may have grown it further meanwhile: then keep
            // theirs and free ours.
            old = Some(match index.regrow(slots, buckets, blocks) {
                Ok(old) | Err(old) => old,
            });
            self.sync_used(&index);
        }
        {
            let mut index = self.index.lock();
            index.set_limit(blocks, &mut *sink);
            self.sync_used(&index);
        }
        // Freed outside the lock: vfree may sleep.
        drop(old);
        Ok(())
    }

    /// Evicts up to `nr` blocks that are not in flight; returns how many.
    pub(crate) fn shrink(&self, nr: u32, sink: Sink<'_>) -> u32 {
        let mut index = self.index.lock();
        let n = index.shrink(nr, &mut *sink);
        self.sync_used(&index);
        n
    }

    /// Blocks a shrinker could free now.
    pub(crate) fn reclaimable(&self) -> u32 {
        self.index.lock().reclaimable()
    }

    /// Forgets everything (reads in flight are dropped when they complete).
    /// Not the prefetcher's waste, so no outcome is reported.
    pub(crate) fn clear(&self) {
        let mut index = self.index.lock();
        index.clear();
        self.sync_used(&index);
    }

    /// Writes in flight, fencing prefetches.
    pub(crate) fn fenced_writes(&self) -> u32 {
        self.index.lock().fenced_writes()
    }
}
