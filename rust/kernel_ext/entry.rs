// SPDX-License-Identifier: GPL-2.0

//! The module's C entry points: everything the kernel finds by symbol name or
//! by section rather than through a pointer aether hands it.
//!
//! - `init_module`/`cleanup_module` and `THIS_MODULE`, from 6.12's `module!`;
//! - `aether_param_set`/`aether_param_get`, the module-parameter callbacks the
//!   C shim's `kernel_param_ops` names;
//! - in `aether_test.ko`, the `.kunit_test_suites` array.
//!
//! These need `#[no_mangle]`, `#[link_section]` or `unsafe` (which `module!`
//! emits), all of which the driver's `#![deny(unsafe_code)]` refuses. So they
//! live here and forward to safe driver items: [`AetherModule`],
//! [`ModuleParams`] and `kunit_tests::SUITES`.

use super::bindings;
use super::moduleparam;
use crate::module::AetherModule;
use crate::params::ModuleParams;
use kernel::ffi::{c_char, c_int};

#[cfg(not(aether_kunit))]
kernel::prelude::module! {
    type: AetherModule,
    name: "aether",
    author: "aether developers",
    description: "Adaptive NVMe prefetcher: a device-mapper target with a learned prefetch gate",
    license: "GPL",
}

#[cfg(aether_kunit)]
kernel::prelude::module! {
    type: AetherModule,
    name: "aether_test",
    author: "aether developers",
    description: "aether's KUnit suites, with the aether target registered as aether_test",
    license: "GPL",
}

// `pr_*!` take their prefix from `crate::__LOG_PREFIX`, which the crate root
// declares because `module!` declares its own here. They must agree.
const _: () = {
    let (ours, root) = (__LOG_PREFIX, crate::__LOG_PREFIX);
    assert!(ours.len() == root.len(), "crate::__LOG_PREFIX differs from the module name");
    let mut i = 0;
    while i < ours.len() {
        assert!(ours[i] == root[i], "crate::__LOG_PREFIX differs from the module name");
        i += 1;
    }
};

/// `kernel_param_ops.set` (see `rust/shim/aether_shim.c`).
///
/// # Safety
///
/// Called by the kernel with a NUL-terminated value and a valid param.
#[no_mangle]
unsafe extern "C" fn aether_param_set(val: *const c_char, kp: *const bindings::kernel_param) -> c_int {
    // SAFETY: Forwarded from the kernel's call.
    unsafe { moduleparam::set::<ModuleParams>(val, kp) }
}

/// `kernel_param_ops.get` (see `rust/shim/aether_shim.c`).
///
/// # Safety
///
/// Called by the kernel with a page-sized buffer and a valid param.
#[no_mangle]
unsafe extern "C" fn aether_param_get(buffer: *mut c_char, kp: *const bindings::kernel_param) -> c_int {
    // SAFETY: Forwarded from the kernel's call.
    unsafe { moduleparam::get::<ModuleParams>(buffer, kp) }
}

/// The suites of `aether_test.ko`. The module loader collects this section
/// into `mod->kunit_suites`, and KUnit runs them once the module is live.
#[cfg(aether_kunit)]
#[used]
#[link_section = ".kunit_test_suites"]
static KUNIT_SUITES: [super::kunit::SuiteEntry; crate::kunit_tests::SUITE_COUNT] =
    super::kunit::entries(&crate::kunit_tests::SUITES);
