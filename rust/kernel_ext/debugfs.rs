// SPDX-License-Identifier: GPL-2.0

//! debugfs directories, shaped like upstream's `kernel::debugfs::Dir` (6.18).
//!
//! As in C, a failure to create an entry is not an error the driver acts on:
//! debugfs is a debugging aid, so a [`Dir`] that could not be created is simply
//! absent, and everything below it is absent too.

use super::bindings;
use kernel::{prelude::*, str::CStr, sync::Arc};

/// Whether a `debugfs_create_*` result is an entry (not NULL or an ERR_PTR).
fn is_entry(dentry: *mut bindings::dentry) -> bool {
    !dentry.is_null() && kernel::error::from_err_ptr(dentry).is_ok()
}

/// An owned debugfs dentry; removed (recursively) when the last handle goes.
///
/// # Invariants
///
/// `dentry` is a valid dentry returned by `debugfs_create_*` and owned by this
/// entry. `parent`, if any, is the entry `dentry` was created in: holding it keeps
/// the parent from being removed (which would free `dentry`) while this lives.
struct Entry {
    dentry: *mut bindings::dentry,
    parent: Option<Arc<Entry>>,
}

// SAFETY: The dentry pointer is only passed to debugfs functions, which do their
// own locking and may be called from any thread.
unsafe impl Send for Entry {}
// SAFETY: `Entry` has no interior state of its own; see `Send`.
unsafe impl Sync for Entry {}

impl Drop for Entry {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `dentry` is valid and owned by us. Our
        // children hold `Arc`s to us, so none of them is still alive.
        unsafe { bindings::debugfs_remove(self.dentry) };
        // The parent is released after the child is gone (field drop order).
        let _ = &self.parent;
    }
}

/// Owning handle to a debugfs directory. Dropping it removes the directory
/// once every subdirectory handle has been dropped as well.
pub(crate) struct Dir {
    entry: Option<Arc<Entry>>,
}

impl Dir {
    /// Creates `name` in the debugfs root.
    pub(crate) fn new(name: &CStr) -> Self {
        Self::create(name, None)
    }

    /// Creates `name` below this directory (absent if this one is absent).
    pub(crate) fn subdir(&self, name: &CStr) -> Self {
        match &self.entry {
            Some(parent) => Self::create(name, Some(parent.clone())),
            None => Self { entry: None },
        }
    }

    /// Creates a symbolic link `name` in this directory pointing to `target`
    /// (a path relative to this directory). Absent if this directory is, or
    /// if the name is taken.
    pub(crate) fn symlink(&self, name: &CStr, target: &CStr) -> Link {
        let Some(parent) = &self.entry else { return Link { entry: None } };
        // SAFETY: `name` and `target` are NUL-terminated (debugfs copies
        // `target`); `parent.dentry` is valid (`Entry` invariant).
        let dentry = unsafe { bindings::debugfs_create_symlink(name.as_char_ptr(), parent.dentry, target.as_char_ptr()) };
        if !is_entry(dentry) {
            return Link { entry: None };
        }
        // INVARIANT: `dentry` was just created in `parent`, which we keep alive.
        Link { entry: Some(Entry { dentry, parent: Some(parent.clone()) }) }
    }

    /// Whether the directory exists in debugfs.
    pub(crate) fn is_present(&self) -> bool {
        self.entry.is_some()
    }

    fn create(name: &CStr, parent: Option<Arc<Entry>>) -> Self {
        let parent_dentry = parent.as_ref().map_or(core::ptr::null_mut(), |p| p.dentry);
        // SAFETY: `name` is NUL-terminated and outlives the call; `parent_dentry`
        // is null (the debugfs root) or valid by `Entry`'s invariant, and is kept
        // alive by `parent` for the whole call.
        let dentry = unsafe { bindings::debugfs_create_dir(name.as_char_ptr(), parent_dentry) };
        if !is_entry(dentry) {
            return Self { entry: None };
        }
        match Arc::new(Entry { dentry, parent }, GFP_KERNEL) {
            Ok(entry) => Self { entry: Some(entry) },
            // The `Entry` was dropped on the failure path, removing `dentry`.
            Err(_) => Self { entry: None },
        }
    }
}

/// Owning handle to a debugfs symbolic link; removed on drop.
pub(crate) struct Link {
    entry: Option<Entry>,
}

impl Link {
    /// A handle to no link.
    pub(crate) fn absent() -> Self {
        Self { entry: None }
    }

    /// Whether the link exists in debugfs.
    pub(crate) fn is_present(&self) -> bool {
        self.entry.is_some()
    }
}

