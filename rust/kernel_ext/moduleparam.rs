// SPDX-License-Identifier: GPL-2.0

//! Module parameters with Rust parsing, for 6.12 whose `module!` has none.
//!
//! The C shim declares each parameter with `module_param_cb()` and one shared
//! `kernel_param_ops` whose callbacks are `aether_param_set/get` (in
//! `entry.rs`), which call [`set`] and [`get`] for the driver's [`ParamHandler`].

use super::{bindings, fmt::BufWriter};
use kernel::{ffi::{c_char, c_int}, prelude::*, str::CStr};

/// Parses and shows the module's parameters by name.
pub(crate) trait ParamHandler {
    /// Sets `name` from the text written to it (at load or through sysfs).
    fn set(name: &str, value: &[u8]) -> Result;
    /// Writes the current value of `name`.
    fn get(name: &str, out: &mut dyn core::fmt::Write) -> Result;
}

/// The parameter's name without a `module.` prefix (built-in modules have one).
///
/// # Safety
///
/// `kp` must point to a valid `kernel_param`.
unsafe fn param_name<'a>(kp: *const bindings::kernel_param) -> Result<&'a str> {
    // SAFETY: `kp` is valid (caller's guarantee); `name` is a static C string.
    let name = unsafe { CStr::from_char_ptr((*kp).name) }.to_str().map_err(|_| EINVAL)?;
    Ok(name.rsplit('.').next().unwrap_or(name))
}

/// `kernel_param_ops.set` for handler `H`.
///
/// # Safety
///
/// `val` must be a NUL-terminated string and `kp` a valid `kernel_param`, as
/// the kernel passes them.
pub(crate) unsafe fn set<H: ParamHandler>(val: *const c_char, kp: *const bindings::kernel_param) -> c_int {
    if val.is_null() {
        return EINVAL.to_errno();
    }
    // SAFETY: Guaranteed by the caller.
    let (name, value) = match (unsafe { param_name(kp) }, unsafe { CStr::from_char_ptr(val) }) {
        (Ok(n), v) => (n, v.as_bytes()),
        (Err(e), _) => return e.to_errno(),
    };
    match H::set(name, value) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// `kernel_param_ops.get` for handler `H`.
///
/// # Safety
///
/// `buffer` must be valid for `PAGE_SIZE` bytes and `kp` a valid
/// `kernel_param`, as the kernel passes them.
pub(crate) unsafe fn get<H: ParamHandler>(buffer: *mut c_char, kp: *const bindings::kernel_param) -> c_int {
    // SAFETY: Guaranteed by the caller.
    let name = match unsafe { param_name(kp) } {
        Ok(n) => n,
        Err(e) => return e.to_errno(),
    };
    // SAFETY: sysfs hands us a page (caller's guarantee).
    let mut out = unsafe { BufWriter::from_raw(buffer, kernel::page::PAGE_SIZE) };
    if let Err(e) = H::get(name, &mut out) {
        return e.to_errno();
    }
    let _ = core::fmt::Write::write_str(&mut out, "\n");
    out.len() as c_int
}
