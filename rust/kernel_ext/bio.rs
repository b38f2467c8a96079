// SPDX-License-Identifier: GPL-2.0

//! A borrowed `struct bio`, shaped like the `Bio` of upstream's block
//! abstractions: the target reads what it needs and remaps it.

use super::bindings;
use super::dm::DmDev;

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
    pub(crate) fn remap(&mut self, dev: &DmDev, sector: u64) {
        // SAFETY: `ptr` is valid and ours by the type invariant; `dev.bdev()` is
        // a live block device for as long as `dev` holds it.
        unsafe {
            bindings::aether_bio_set_dev(self.ptr, dev.bdev());
            (*self.ptr).bi_iter.bi_sector = sector;
        }
    }
}
