// SPDX-License-Identifier: GPL-2.0

//! Reads a target issues on its own (prefetches), from a private `bio_set`.
//!
//! [`BioPool::submit_read`] builds one `REQ_OP_READ | REQ_RAHEAD | REQ_NOWAIT`
//! bio over a [`PageRun`] without sleeping and sends it to the lower device.
//! When it completes, [`ReadCompletion::complete`] gets the pages and the
//! caller's context back, in whatever context the block layer completes in
//! (often hard IRQ). The pool counts reads in flight and its drop waits for
//! them, so a completion never outlives the pool or its `bio_set`.

use super::bindings;
use super::dm::{BlkStatus, DmDev};
use super::page::{PageRun, PAGE_BYTES};
use core::marker::PhantomData;
use core::sync::atomic::{AtomicUsize, Ordering};
use kernel::{init::PinInit, prelude::*, types::Opaque};

/// What a read's owner does when the read completes (possibly in hard IRQ:
/// no sleeping, no blocking locks that process context takes with IRQs on).
pub(crate) trait ReadCompletion: Send + Sized + 'static {
    fn complete(self, pages: PageRun, status: BlkStatus);
}

/// The bytes `bio_set` places in front of every bio it allocates.
#[repr(C)]
struct Front<C: ReadCompletion> {
    pool: *const BioPool<C>,
    pages: PageRun,
    ctx: C,
}

/// Bios of the front pad must stay aligned: the pad is rounded up to 8.
const fn front_pad<C: ReadCompletion>() -> usize {
    (core::mem::size_of::<Front<C>>() + 7) & !7
}

/// A `bio_set` for one target's prefetch reads.
///
/// # Invariants
///
/// `bs` was initialised by `bioset_init` with a front pad of
/// `front_pad::<C>()` bytes. `in_flight` counts bios allocated from `bs` and
/// not yet through [`Self::end_io`]'s last statement; the pool is pinned, is
/// not dropped before it reaches zero (see `PinnedDrop`), and each such bio's
/// front holds a valid `Front<C>` pointing back at the pool.
#[pin_data(PinnedDrop)]
pub(crate) struct BioPool<C: ReadCompletion> {
    #[pin]
    bs: Opaque<bindings::bio_set>,
    in_flight: AtomicUsize,
    _c: PhantomData<C>,
}

// SAFETY: The pool is used from any CPU: `bio_set` allocation is thread-safe,
// `in_flight` is atomic, and `C: Send` moves between the submitter and the
// completion.
unsafe impl<C: ReadCompletion> Send for BioPool<C> {}
// SAFETY: As above.
unsafe impl<C: ReadCompletion> Sync for BioPool<C> {}

impl<C: ReadCompletion> BioPool<C> {
    /// A pool keeping `reserve` bios in reserve.
    pub(crate) fn new(reserve: u32) -> impl PinInit<Self, Error> {
        const { assert!(core::mem::align_of::<Front<C>>() <= 8) };
        let init = move |slot: *mut Opaque<bindings::bio_set>| -> Result {
            let bs = Opaque::raw_get(slot);
            // SAFETY: `slot` is valid, pinned memory for a `bio_set`, which
            // `bioset_init` expects zeroed (mempool counts start at zero).
            kernel::error::to_result(unsafe {
                core::ptr::write_bytes(bs, 0, 1);
                bindings::bioset_init(
                    bs,
                    reserve,
                    front_pad::<C>() as u32,
                    bindings::BIOSET_NEED_BVECS as i32,
                )
            })
        };
        // SAFETY: On success `bs` is initialised; on failure `bioset_init`
        // freed what it had allocated, and `bs` needs no cleanup.
        let bs = unsafe { kernel::init::pin_init_from_closure(init) };
        try_pin_init!(Self { bs <- bs, in_flight: AtomicUsize::new(0), _c: PhantomData })
    }

