// SPDX-License-Identifier: GPL-2.0

//! Raw bindings for headers the 6.12 `kernel` crate does not bind.
//!
//! Kbuild generates `build/kernel_ext/bindings_generated.rs` from
//! `bindings_helper.h` with the kernel's own bindgen flags (see the root
//! `Kbuild`). Nothing outside
//! `kernel_ext` should name these items.

#![allow(
    dead_code,
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    improper_ctypes,
    unreachable_pub,
    unsafe_op_in_unsafe_fn,
    missing_docs,
    clippy::all,
    clippy::undocumented_unsafe_blocks
)]

// The kernel maps these by hand too (rust/bindings/lib.rs), so bindgen skips them.
type __kernel_size_t = usize;
type __kernel_ssize_t = isize;
type __kernel_ptrdiff_t = isize;

include!("../../build/kernel_ext/bindings_generated.rs");
