// SPDX-License-Identifier: GPL-2.0

//! aether-core types the kernel allocates zero-filled on the heap.
//!
//! An `Engine` is several KiB. Building one by value (`KBox::new(Engine::new(..))`)
//! puts one or more copies on the 16 KiB kernel stack, which overflowed it in
//! testing. Instead the driver allocates zeroed memory with
//! `KBox::init(kernel::init::zeroed())` and initialises it in place with
//! `Engine::reset`, which needs `Engine: Zeroable`.
//!
//! aether-core is kernel-agnostic and unsafe-free, so it cannot claim
//! `Zeroable` itself. [`zeroable_by_fields!`] does it here, for each type with
//! its complete field list, checked at compile time: every listed field type
//! must be `Zeroable`, and the list must be exactly the type's fields, in
//! order. For types with public fields the check destructures the value with
//! no `..`; for types with private fields it matches the tuple that
//! aether-core's `fields()` returns, which itself destructures with no `..`.
//! Adding, removing, retyping or reordering a field of any type below
//! therefore fails the build until the list here is updated.

use crate::aether_core::depth::{Aimd, LatencyHistogram, P99Guard, HIST_BUCKETS};
use crate::aether_core::engine::Stats;
use crate::aether_core::gate::{Gate, GateEval, N_OBS};
use crate::aether_core::param::Params;
use crate::aether_core::stream::{Stream, StreamTable, HIST, PRED_BUCKETS, REGION_BUCKETS, REGION_WAYS, STREAM_SLOTS};
use crate::aether_core::Engine;
use kernel::init::Zeroable;

/// Implements `Zeroable` for plain-data types after checking their fields.
///
/// - `Type => fields(A, B, ..)`: `Type::fields(&self)` must return `(&A, &B, ..)`.
/// - `Type { a: A, b: B, .. }`: the public fields, all of them, in order.
macro_rules! zeroable_by_fields {
    (@check $t:ident, [$($f:ty),*], $x:ident => $body:expr) => {
        const _: () = {
            const fn assert_zeroable<T: Zeroable>() {}
            $(assert_zeroable::<$f>();)*
            // Compiles only if the field list is the type's, in order.
            #[allow(dead_code)]
            fn same_fields($x: &$t) -> ($(&$f,)*) {
                $body
            }
        };
        // SAFETY: Every field of `$t` is listed above (the destructuring has no
        // `..`) with its type, and every field type is `Zeroable` (both checked
        // at compile time just above). A struct whose fields are all valid at
        // all-zero bytes is valid at all-zero bytes; padding may be anything.
        unsafe impl Zeroable for $t {}
    };
    ($($t:ident $( => fields($($pf:ty),* $(,)?) )? $( { $($field:ident : $ff:ty),* $(,)? } )?;)*) => {
        $(
            $(zeroable_by_fields!(@check $t, [$($pf),*], x => x.fields());)?
            $(zeroable_by_fields!(@check $t, [$($ff),*], x => { let $t { $($field),* } = x; ($($field,)*) });)?
        )*
    };
}

zeroable_by_fields! {
    Engine => fields(Gate, StreamTable, P99Guard, u64, Stats, u64, u32);
    Gate => fields(Params, i32, u16, [i32; N_OBS], u32, u32, u64, u64);
    StreamTable => fields(
        [Stream; STREAM_SLOTS], [u8; PRED_BUCKETS], [[u8; REGION_WAYS]; REGION_BUCKETS],
        [[u32; REGION_WAYS]; REGION_BUCKETS], [u8; STREAM_SLOTS],
        [u8; STREAM_SLOTS], [u64; STREAM_SLOTS], [u64; STREAM_SLOTS], u8, u8, u64, u32, u32
    );
    P99Guard => fields(LatencyHistogram, u64, u64, u32, u32);
    LatencyHistogram => fields([u32; HIST_BUCKETS], u32);
    Aimd => fields(u32, u32, u32);
    Params { phi: i32, epsilon: i32, lambda1: i32, lambda2: i32, lambda3: i32, bias: i32, learning_rate: i32 };
    Stats {
        reads: u64, writes: u64, new_streams: u64, gate_fired: u64, prefetches: u64, extents: u64,
        sectors: u64, timely: u64, late: u64, wasted: u64, phi: i32, epsilon_eff: u32, waste_fraction: u32,
        depth_cap: u32, p99_ns: u64, p99_baseline_ns: u64, stale_feedback: u64, guard_trips: u32,
    };
    GateEval { theta: [u16; N_OBS], z: i32, p: u32, fire: bool };
    Stream {
        valid: bool, gen: u32, last: u64, size: u32, nreq: u32, delta: i64, velocity: i64, mean_q8: i64,
        var_q16: i64, hist: [i32; HIST], hist_pos: u8, hist_len: u8, stride: i64, share: u8, run: u8,
        steady: bool, ahead: u32, win_cap: u32, aimd: Aimd, last_eval: GateEval, memo_q: [u32; 3],
        memo_eval: GateEval, memo_epoch: u64, memo_steady: bool, stamp: u64, last_ns: u64, stride_nreq: u32,
        prior_q16: u32, young_sample: u32, seq_sample: u8, gap_ns: u64, mark_ns: u64, mark_nreq: u32, need_cap: u32,
    };
}