/// What a debugfs file shows and, if writable, accepts.
pub(crate) trait FileOps: Send + Sync {
    /// Writes the file's contents; called on every read from offset 0.
    fn show(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result;

    /// Takes one whole write (at most [`MAX_WRITE`] bytes). An error leaves the
    /// state unchanged and is returned to the writer.
    fn store(&self, _input: &[u8]) -> Result {
        Err(EPERM)
    }
}

/// The longest write a file accepts; longer writes fail with `EINVAL` unread.
pub(crate) const MAX_WRITE: usize = 64;

/// What `i_private` points to: a thin pointer to the file's operations.
struct Slot {
    ops: Arc<dyn FileOps>,
}

/// Owning handle to a debugfs file; removing it waits for in-flight reads and
/// writes, after which its operations are dropped.
///
/// # Invariants
///
/// If present, `dentry` is a file created with `slot` as `i_private` inside the
/// directory `_dir`, and is removed before `slot` is freed.
pub(crate) struct File {
    dentry: *mut bindings::dentry,
    slot: Option<KBox<Slot>>,
    _dir: Option<Arc<Entry>>,
}

// SAFETY: The dentry is only passed to debugfs, which does its own locking; the
// operations are `Send + Sync`.
unsafe impl Send for File {}
// SAFETY: See `Send`; `&File` exposes nothing.
unsafe impl Sync for File {}

impl Dir {
    /// Creates file `name` in this directory, read-only (0444) unless
    /// `writable` (0644). Fails only if memory runs out; an absent directory
    /// gives an absent file.
    pub(crate) fn file<T: FileOps + 'static>(&self, name: &CStr, writable: bool, ops: T) -> Result<File> {
        let Some(dir) = &self.entry else {
            return Ok(File { dentry: core::ptr::null_mut(), slot: None, _dir: None });
        };
        let ops: Arc<dyn FileOps> = Arc::new(ops, GFP_KERNEL)?;
        let slot = KBox::new(Slot { ops }, GFP_KERNEL)?;
        let mode: u16 = if writable { 0o644 } else { 0o444 };
        // SAFETY: `name` is NUL-terminated; `dir.dentry` is valid (`Entry`
        // invariant); `slot` stays at this address until the file is removed
        // (`File` invariant); the fops table is static and owned by this module.
        let dentry = unsafe {
            bindings::debugfs_create_file(
                name.as_char_ptr(),
                mode,
                dir.dentry,
                core::ptr::from_ref::<Slot>(&slot).cast_mut().cast(),
                &bindings::aether_debugfs_fops,
            )
        };
        let dentry = if is_entry(dentry) { dentry } else { core::ptr::null_mut() };
        Ok(File { dentry, slot: Some(slot), _dir: Some(dir.clone()) })
    }
}

impl Drop for File {
    fn drop(&mut self) {
        if !self.dentry.is_null() {
            // SAFETY: `dentry` is our file (type invariant). Removal waits for
            // running operations and makes later ones fail, so `slot` is unused
            // once this returns.
            unsafe { bindings::debugfs_remove(self.dentry) };
        }
        self.slot = None;
    }
}

/// Formats into a `seq_file`.
struct SeqWriter(*mut bindings::seq_file);

impl core::fmt::Write for SeqWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        // SAFETY: The `seq_file` is live for the `show` call that made us; an
        // overflow is recorded by seq_file, which retries with a larger buffer.
        unsafe { bindings::seq_write(self.0, s.as_ptr().cast(), s.len()) };
        Ok(())
    }
}

/// `single_open` show callback: `m->private` is the file's [`Slot`].
unsafe extern "C" fn show(m: *mut bindings::seq_file, _v: *mut kernel::ffi::c_void) -> kernel::ffi::c_int {
    // SAFETY: seq_file passes the `m` that `open` set up, whose `private` is the
    // `Slot` of a file that debugfs keeps alive for the operation.
    let slot = unsafe { &*(*m).private.cast::<Slot>() };
    match slot.ops.show(&mut SeqWriter(m)) {
        Ok(()) => 0,
        Err(_) => EINVAL.to_errno(),
    }
}

/// `open` of aether's debugfs fops table (the C shim).
///
/// # Safety
///
/// Called by the VFS with a valid inode and file of a file created by [`Dir::file`].
#[no_mangle]
pub(crate) unsafe extern "C" fn aether_debugfs_open(inode: *mut bindings::inode, file: *mut bindings::file) -> kernel::ffi::c_int {
    // SAFETY: Valid inode and file (caller's guarantee); `i_private` is our `Slot`.
    unsafe { bindings::single_open(file, Some(show), (*inode).i_private) }
}

/// `write` of aether's debugfs fops table (the C shim): one whole value per
/// write, at most [`MAX_WRITE`] bytes.
///
/// # Safety
///
/// Called by the VFS for a file opened by [`aether_debugfs_open`], with `buf`
/// a user pointer to `count` bytes.
#[no_mangle]
pub(crate) unsafe extern "C" fn aether_debugfs_write(
    file: *mut bindings::file,
    buf: *const kernel::ffi::c_char,
    count: usize,
    _ppos: *mut bindings::loff_t,
) -> isize {
    if count == 0 || count > MAX_WRITE {
        return EINVAL.to_errno() as isize;
    }
    let mut input = [0u8; MAX_WRITE];
    let Some(dst) = input.get_mut(..count) else {
        return EINVAL.to_errno() as isize;
    };
    let mut reader = kernel::uaccess::UserSlice::new(buf as usize, count).reader();
    if let Err(e) = reader.read_slice(dst) {
        return e.to_errno() as isize;
    }
    // SAFETY: `private_data` is the `seq_file` that `single_open` installed, and
    // its `private` is the `Slot`, alive while debugfs lets the write run.
    let slot = unsafe { &*(*(*file).private_data.cast::<bindings::seq_file>()).private.cast::<Slot>() };
    match slot.ops.store(dst) {
        Ok(()) => count as isize,
        Err(e) => e.to_errno() as isize,
    }
}
