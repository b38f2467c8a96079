// SPDX-License-Identifier: GPL-2.0

//! An interrupt-safe spinlock, shaped like upstream's later `SpinLockIrq`.
//!
//! 6.12's `kernel::sync::SpinLock` neither disables interrupts nor offers
//! `try_lock`. aether's cache is touched from bio completions (hard or soft
//! IRQ) and its `map` may run in softirq when stacked under a target that
//! resubmits from a completion, so every acquisition here saves and disables
//! local interrupts: a completion can never spin on a lock its own CPU holds.
//! [`IrqSpinLock::try_lock`] lets the hot path skip optional work instead of
//! waiting for another CPU.

use super::bindings;
use core::cell::UnsafeCell;
use core::marker::PhantomData;
use kernel::{ffi::c_ulong, init::PinInit, prelude::*, str::CStr, types::Opaque};

/// A lockdep class for one kind of lock; declare it `static`.
pub(crate) struct LockClass(Opaque<kernel::bindings::lock_class_key>);

// SAFETY: lockdep synchronises its use of a `lock_class_key` itself; we only
// ever pass its address.
unsafe impl Sync for LockClass {}

impl LockClass {
    /// A class key for a `static`: lockdep wants statically allocated,
    /// uninitialised keys.
    pub(crate) const fn new() -> Self {
        Self(Opaque::uninit())
    }
}

/// A spinlock that disables local interrupts while held, protecting a `T`.
///
/// # Invariants
///
/// `lock` was initialised by `__spin_lock_init` before the value was shared;
/// `data` is only accessed through an [`IrqGuard`], i.e. with `lock` held.
#[pin_data]
pub(crate) struct IrqSpinLock<T> {
    #[pin]
    lock: Opaque<bindings::spinlock_t>,
    data: UnsafeCell<T>,
}

// SAFETY: The lock hands out `&mut T` to one holder at a time, from any
// thread, so `T: Send` suffices for both.
unsafe impl<T: Send> Send for IrqSpinLock<T> {}
// SAFETY: As above.
unsafe impl<T: Send> Sync for IrqSpinLock<T> {}

/// Creates an [`IrqSpinLock`] initialiser with its own lockdep class.
macro_rules! new_irq_spinlock {
    ($data:expr, $name:literal) => {{
        static CLASS: $crate::kernel_ext::sync::LockClass = $crate::kernel_ext::sync::LockClass::new();
        $crate::kernel_ext::sync::IrqSpinLock::new($data, kernel::c_str!($name), &CLASS)
    }};
}
pub(crate) use new_irq_spinlock;

impl<T> IrqSpinLock<T> {
    /// An initialiser for a lock holding `data`, in lockdep class `class`.
    pub(crate) fn new(data: T, name: &'static CStr, class: &'static LockClass) -> impl PinInit<Self> {
        pin_init!(Self {
            data: UnsafeCell::new(data),
            // SAFETY: `slot` is valid for writes and pinned; `name` and `class`
            // are static, as lockdep requires.
            lock <- Opaque::ffi_init(|slot: *mut bindings::spinlock_t| unsafe {
                kernel::bindings::__spin_lock_init(slot.cast(), name.as_char_ptr(), class.0.get())
            }),
        })
    }

    /// Spins until the lock is free; local interrupts stay off until the
    /// guard drops.
    pub(crate) fn lock(&self) -> IrqGuard<'_, T> {
        // SAFETY: `lock` is initialised (type invariant).
        let flags = unsafe { bindings::aether_spin_lock_irqsave(self.lock.get()) };
        // INVARIANT: the lock is held.
        IrqGuard { lock: self, flags, _not_send: PhantomData }
    }

    /// Takes the lock only if it is free right now.
    pub(crate) fn try_lock(&self) -> Option<IrqGuard<'_, T>> {
        let mut flags: c_ulong = 0;
        // SAFETY: `lock` is initialised (type invariant); `flags` is a valid
        // out-pointer.
        let locked = unsafe { bindings::aether_spin_trylock_irqsave(self.lock.get(), &mut flags) };
        if !locked {
            return None;
        }
        // INVARIANT: the lock is held. (Never build the guard otherwise: a
        // dropped guard unlocks.)
        Some(IrqGuard { lock: self, flags, _not_send: PhantomData })
    }
}

/// Holds an [`IrqSpinLock`]; unlocks and restores interrupts on drop.
///
/// # Invariants
///
/// `lock` is held by this guard, which was created with interrupts saved in
/// `flags` on this CPU.
pub(crate) struct IrqGuard<'a, T> {
    lock: &'a IrqSpinLock<T>,
    flags: c_ulong,
    /// Must be unlocked on the CPU that locked it.
    _not_send: PhantomData<*mut ()>,
}

impl<T> core::ops::Deref for IrqGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: The lock is held (type invariant), so no one else accesses `data`.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> core::ops::DerefMut for IrqGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: The lock is held (type invariant), so no one else accesses `data`.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for IrqGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: The lock is held by this guard with these saved flags, on
        // this CPU (type invariant; the guard is not `Send`).
        unsafe { bindings::aether_spin_unlock_irqrestore(self.lock.lock.get(), self.flags) };
    }
}
