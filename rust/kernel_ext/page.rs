// SPDX-License-Identifier: GPL-2.0

//! Reference-counted pages for the prefetch cache.
//!
//! 6.12's `kernel::page::Page` owns its page outright; the cache needs to hand
//! a page to a demand read's copy while eviction may drop the cache's own
//! reference at the same time, so [`CachePage`] is a counted reference
//! (`get_page`/`put_page`), like `ARef<Page>` in later kernels.

use super::bindings;

/// Bytes in one page (aether caches 4 KiB blocks: one per page).
pub(crate) const PAGE_BYTES: usize = 4096;

/// A counted reference to one order-0 page.
///
/// # Invariants
///
/// `ptr` points to a page on which this value holds one reference.
pub(crate) struct CachePage {
    ptr: *mut bindings::page,
}

// SAFETY: Page references may be taken and dropped on any CPU, in any context
// but NMI; the page's contents are only written before it is shared (by the
// read that fills it).
unsafe impl Send for CachePage {}
// SAFETY: `&CachePage` only gives the page's address and a new reference.
unsafe impl Sync for CachePage {}

impl CachePage {
    /// Allocates a page without sleeping, entering reclaim or warning on
    /// failure: speculative memory must never cost a demand request.
    pub(crate) fn alloc_nowait() -> Option<Self> {
        // SAFETY: Allocating has no preconditions; GFP_NOWAIT is valid in any
        // context but NMI.
        let ptr = unsafe { bindings::aether_alloc_page(bindings::AETHER_CONST_GFP_SPECULATIVE) };
        // INVARIANT: a new page comes with one reference, now ours.
        (!ptr.is_null()).then_some(Self { ptr })
    }

    pub(crate) fn as_ptr(&self) -> *mut bindings::page {
        self.ptr
    }
}

impl Clone for CachePage {
    fn clone(&self) -> Self {
        // SAFETY: We hold a reference (type invariant), so the page is live.
        unsafe { bindings::aether_get_page(self.ptr) };
        // INVARIANT: `get_page` took the new value's reference.
        Self { ptr: self.ptr }
    }
}

impl Drop for CachePage {
    fn drop(&mut self) {
        // SAFETY: We own one reference (type invariant) and give it back once.
        unsafe { bindings::aether_put_page(self.ptr) };
    }
}

/// Most pages one prefetch read carries (128 KiB).
pub(crate) const RUN_PAGES: usize = 32;

/// Up to [`RUN_PAGES`] pages for one read, in block order.
pub(crate) struct PageRun {
    pages: [Option<CachePage>; RUN_PAGES],
    len: usize,
}

impl PageRun {
    pub(crate) const fn new() -> Self {
        Self { pages: [const { None }; RUN_PAGES], len: 0 }
    }

    /// Appends `page`; hands it back if the run is full.
    pub(crate) fn push(&mut self, page: CachePage) -> Result<(), CachePage> {
        match self.pages.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(page);
                self.len += 1;
                Ok(())
            }
            None => Err(page),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &CachePage> {
        self.pages.iter().take(self.len).flatten()
    }

    /// Takes the pages out, in order.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = CachePage> + '_ {
        let n = core::mem::replace(&mut self.len, 0);
        self.pages.iter_mut().take(n).filter_map(Option::take)
    }
}

/// Total RAM in bytes, to refuse cache budgets the machine cannot hold.
pub(crate) fn total_ram_bytes() -> u64 {
    // SAFETY: Reads a global counter; no preconditions.
    let pages = unsafe { bindings::aether_totalram_pages() };
    (pages as u64).saturating_mul(PAGE_BYTES as u64)
}
