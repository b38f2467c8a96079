// SPDX-License-Identifier: GPL-2.0

//! Formatting into C-owned buffers.

use kernel::ffi::c_char;

/// Formats into a caller's fixed buffer, always NUL-terminated, silently
/// truncating when full (like `DMEMIT` and `scnprintf`).
pub(crate) struct BufWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> BufWriter<'a> {
    /// # Safety
    ///
    /// `ptr` must be null or valid for writes of `maxlen` bytes for `'a`, and
    /// not accessed by anyone else meanwhile.
    pub(crate) unsafe fn from_raw(ptr: *mut c_char, maxlen: usize) -> Self {
        let buf: &mut [u8] = if ptr.is_null() || maxlen == 0 {
            &mut []
        } else {
            // SAFETY: Guaranteed by the caller.
            unsafe { core::slice::from_raw_parts_mut(ptr.cast::<u8>(), maxlen) }
        };
        if let Some(first) = buf.first_mut() {
            *first = 0;
        }
        Self { buf, len: 0 }
    }

    /// Formats into `buf` (only the KUnit suites format into Rust buffers).
    #[cfg(aether_kunit)]
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        if let Some(first) = buf.first_mut() {
            *first = 0;
        }
        Self { buf, len: 0 }
    }

    /// Bytes written, without the NUL.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether anything was written.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl core::fmt::Write for BufWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        // Keep one byte for the terminating NUL.
        let room = self.buf.len().saturating_sub(self.len + 1);
        let n = s.len().min(room);
        if let (Some(dst), Some(src)) = (self.buf.get_mut(self.len..self.len + n), s.as_bytes().get(..n)) {
            dst.copy_from_slice(src);
            self.len += n;
        }
        if let Some(end) = self.buf.get_mut(self.len) {
            *end = 0;
        }
        Ok(())
    }
}
