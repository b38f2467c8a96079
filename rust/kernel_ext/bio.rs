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

/// A bio `map` kept (it returned [`super::dm::MapResult::Park`]) to finish
/// later, already remapped to its lower device: either fill it and end it,
/// or send it to the device.
///
/// # Invariants
///
/// `ptr` is a device-mapper clone whose `map` returned `DM_MAPIO_SUBMITTED`,
/// not yet ended or submitted, and owned by this value alone. Device-mapper
/// counts it as in flight, so the table (and its devices) outlive it.
pub(crate) struct ParkedBio {
    ptr: *mut bindings::bio,
}

// SAFETY: A bio may be ended or submitted from any CPU.
unsafe impl Send for ParkedBio {}

impl ParkedBio {
    /// # Safety
    ///
    /// `bio` must be a clone in `map` that will return `DM_MAPIO_SUBMITTED`
    /// and that nothing else will end or submit.
    pub(super) unsafe fn from_raw(bio: *mut bindings::bio) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self { ptr: bio }
    }

    /// First sector on the device it was remapped to.
    pub(crate) fn sector(&self) -> u64 {
        // SAFETY: We own the bio (type invariant).
        unsafe { (*self.ptr).bi_iter.bi_sector }
    }

    /// Size in bytes.
    pub(crate) fn size(&self) -> u32 {
        // SAFETY: We own the bio (type invariant).
        unsafe { (*self.ptr).bi_iter.bi_size }
    }

    /// Copies the data from `pages` (starting `offset` bytes into the
    /// first) and ends the bio successfully. Any context. Gives the bio back
    /// if the pages do not cover it.
    pub(crate) fn fill_and_end<'a>(self, pages: impl Iterator<Item = &'a CachePage>, offset: u32) -> Result<(), Self> {
        // INVARIANT: the borrowed view ends before the bio does.
        let mut view = Bio { ptr: self.ptr };
        if view.copy_from_pages(pages, offset).is_err() {
            return Err(self);
        }
        let mut this = core::mem::ManuallyDrop::new(self);
        // SAFETY: We own the bio (type invariant) and end it once; the
        // `ManuallyDrop` keeps `Drop` from touching it again.
        unsafe {
            (*this.ptr).bi_status = 0;
            bindings::bio_endio(this.ptr);
        }
        Ok(())
    }

    /// Sends the bio to its (already remapped) device. Process context only:
    /// submission may sleep. `REQ_NOWAIT` is dropped: the caller waited
    /// already, and this context may block.
    pub(crate) fn submit(self) {
        let mut this = core::mem::ManuallyDrop::new(self);
        // SAFETY: We own the bio (type invariant) and hand it on once.
        unsafe {
            (*this.ptr).bi_opf &= !(1u32 << bindings::req_flag_bits___REQ_NOWAIT);
            bindings::submit_bio_noacct(this.ptr);
        }
    }
}

impl Drop for ParkedBio {
    /// A parked bio must be filled or submitted; dropping one would hang
    /// its reader, so it fails instead (and says so).
    fn drop(&mut self) {
        kernel::pr_err!("parked read dropped unserved; failing it\n");
        // SAFETY: We own the bio (type invariant) and end it once.
        unsafe {
            (*self.ptr).bi_status = bindings::AETHER_CONST_BLK_STS_IOERR;
            bindings::bio_endio(self.ptr);
        }
    }
}
