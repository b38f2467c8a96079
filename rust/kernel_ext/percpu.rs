// SPDX-License-Identifier: GPL-2.0

//! Dynamically allocated per-CPU data, shaped like `PerCpu<T>` of the
//! "rust: percpu" series.
//!
//! Unlike that series, the data is restricted to types made only of atomics
//! ([`PerCpuSafe`]): a CPU's slot is then safe to update from both process and
//! interrupt context (a bio's `map` and its completion) without disabling
//! preemption or interrupts, and other CPUs can read it to aggregate. Each CPU
//! writes only its own slot, so no cache line is shared for writing. Driver
//! structs get [`PerCpuSafe`] from [`per_cpu_struct!`], which emits no `unsafe`.

use super::bindings;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};
use kernel::prelude::*;

/// Types that [`PerCpu`] may hold: made only of atomics, so that a CPU's slot
/// can be updated from process and interrupt context alike (a bio's `map` and
/// its completion) without disabling either, and be read by other CPUs.
///
/// This is a safe trait: memory safety rests on `Sync + Send` and on [`PerCpu`]
/// writing [`PerCpuSafe::zero`] into every slot before handing one out, not on
/// the type's bit patterns. "Only atomics" keeps locks (which an interrupt on
/// the same CPU could deadlock on) and plain data (torn updates) out.
pub(crate) trait PerCpuSafe: Sync + Send + Sized + 'static {
    /// The value every CPU's slot starts with.
    fn zero() -> Self;
}

impl PerCpuSafe for AtomicU64 {
    fn zero() -> Self {
        AtomicU64::new(0)
    }
}

impl PerCpuSafe for AtomicI64 {
    fn zero() -> Self {
        AtomicI64::new(0)
    }
}

impl PerCpuSafe for AtomicU32 {
    fn zero() -> Self {
        AtomicU32::new(0)
    }
}

impl<T: PerCpuSafe, const N: usize> PerCpuSafe for [T; N] {
    fn zero() -> Self {
        core::array::from_fn(|_| T::zero())
    }
}

/// Declares a struct of atomics usable as [`PerCpu`] data. Every field's type
/// must itself be [`PerCpuSafe`]; the build fails otherwise. Expands to safe
/// code only.
macro_rules! per_cpu_struct {
    ($(#[$m:meta])* $vis:vis struct $name:ident { $($(#[$fm:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        $vis struct $name { $($(#[$fm])* $fvis $field: $ty),* }

        impl $crate::kernel_ext::percpu::PerCpuSafe for $name {
            fn zero() -> Self {
                Self { $($field: <$ty as $crate::kernel_ext::percpu::PerCpuSafe>::zero()),* }
            }
        }
    };
}
pub(crate) use per_cpu_struct;

/// One `T` per possible CPU, each starting as [`PerCpuSafe::zero`]; freed on
/// drop (without running `T`'s destructor, which atomics do not have).
///
/// # Invariants
///
/// `ptr` is a per-CPU address returned by `__alloc_percpu` for a `T`, valid
/// until drop; every possible CPU's slot holds a valid `T`.
pub(crate) struct PerCpu<T: PerCpuSafe> {
    ptr: *mut T,
    _t: PhantomData<T>,
}

// SAFETY: `T: PerCpuSafe` is `Send + Sync`; the allocation may be freed from any CPU.
unsafe impl<T: PerCpuSafe> Send for PerCpu<T> {}
// SAFETY: Only `&T` is ever handed out, and `T: Sync`.
unsafe impl<T: PerCpuSafe> Sync for PerCpu<T> {}

impl<T: PerCpuSafe> PerCpu<T> {
    /// Allocates zeroed slots for every possible CPU.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: Plain allocation; the size and alignment are those of `T`.
        let ptr = unsafe { bindings::aether_alloc_percpu(core::mem::size_of::<T>(), core::mem::align_of::<T>()) };
        if ptr.is_null() {
            return Err(ENOMEM);
        }
        let ptr = ptr.cast::<T>();
        // SAFETY: Walking the possible-CPU mask has no preconditions.
        let mut cpu = unsafe { bindings::aether_next_possible_cpu(-1) };
        while cpu >= 0 {
            // SAFETY: `cpu` is a possible CPU, so its slot of the fresh
            // allocation is valid for writes of a `T`, suitably aligned; nothing
            // else can see the allocation yet.
            unsafe { bindings::aether_per_cpu_ptr(ptr.cast(), cpu).cast::<T>().write(T::zero()) };
            // SAFETY: As above.
            cpu = unsafe { bindings::aether_next_possible_cpu(cpu) };
        }
        // INVARIANT: every possible CPU's slot was just written with a valid `T`.
        Ok(Self { ptr, _t: PhantomData })
    }

    /// The slot of the CPU we are running on. If we migrate afterwards we update
    /// another CPU's slot, which is still correct because `T` is atomic.
    pub(crate) fn this_cpu(&self) -> &T {
        // SAFETY: `ptr` is a live per-CPU allocation of `T` (type invariant).
        unsafe { &*bindings::aether_raw_cpu_ptr(self.ptr.cast()).cast::<T>() }
    }

    /// Calls `f` with every possible CPU's slot, to aggregate.
    pub(crate) fn for_each_cpu(&self, mut f: impl FnMut(&T)) {
        // SAFETY: Walking the possible-CPU mask has no preconditions.
        let mut cpu = unsafe { bindings::aether_next_possible_cpu(-1) };
        while cpu >= 0 {
            // SAFETY: `cpu` is a possible CPU and `ptr` a live allocation.
            f(unsafe { &*bindings::aether_per_cpu_ptr(self.ptr.cast(), cpu).cast::<T>() });
            // SAFETY: As above.
            cpu = unsafe { bindings::aether_next_possible_cpu(cpu) };
        }
    }
}

impl<T: PerCpuSafe> Drop for PerCpu<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `__alloc_percpu` and is freed once, here.
        unsafe { bindings::free_percpu(self.ptr.cast()) };
    }
}
