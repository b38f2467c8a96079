// SPDX-License-Identifier: GPL-2.0

//! `/sys/kernel/debug/aether/<dm-name>/`: a device's tunables and telemetry.
//!
//! Writable: `phi`, `epsilon`, `lambda1..3`, `bias`, `learning_rate`, `enabled`.
//! Read-only: `stats` (`key: value` per line) and `latency_histogram`.
//! A write takes one whole value; anything refused returns an errno, logs one
//! line, and changes nothing.

use crate::aether_core::ParamId;
use crate::kernel_ext::debugfs::{Dir, File, FileOps};
use crate::kernel_ext::print::ratelimit;
use crate::tuning::{self, DeviceTuning, Tunable};
use core::fmt::Write;
use kernel::{prelude::*, str::CStr, sync::Arc};

/// A tunable as a file.
struct TunableFile<D> {
    dev: Arc<D>,
    tunable: Tunable,
}

impl<D: DeviceTuning> FileOps for TunableFile<D> {
    fn show(&self, out: &mut dyn Write) -> core::fmt::Result {
        self.dev.get(self.tunable, out)?;
        out.write_str("\n")
    }

    fn store(&self, input: &[u8]) -> Result {
        let name = self.tunable.name();
        let result = tuning::input_str(input).and_then(|value| self.dev.set(name, value));
        result.map_err(|e| {
            if ratelimit() {
                pr_err!("debugfs {}: write refused: {}\n", name, e.as_str());
            }
            e.errno()
        })
    }
}

/// `stats`: every counter, `key: value` per line.
struct StatsFile<D>(Arc<D>);

impl<D: DeviceTuning> FileOps for StatsFile<D> {
    fn show(&self, out: &mut dyn Write) -> core::fmt::Result {
        self.0.write_stats(out, ": ", "\n")
    }
}

/// `latency_histogram`: log2 buckets of read and write completion latency.
struct HistogramFile<D>(Arc<D>);

impl<D: DeviceTuning> FileOps for HistogramFile<D> {
    fn show(&self, out: &mut dyn Write) -> core::fmt::Result {
        self.0.write_histograms(out)
    }
}

/// A device's directory and files; all removed on drop.
pub(crate) struct DeviceFiles {
    // Files first: they go before their directory.
    _files: KVec<File>,
    _dir: Dir,
}

impl DeviceFiles {
    /// Creates `root/name/` with every file of `dev`.
    pub(crate) fn new<D: DeviceTuning + 'static>(root: &Dir, name: &CStr, dev: Arc<D>) -> Result<Self> {
        let dir = root.subdir(name);
        let mut files = KVec::new();
        for id in ParamId::ALL {
            let ops = TunableFile { dev: dev.clone(), tunable: Tunable::Gate(id) };
            files.push(dir.file(param_cstr(id), true, ops)?, GFP_KERNEL)?;
        }
        let enabled = TunableFile { dev: dev.clone(), tunable: Tunable::Enabled };
        files.push(dir.file(kernel::c_str!("enabled"), true, enabled)?, GFP_KERNEL)?;
        let cache_mb = TunableFile { dev: dev.clone(), tunable: Tunable::CacheMb };
        files.push(dir.file(kernel::c_str!("cache_mb"), true, cache_mb)?, GFP_KERNEL)?;
        files.push(dir.file(kernel::c_str!("stats"), false, StatsFile(dev.clone()))?, GFP_KERNEL)?;
        files.push(dir.file(kernel::c_str!("latency_histogram"), false, HistogramFile(dev))?, GFP_KERNEL)?;
        Ok(Self { _files: files, _dir: dir })
    }

    /// No directory (the device has no name yet).
    pub(crate) fn absent() -> Self {
        Self { _files: KVec::new(), _dir: Dir::absent() }
    }

    /// Renames the directory (the device was renamed).
    pub(crate) fn rename(&self, name: &CStr) -> Result {
        self._dir.rename(name)
    }

    /// Whether the directory exists in debugfs.
    pub(crate) fn is_present(&self) -> bool {
        self._dir.is_present()
    }
}

/// A parameter's name as a C string for debugfs.
fn param_cstr(id: ParamId) -> &'static CStr {
    match id {
        ParamId::Phi => kernel::c_str!("phi"),
        ParamId::Epsilon => kernel::c_str!("epsilon"),
        ParamId::Lambda1 => kernel::c_str!("lambda1"),
        ParamId::Lambda2 => kernel::c_str!("lambda2"),
        ParamId::Lambda3 => kernel::c_str!("lambda3"),
        ParamId::Bias => kernel::c_str!("bias"),
        ParamId::LearningRate => kernel::c_str!("learning_rate"),
    }
}
