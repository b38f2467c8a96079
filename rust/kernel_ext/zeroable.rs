// SPDX-License-Identifier: GPL-2.0

//! aether-core types the kernel allocates zero-filled on the heap.
//!
//! An `Engine` is several KiB. Building one by value (`KBox::new(Engine::new(..))`)
//! puts one or more copies on the 16 KiB kernel stack, which overflowed it in
//! testing. Instead the driver allocates zeroed memory with
//! `KBox::init(kernel::init::zeroed())` and initialises it in place with
//! `Engine::reset`, which needs `Engine: Zeroable`.

use crate::aether_core::Engine;
use kernel::init::Zeroable;

// SAFETY: `Engine` and every type inside it (`Gate`, `StreamTable`, `Stream`,
// `Aimd`, `GateEval`, `P99Guard`, `LatencyHistogram`, `Stats`, `Params`) are
// made only of integers, `bool`s and arrays or structs of those (no enums,
// references or `NonZero` types), so all-zero bytes are a valid value. It is
// not a meaningful engine until `Engine::reset` runs, which the driver does
// before first use. aether-core documents that `Engine` must stay plain data.
unsafe impl Zeroable for Engine {}
