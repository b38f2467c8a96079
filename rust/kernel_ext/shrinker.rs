// SPDX-License-Identifier: GPL-2.0

//! Memory shrinkers: the kernel asks an owner to give memory back under
//! pressure (`shrinker_alloc`, `shrinker_register`, `shrinker_free`).

use super::bindings;
use kernel::{ffi::c_ulong, prelude::*, str::CStr, sync::Arc};

/// What a shrinker's owner frees.
pub(crate) trait ShrinkerOps: Send + Sync + 'static {
    /// Objects that could be freed now.
    fn count(&self) -> usize;
    /// Frees up to `nr` objects; returns how many were freed.
    fn scan(&self, nr: usize) -> usize;
}

/// A registered shrinker calling `T`; unregistered on drop.
///
/// # Invariants
///
/// `ptr` is a registered shrinker whose `private_data` is the address of `*owner`
/// and whose callbacks are `Self::count`/`Self::scan`.
pub(crate) struct Shrinker<T: ShrinkerOps> {
    ptr: *mut bindings::shrinker,
    /// Reached by the callbacks through `private_data`.
    _owner: Arc<T>,
}

// SAFETY: The shrinker is only freed through `Drop`, from any thread; `T` is
// `Send + Sync`.
unsafe impl<T: ShrinkerOps> Send for Shrinker<T> {}
// SAFETY: `&Shrinker` gives nothing but `&T`.
unsafe impl<T: ShrinkerOps> Sync for Shrinker<T> {}

impl<T: ShrinkerOps> Shrinker<T> {
    /// Registers a shrinker named `aether-<name>` (see
    /// `/sys/kernel/debug/shrinker/`) for `owner`.
    pub(crate) fn register(name: &CStr, owner: Arc<T>) -> Result<Self> {
        // SAFETY: The format takes one string argument, `name`, a valid
        // NUL-terminated string; `shrinker_alloc` copies it.
        let ptr = unsafe { bindings::shrinker_alloc(0, kernel::c_str!("aether-%s").as_char_ptr(), name.as_char_ptr()) };
        if ptr.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: `ptr` is a new, unregistered shrinker; we set its callbacks
        // and data before registering it. `owner` outlives the registration
        // (it is dropped after `shrinker_free` in `Drop`).
        unsafe {
            (*ptr).count_objects = Some(Self::count);
            (*ptr).scan_objects = Some(Self::scan);
            (*ptr).private_data = (&*owner as *const T).cast_mut().cast();
            bindings::shrinker_register(ptr);
        }
        // INVARIANT: registered with our callbacks and `owner`'s address.
        Ok(Self { ptr, _owner: owner })
    }

    /// # Safety
    ///
    /// Called by reclaim for a shrinker registered by [`Self::register`].
    unsafe extern "C" fn count(s: *mut bindings::shrinker, _sc: *mut bindings::shrink_control) -> c_ulong {
        // SAFETY: `private_data` is the owner's address, alive while the
        // shrinker is registered (type invariant).
        let owner = unsafe { &*((*s).private_data as *const T) };
        owner.count() as c_ulong
    }

    /// # Safety
    ///
    /// As for [`Self::count`], with a valid `sc`.
    unsafe extern "C" fn scan(s: *mut bindings::shrinker, sc: *mut bindings::shrink_control) -> c_ulong {
        // SAFETY: See `count`.
        let owner = unsafe { &*((*s).private_data as *const T) };
        // SAFETY: Reclaim passes a valid control block.
        let nr = unsafe { (*sc).nr_to_scan } as usize;
        owner.scan(nr) as c_ulong
    }

}

impl<T: ShrinkerOps> Drop for Shrinker<T> {
    fn drop(&mut self) {
        // SAFETY: Registered (type invariant); `shrinker_free` unregisters it
        // and waits for running callbacks, before `owner` is dropped.
        unsafe { bindings::shrinker_free(self.ptr) };
    }
}
