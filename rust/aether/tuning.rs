// SPDX-License-Identifier: GPL-2.0

//! Tuning: one path from text to parameters for every interface.
//!
//! debugfs files, `dmsetup message`, table arguments and module parameters all
//! end up in [`apply`], which uses aether-core's parser, so the same input is
//! accepted or refused the same way everywhere, and a refused input changes
//! nothing.

use crate::aether_core::{ParamError, ParamId, Params};
use crate::kernel_ext::print::ratelimit;
use core::sync::atomic::{AtomicI32, AtomicU32, Ordering::Relaxed};
use kernel::prelude::*;

/// A tunable of a device: one of the gate's parameters, `enabled`, or the
/// prefetch cache's budget `cache_mb`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tunable {
    Gate(ParamId),
    Enabled,
    CacheMb,
}

impl Tunable {
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name {
            "enabled" => Some(Tunable::Enabled),
            "cache_mb" => Some(Tunable::CacheMb),
            _ => ParamId::from_name(name).map(Tunable::Gate),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Tunable::Gate(id) => id.name(),
            Tunable::Enabled => "enabled",
            Tunable::CacheMb => "cache_mb",
        }
    }
}

/// Everything a device can be tuned with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) params: Params,
    /// Whether reads go through the gate (and prefetch).
    pub(crate) enabled: bool,
    /// The prefetch cache's budget, MiB.
    pub(crate) cache_mb: u32,
}

/// Default prefetch cache budget per device, MiB.
pub(crate) const CACHE_MB_DEFAULT: u32 = 64;

/// Largest budget accepted: half of RAM (a cache the machine cannot hold
/// would only be shrunk away), and at most 1 TiB.
pub(crate) fn cache_mb_max() -> u32 {
    let half_ram_mb = crate::kernel_ext::page::total_ram_bytes() / 2 / (1 << 20);
    half_ram_mb.min(1 << 20) as u32
}

/// Why a tuning input was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum TuneError {
    UnknownName,
    Value(ParamError),
    NotBool,
    /// A `cache_mb` over [`cache_mb_max`].
    CacheTooBig,
    /// Growing the cache found no memory.
    NoMemory,
    /// The device has no live table (it is going away).
    Gone,
    /// The debugfs directory names a device that was renamed since.
    Renamed,
}

impl TuneError {
    /// Every refused input is `EINVAL`, as sysfs and debugfs users expect;
    /// the dmesg line says which rule it broke.
    pub(crate) fn errno(self) -> Error {
        match self {
            TuneError::Gone => ENODEV,
            TuneError::NoMemory => ENOMEM,
            TuneError::Renamed => Error::from_errno(-(kernel::bindings::ESTALE as i32)),
            _ => EINVAL,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TuneError::UnknownName => "unknown parameter",
            TuneError::Value(e) => e.as_str(),
            TuneError::NotBool => "expected 0 or 1",
            TuneError::CacheTooBig => "cache_mb is more than half of RAM",
            TuneError::NoMemory => "no memory for a cache that large",
            TuneError::Gone => "device has no live table",
            TuneError::Renamed => "the device was renamed; this directory is stale",
        }
    }
}

/// Text as written by a user: UTF-8 with at most one trailing newline (from
/// `echo`); any other byte outside the value is an error for the parser.
pub(crate) fn input_str(raw: &[u8]) -> Result<&str, TuneError> {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    core::str::from_utf8(raw).map_err(|_| TuneError::Value(ParamError::Invalid))
}

/// Parses `enabled`'s value.
pub(crate) fn parse_bool(s: &str) -> Result<bool, TuneError> {
    match s {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(TuneError::NotBool),
    }
}

/// Parses `cache_mb`'s value: a whole number of MiB up to [`cache_mb_max`].
pub(crate) fn parse_cache_mb(s: &str) -> Result<u32, TuneError> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TuneError::Value(ParamError::Invalid));
    }
    let mb: u64 = s.parse().map_err(|_| TuneError::Value(ParamError::Invalid))?;
    if mb > u64::from(cache_mb_max()) {
        return Err(TuneError::CacheTooBig);
    }
    Ok(mb as u32)
}

/// Sets `name` to `value` in `cfg`, or changes nothing.
pub(crate) fn apply(cfg: &mut Settings, name: &str, value: &str) -> Result<(), TuneError> {
    match Tunable::from_name(name).ok_or(TuneError::UnknownName)? {
        Tunable::Enabled => {
            cfg.enabled = parse_bool(value)?;
            Ok(())
        }
        Tunable::CacheMb => {
            cfg.cache_mb = parse_cache_mb(value)?;
            Ok(())
        }
        Tunable::Gate(_) => {
            // Parse into a copy so a refused value leaves `params` untouched.
            let mut next = cfg.params;
            next.set(name, value).map_err(TuneError::Value)?;
            cfg.params = next;
            Ok(())
        }
    }
}

