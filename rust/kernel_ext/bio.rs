// SPDX-License-Identifier: GPL-2.0

//! A borrowed `struct bio`, shaped like the `Bio` of upstream's block
//! abstractions: the target reads what it needs and remaps it.

use super::bindings;
use super::dm::DmDev;
use super::page::CachePage;
use kernel::prelude::*;

/// Most pages [`Bio::copy_from_pages`] takes: 256 KiB of data.
pub(crate) const COPY_MAX_PAGES: usize = 64;

/// The operation a bio carries (`bio_op()`), reduced to what aether tells apart.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum BioOp {
    Read,
    Write,
    Flush,
    Discard,
    WriteZeroes,
    /// Secure erase, zone management and anything newer.
    Other,
}

/// A bio handed to a target callback.
///
/// # Invariants
///
/// `ptr` points to a valid bio that device-mapper owns for the whole callback,
/// and nobody else reads or writes its fields while the callback runs.
pub(crate) struct Bio {
    ptr: *mut bindings::bio,
}

impl Bio {
    /// # Safety
    ///
    /// `ptr` must point to a valid bio that stays valid, and is not accessed by
    /// anyone else, for the lifetime of the returned value.
    pub(crate) unsafe fn from_raw(ptr: *mut bindings::bio) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self { ptr }
    }

    fn opf(&self) -> u32 {
        // SAFETY: `ptr` is valid by the type invariant.
        unsafe { (*self.ptr).bi_opf }
    }

    /// The operation, `bio_op()`.
    pub(crate) fn op(&self) -> BioOp {
        let op = self.opf() & ((1u32 << bindings::REQ_OP_BITS) - 1);
        match op {
            bindings::req_op_REQ_OP_READ => BioOp::Read,
            bindings::req_op_REQ_OP_WRITE => BioOp::Write,
            bindings::req_op_REQ_OP_FLUSH => BioOp::Flush,
            bindings::req_op_REQ_OP_DISCARD => BioOp::Discard,
            bindings::req_op_REQ_OP_WRITE_ZEROES => BioOp::WriteZeroes,
            _ => BioOp::Other,
        }
    }

    /// First sector (512 bytes) of the remaining I/O.
    pub(crate) fn sector(&self) -> u64 {
        // SAFETY: `ptr` is valid by the type invariant.
        unsafe { (*self.ptr).bi_iter.bi_sector }
    }

    /// Remaining size in bytes.
    pub(crate) fn size(&self) -> u32 {
        // SAFETY: `ptr` is valid by the type invariant.
        unsafe { (*self.ptr).bi_iter.bi_size }
    }

    /// Points the bio at `dev`, starting at `sector` (`bio_set_dev()` plus
    /// `bi_sector`), as a remapping target does before `DM_MAPIO_REMAPPED`.
    /// Like dm-linear, a bio without data (an empty flush) keeps its sector:
    /// it has none.
    pub(crate) fn remap(&mut self, dev: &DmDev, sector: u64) {
        let has_data = self.size() != 0;
        // SAFETY: `ptr` is valid and ours by the type invariant; `dev.bdev()` is
        // a live block device for as long as `dev` holds it.
        unsafe {
            bindings::aether_bio_set_dev(self.ptr, dev.bdev());
            if has_data {
                (*self.ptr).bi_iter.bi_sector = sector;
            }
        }
    }

    /// Keeps only the first `sectors` sectors of this bio for the target;
    /// device-mapper sends the rest as a new bio (`dm_accept_partial_bio`).
    /// Only for bios `map` holds (the `&mut` borrow), and only reads and
    /// writes: never flushes or other duplicated bios. EINVAL unless
    /// `0 < sectors <` the bio's size.
    pub(crate) fn accept_partial(&mut self, sectors: u32) -> Result {
        if sectors == 0 || u64::from(sectors) << 9 >= u64::from(self.size()) || !matches!(self.op(), BioOp::Read) {
            return Err(EINVAL);
        }
        // SAFETY: `ptr` is a bio device-mapper is mapping for us (only `map`
        // holds a `&mut Bio`), a read (never a duplicated flush bio), and
        // `sectors` is within its size.
        unsafe { bindings::dm_accept_partial_bio(self.ptr, sectors) };
        Ok(())
    }

    /// Fills the bio's data from `pages`, starting `offset` bytes into the
    /// first one. Fails (EINVAL) without a full copy if the pages are too few
    /// or more than [`COPY_MAX_PAGES`].
    pub(crate) fn copy_from_pages<'a>(&mut self, pages: impl Iterator<Item = &'a CachePage>, offset: u32) -> Result {
        let mut raw = [core::ptr::null_mut::<bindings::page>(); COPY_MAX_PAGES];
        let mut n = 0;
        for p in pages {
            *raw.get_mut(n).ok_or(EINVAL)? = p.as_ptr();
            n += 1;
        }
        if offset as usize >= super::page::PAGE_BYTES {
            return Err(EINVAL);
        }
        // SAFETY: `ptr` is ours (type invariant); `raw` holds `n` live pages
        // (the iterator's references keep them alive for the call) and the
        // shim copies from no more than `n` of them.
        let ok = unsafe { bindings::aether_bio_copy_from_pages(self.ptr, raw.as_ptr(), n as u32, offset) };
        if ok {
            Ok(())
        } else {
            Err(EINVAL)
        }
    }
}
