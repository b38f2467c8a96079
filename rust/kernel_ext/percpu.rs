// SPDX-License-Identifier: GPL-2.0

//! Dynamically allocated per-CPU data, shaped like `PerCpu<T>` of the
//! "rust: percpu" series.
//!
//! Unlike that series, the data is restricted to types made only of atomics
//! ([`PerCpuSafe`]): a CPU's slot is then safe to update from both process and
//! interrupt context (a bio's `map` and its completion) without disabling
//! preemption or interrupts, and other CPUs can read it to aggregate. Each CPU
//! writes only its own slot, so no cache line is shared for writing.

use super::bindings;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};
use kernel::prelude::*;

/// Types that are valid when all bytes are zero and that are safe to share
/// between contexts: every field is an atomic.
///
/// # Safety
///
/// An all-zero bit pattern must be a valid value, and `&Self` must allow
/// concurrent use from any context (the type is made only of atomics).
pub(crate) unsafe trait PerCpuSafe: Sync + Send + 'static {}

// SAFETY: Atomics are valid at zero and made for shared use.
unsafe impl PerCpuSafe for AtomicU64 {}
// SAFETY: As above.
unsafe impl PerCpuSafe for AtomicI64 {}
// SAFETY: As above.
unsafe impl PerCpuSafe for AtomicU32 {}
// SAFETY: An array of `PerCpuSafe` elements is zero-valid and shareable.
unsafe impl<T: PerCpuSafe, const N: usize> PerCpuSafe for [T; N] {}

/// Declares a struct of atomics usable as [`PerCpu`] data. Every field's type
/// must itself be [`PerCpuSafe`]; the build fails otherwise.
macro_rules! per_cpu_struct {
    ($(#[$m:meta])* $vis:vis struct $name:ident { $($(#[$fm:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        $vis struct $name { $($(#[$fm])* $fvis $field: $ty),* }

        const _: () = {
            const fn assert_per_cpu_safe<T: $crate::kernel_ext::percpu::PerCpuSafe>() {}
            $(assert_per_cpu_safe::<$ty>();)*
        };

        // SAFETY: Every field is `PerCpuSafe` (checked just above), so the struct
        // is zero-valid and shareable as a whole.
        unsafe impl $crate::kernel_ext::percpu::PerCpuSafe for $name {}
    };
}
pub(crate) use per_cpu_struct;

/// One `T` per possible CPU, zero-initialised; freed on drop.
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
        // INVARIANT: per-CPU memory is zeroed, which is a valid `T` (`PerCpuSafe`).
        Ok(Self { ptr: ptr.cast(), _t: PhantomData })
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