/// Writes the current value of `t`.
pub(crate) fn show(cfg: &Settings, t: Tunable, w: &mut dyn core::fmt::Write) -> core::fmt::Result {
    match t {
        Tunable::Enabled => write!(w, "{}", u8::from(cfg.enabled)),
        Tunable::CacheMb => write!(w, "{}", cfg.cache_mb),
        Tunable::Gate(id) => write_q16(cfg.params.get_q16(id), w),
    }
}

/// Writes a Q16.16 value as the decimal the parser reads back exactly.
pub(crate) fn write_q16(v: i32, w: &mut dyn core::fmt::Write) -> core::fmt::Result {
    crate::aether_core::format_q16(v, &mut FmtAdapter(w))
}

/// Lets the core's generic formatter write into a `dyn Write`.
struct FmtAdapter<'a>(&'a mut dyn core::fmt::Write);

impl core::fmt::Write for FmtAdapter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.write_str(s)
    }
}

/// What the tuning interfaces (debugfs files, `dmsetup message`) need from a
/// device. The `aether` target implements it; KUnit suites use a stand-in to
/// drive the same files and message handler without a device-mapper table.
pub(crate) trait DeviceTuning: Send + Sync {
    /// Sets a tunable from text; refused input changes nothing.
    fn set(&self, name: &str, value: &str) -> Result<(), TuneError>;
    /// Writes a tunable's current value.
    fn get(&self, t: Tunable, w: &mut dyn core::fmt::Write) -> core::fmt::Result;
    /// Writes every counter as `key<sep>value<end>`.
    fn write_stats(&self, w: &mut dyn core::fmt::Write, sep: &str, end: &str) -> core::fmt::Result;
    /// Writes the latency histograms.
    fn write_histograms(&self, w: &mut dyn core::fmt::Write) -> core::fmt::Result;
    /// Zeroes the counters.
    fn reset_stats(&self);
    /// Forgets every cached block.
    fn drop_cache(&self) {}
}

/// Handles `dmsetup message <dev> 0 <args...>`: `set <param> <value>`,
/// `get <param>` (the value goes to `out`), `reset_stats` and `drop_cache`.
/// A refused message logs one line and changes nothing.
pub(crate) fn message(dev: &dyn DeviceTuning, args: &[&str], out: &mut dyn core::fmt::Write) -> Result {
    let word = |i: usize| args.get(i).copied().unwrap_or("");
    let refuse = |why: &str, e: Error| -> Result {
        if ratelimit() {
            pr_err!("message '{} {} {}' refused: {}\n", word(0), word(1), word(2), why);
        }
        Err(e)
    };
    match (word(0), args.len()) {
        ("set", 3) => match dev.set(word(1), word(2)) {
            Ok(()) => Ok(()),
            Err(e) => refuse(e.as_str(), e.errno()),
        },
        ("get", 2) => match Tunable::from_name(word(1)) {
            Some(t) => dev.get(t, out).map_err(|_| EINVAL),
            None => refuse("unknown parameter", EINVAL),
        },
        ("reset_stats", 1) => {
            dev.reset_stats();
            Ok(())
        }
        ("drop_cache", 1) => {
            dev.drop_cache();
            Ok(())
        }
        _ => refuse("usage: set <param> <value> | get <param> | reset_stats | drop_cache", EINVAL),
    }
}

/// Module-wide defaults for new devices (`/sys/module/aether/parameters/`),
/// stored as the core's fixed-point values.
pub(crate) struct Defaults {
    values: [AtomicI32; ParamId::ALL.len()],
    enabled: AtomicI32,
    cache_mb: AtomicU32,
}

pub(crate) static DEFAULTS: Defaults = Defaults::new();

impl Defaults {
    pub(crate) const fn new() -> Self {
        let d = Params::DEFAULT;
        Self {
            values: [
                AtomicI32::new(d.phi),
                AtomicI32::new(d.epsilon),
                AtomicI32::new(d.lambda1),
                AtomicI32::new(d.lambda2),
                AtomicI32::new(d.lambda3),
                AtomicI32::new(d.bias),
                AtomicI32::new(d.learning_rate),
            ],
            enabled: AtomicI32::new(1),
            cache_mb: AtomicU32::new(CACHE_MB_DEFAULT),
        }
    }

    /// The defaults a new device starts with.
    pub(crate) fn load(&self) -> Settings {
        let mut params = Params::DEFAULT;
        for (id, v) in ParamId::ALL.iter().zip(self.values.iter()) {
            // Stored values were validated when set, so this cannot fail.
            let _ = params.set_q16(*id, v.load(Relaxed));
        }
        Settings { params, enabled: self.enabled.load(Relaxed) != 0, cache_mb: self.cache_mb.load(Relaxed) }
    }

    /// Sets one default through the same parser as everything else.
    pub(crate) fn set(&self, name: &str, value: &str) -> Result<(), TuneError> {
        let mut cfg = self.load();
        apply(&mut cfg, name, value)?;
        for (id, v) in ParamId::ALL.iter().zip(self.values.iter()) {
            v.store(cfg.params.get_q16(*id), Relaxed);
        }
        self.enabled.store(i32::from(cfg.enabled), Relaxed);
        self.cache_mb.store(cfg.cache_mb, Relaxed);
        Ok(())
    }
}