    /// Reads issued and not yet completed.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Reads `pages.len()` pages from `dev` at `sector` without sleeping in
    /// the allocation; with `REQ_NOWAIT` when `dev` supports it, so the read
    /// fails rather than waits for a device tag. On failure (no bio or an
    /// empty run), hands the pages and the context back.
    pub(crate) fn submit_read(self: Pin<&Self>, dev: &DmDev, sector: u64, pages: PageRun, ctx: C) -> Result<(), (PageRun, C)> {
        let n = pages.len();
        if n == 0 {
            return Err((pages, ctx));
        }
        let mut opf = bindings::req_op_REQ_OP_READ | (1 << bindings::req_flag_bits___REQ_RAHEAD);
        if dev.supports_nowait() {
            opf |= 1 << bindings::req_flag_bits___REQ_NOWAIT;
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        // SAFETY: `dev` holds its block device; `bs` is initialised (type
        // invariant); GFP_NOWAIT never sleeps. `n <= RUN_PAGES` fits `u16`.
        let bio = unsafe {
            bindings::bio_alloc_bioset(dev.bdev(), n as u16, opf, bindings::AETHER_CONST_GFP_SPECULATIVE, self.bs.get())
        };
        if bio.is_null() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err((pages, ctx));
        }
        // SAFETY: `bio` was just allocated from `bs`, so `front_pad::<C>()`
        // bytes before it are ours; nobody else sees the bio yet.
        unsafe {
            let front = bio.cast::<u8>().sub(front_pad::<C>()).cast::<Front<C>>();
            front.write(Front { pool: self.get_ref(), pages, ctx });
            (*bio).bi_iter.bi_sector = sector;
            (*bio).bi_end_io = Some(Self::end_io);
            for page in (*front).pages.iter() {
                // The bio has `n` vectors, one per page, so every add fits.
                let _ = bindings::bio_add_page(bio, page.as_ptr(), PAGE_BYTES as u32, 0);
            }
            // INVARIANT: the front is valid and counted in `in_flight`.
            bindings::submit_bio_noacct(bio);
        }
        Ok(())
    }

    /// Called by the block layer when one of our bios completes.
    ///
    /// # Safety
    ///
    /// `bio` must come from [`Self::submit_read`] and complete exactly once.
    unsafe extern "C" fn end_io(bio: *mut bindings::bio) {
        // SAFETY: The bio came from `submit_read`, which wrote a `Front<C>`
        // before it; we move it out once, here.
        let front = unsafe { bio.cast::<u8>().sub(front_pad::<C>()).cast::<Front<C>>().read() };
        // SAFETY: The bio is ours and completing.
        let status = BlkStatus::from_raw(unsafe { (*bio).bi_status });
        // SAFETY: Done with the bio; it returns to `bs`, which outlives it
        // because the pool waits for `in_flight` before `bioset_exit`.
        unsafe { bindings::bio_put(bio) };
        let pool = front.pool;
        front.ctx.complete(front.pages, status);
        // SAFETY: `in_flight` counts this bio, so the pool is alive (type
        // invariant). This is our last access: once it reads zero the pool
        // may be freed.
        unsafe { (*pool).in_flight.fetch_sub(1, Ordering::AcqRel) };
    }

    /// Waits until every read issued so far has completed. May sleep.
    pub(crate) fn drain(&self) {
        let mut waited_ms = 0u32;
        while self.in_flight() != 0 {
            // SAFETY: We are in process context (callers: postsuspend, dtr).
            unsafe { bindings::msleep(1) };
            waited_ms = waited_ms.wrapping_add(1);
            if waited_ms % 10_000 == 0 {
                kernel::pr_warn!("still waiting for {} prefetch reads after {} s\n", self.in_flight(), waited_ms / 1000);
            }
        }
    }
}

#[pinned_drop]
impl<C: ReadCompletion> PinnedDrop for BioPool<C> {
    fn drop(self: Pin<&mut Self>) {
        self.drain();
        // SAFETY: `bs` is initialised (type invariant) and no bio from it is
        // left: `in_flight` is zero.
        unsafe { bindings::bioset_exit(self.bs.get()) };
    }
}
