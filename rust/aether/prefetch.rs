// SPDX-License-Identifier: GPL-2.0

//! Prefetch reads: from the gate's decision to pages in the cache.
//!
//! [`issue`] runs in `map` right after the gate opens: it reserves the
//! decided blocks in the cache, allocates pages without sleeping and sends
//! one `REQ_RAHEAD | REQ_NOWAIT` read per run of up to 128 KiB.
//! [`PrefetchRead::complete`] is where a prefetch completes (often in hard
//! IRQ): its pages become cached blocks, unless a write got there first.
//! Nothing here can fail or delay a demand request: every failure is a
//! counted miss.

use crate::aether_core::cache::BLOCK_SECTORS;
use crate::aether_core::Decision;
use crate::block_cache::TicketRun;
use crate::kernel_ext::bio_pool::{BioPool, ReadCompletion};
use crate::kernel_ext::dm::{BlkStatus, DmDev};
use crate::kernel_ext::page::{CachePage, PageRun, PAGE_BYTES};
use crate::kernel_ext::trace;
use crate::target::Shared;
use crate::telemetry::Counter;
use kernel::{prelude::*, sync::Arc};

/// Most blocks one decision may issue (1 MiB): bounds the time `map` spends.
const MAX_BLOCKS_PER_DECISION: u64 = 256;

/// Reads kept in reserve by the device's `bio_set`.
pub(crate) const BIO_RESERVE: u32 = 16;

/// One prefetch read in flight.
pub(crate) struct PrefetchRead {
    shared: Arc<Shared>,
    run: TicketRun,
    /// When the demand read that issued it was mapped (ns), for tracing.
    issued_ns: u64,
}

impl ReadCompletion for PrefetchRead {
    fn complete(self, mut pages: PageRun, status: BlkStatus) {
        let s = &self.shared;
        let n = self.run.len() as u64;
        let (lba, sectors) = (self.run.first_block * BLOCK_SECTORS, (n * BLOCK_SECTORS) as u32);
        trace::prefetch_done(s.devt, lba, sectors, status, self.issued_ns);
        if status.is_ok() {
            let stale = s.cache.fill(&self.run, &mut pages, &mut |st, o, n| s.record_outcome(st, o, n));
            s.telemetry.add(Counter::PrefetchStaleDropped, u64::from(stale));
        } else {
            s.cache.abort(&self.run, 0);
            s.telemetry.add(Counter::PrefetchErrors, n);
        }
    }
}

/// Issues the reads `d` decided on, for stream `d.stream`, at `now` (ns).
pub(crate) fn issue(s: &Arc<Shared>, pool: Pin<&BioPool<PrefetchRead>>, dev: &DmDev, d: &Decision, now: u64) {
    if d.is_contiguous() {
        let sectors = u64::from(d.sectors).saturating_mul(u64::from(d.count));
        issue_range(s, pool, dev, d, d.start, sectors, now);
    } else {
        for i in 0..d.count {
            if let Some((start, len)) = d.extent(i) {
                issue_range(s, pool, dev, d, start, u64::from(len), now);
            }
        }
    }
}

/// Issues the blocks covering `sectors` sectors at `start`.
fn issue_range(
    s: &Arc<Shared>,
    pool: Pin<&BioPool<PrefetchRead>>,
    dev: &DmDev,
    d: &Decision,
    start: u64,
    sectors: u64,
    now: u64,
) {
    let mut next = start / BLOCK_SECTORS;
    let end = start.saturating_add(sectors).div_ceil(BLOCK_SECTORS).min(next.saturating_add(MAX_BLOCKS_PER_DECISION));
    let mut sink = |stream, outcome, n| s.record_outcome(stream, outcome, n);
    while next < end {
        let mut run = s.cache.reserve_run(&mut next, end, d.stream, &mut sink);
        if run.len() == 0 {
            break;
        }
        let mut pages = PageRun::new();
        while pages.len() < run.len() {
            match CachePage::alloc_nowait() {
                Some(p) => {
                    let _ = pages.push(p);
                }
                None => break,
            }
        }
        if pages.len() < run.len() {
            s.telemetry.add(Counter::PrefetchAllocFailures, 1);
            s.cache.abort(&run, pages.len());
            run.truncate(pages.len());
            if pages.is_empty() {
                return;
            }
        }
        let blocks = pages.len() as u64;
        let sector = run.first_block * BLOCK_SECTORS;
        let read = PrefetchRead { shared: s.clone(), run, issued_ns: now };
        let result = pool.submit_read(dev, sector, pages, read);
        let errno = if result.is_ok() { 0 } else { ENOMEM.to_errno() };
        trace::prefetch_issue(s.devt, sector, (blocks * BLOCK_SECTORS) as u32, errno);
        match result {
            Ok(()) => {
                s.telemetry.add(Counter::PrefetchIssued, blocks);
                s.telemetry.add(Counter::PrefetchBytes, blocks * PAGE_BYTES as u64);
            }
            Err((_pages, read)) => {
                s.telemetry.add(Counter::PrefetchAllocFailures, 1);
                s.cache.abort(&read.run, 0);
                return;
            }
        }
    }
}
