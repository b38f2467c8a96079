//! aether-core: the adaptive prefetch gate of aether.
//!
//! `no_std`, no allocation, no floating point, no `unsafe`, no panics
//! outside tests.  The same source files are compiled into the Linux kernel
//! module (as a submodule, via `#[path]`), so sibling modules are always
//! referred to through `super::`.
//!
//! Entry point: [`Engine`] (see [`engine`] for the per-bio protocol).
//! The mathematics, fixed-point formats and defaults are documented in
//! `Documentation/algorithm.rst`.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod cache;
pub mod depth;
pub mod engine;
pub mod fixed;
pub mod gate;
pub mod param;
pub mod stream;

pub use engine::{Decision, Engine, Outcome, Stats, StreamId, MAX_WINDOW_SECTORS};
pub use param::{format_q16, parse_q16, FixedBuf, ParamError, ParamId, Params, PARAM_NAMES};
