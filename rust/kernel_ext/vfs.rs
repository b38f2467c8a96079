// SPDX-License-Identifier: GPL-2.0

//! Files opened from kernel context, so KUnit suites can drive aether's real
//! file interfaces (debugfs) as a user's `read(2)`/`write(2)` does.
//!
//! 6.12's `kernel_read`/`kernel_write` only serve files with `read_iter`/
//! `write_iter`, and debugfs files have `read`/`write`. So I/O here goes
//! through the file's own `f_op->read`/`write` (debugfs's proxy, then ours)
//! with a user-space buffer that KUnit maps for the running test. That is what
//! `vfs_write()` ends in, minus its range and notification bookkeeping; the
//! `FMODE_READ`/`FMODE_WRITE` checks are done here.

use super::bindings;
use kernel::{prelude::*, str::CStr, uaccess::UserSlice};

/// A file opened in a KUnit test; closed on drop.
///
/// # Invariants
///
/// `filp` is a file returned by a successful `filp_open` and not yet closed.
pub(crate) struct TestFile {
    filp: *mut bindings::file,
}

/// Largest transfer [`TestFile`] does in one call.
const MAX_IO: usize = 4096;

/// A user-space page owned by the running KUnit test (unmapped when it ends).
fn test_user_page() -> Result<usize> {
    // SAFETY: Returns the current test or null; no preconditions. (A static
    // inline, which the kernel crate exports as a helper.)
    let test = unsafe { kernel::bindings::kunit_get_current_test() }.cast::<bindings::kunit>();
    if test.is_null() {
        return Err(EPERM);
    }
    let prot = (bindings::PROT_READ | bindings::PROT_WRITE) as usize;
    let flags = (bindings::MAP_ANONYMOUS | bindings::MAP_PRIVATE) as usize;
    // SAFETY: `test` is the running test; KUnit attaches an mm to the test
    // thread if needed and unmaps the area when the test ends.
    let addr = unsafe { bindings::kunit_vm_mmap(test, core::ptr::null_mut(), 0, MAX_IO, prot, flags, 0) };
    // `vm_mmap` reports errors as values in the last page (`IS_ERR_VALUE`).
    if addr == 0 || addr >= (-4095isize) as usize {
        Err(ENOMEM)
    } else {
        Ok(addr)
    }
}

impl TestFile {
    /// Opens `path` read-write or read-only.
    pub(crate) fn open(path: &CStr, writable: bool) -> Result<Self> {
        let flags = if writable { bindings::O_RDWR } else { bindings::O_RDONLY };
        // SAFETY: `path` is NUL-terminated; opening has no other preconditions.
        let filp = unsafe { bindings::filp_open(path.as_char_ptr(), flags as i32, 0) };
        let filp = kernel::error::from_err_ptr(filp)?;
        // INVARIANT: `filp_open` succeeded.
        Ok(Self { filp })
    }

    fn has_mode(&self, mode: u32) -> bool {
        // SAFETY: `filp` is open (type invariant).
        unsafe { (*self.filp).f_mode & mode != 0 }
    }

    /// One `write` of `data` at offset 0; the byte count or the errno.
    pub(crate) fn write(&self, data: &[u8]) -> Result<usize> {
        if !self.has_mode(bindings::AETHER_CONST_FMODE_WRITE) {
            return Err(EBADF);
        }
        if data.len() > MAX_IO {
            return Err(EINVAL);
        }
        let ubuf = test_user_page()?;
        UserSlice::new(ubuf, data.len()).writer().write_slice(data)?;
        let mut pos: bindings::loff_t = 0;
        // SAFETY: `filp` is open (type invariant) so `f_op` is valid.
        let write = unsafe { (*(*self.filp).f_op).write }.ok_or(EINVAL)?;
        // SAFETY: `filp` is open with `FMODE_WRITE` (checked above); `ubuf` is
        // a user mapping of at least `data.len()` bytes.
        let n = unsafe { write(self.filp, ubuf as *const kernel::ffi::c_char, data.len(), &mut pos) };
        usize::try_from(n).map_err(|_| Error::from_errno(n as i32))
    }

    /// One `read` at offset 0 into `buf`; the byte count.
    pub(crate) fn read(&self, buf: &mut [u8]) -> Result<usize> {
        if !self.has_mode(bindings::AETHER_CONST_FMODE_READ) {
            return Err(EBADF);
        }
        let len = buf.len().min(MAX_IO);
        let ubuf = test_user_page()?;
        let mut pos: bindings::loff_t = 0;
        // SAFETY: `filp` is open (type invariant) so `f_op` is valid.
        let read = unsafe { (*(*self.filp).f_op).read }.ok_or(EINVAL)?;
        // SAFETY: `filp` is open with `FMODE_READ` (checked above); `ubuf` is a
        // user mapping of `len` bytes.
        let n = unsafe { read(self.filp, ubuf as *mut kernel::ffi::c_char, len, &mut pos) };
        let n = usize::try_from(n).map_err(|_| Error::from_errno(n as i32))?;
        UserSlice::new(ubuf, n).reader().read_slice(buf.get_mut(..n).ok_or(EINVAL)?)?;
        Ok(n)
    }
}

impl Drop for TestFile {
    fn drop(&mut self) {
        // SAFETY: `filp` is open (type invariant) and closed once, here. A
        // kthread's final `fput` is deferred to a workqueue; flushing it drops
        // the file's module reference now, so `rmmod` right after the suites
        // does not see this module busy.
        unsafe {
            bindings::filp_close(self.filp, core::ptr::null_mut());
            bindings::flush_delayed_fput();
        }
    }
}
