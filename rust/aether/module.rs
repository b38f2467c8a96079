// SPDX-License-Identifier: GPL-2.0

//! Module load and unload: owns everything that lives as long as aether.ko.

use crate::kernel_ext::debugfs::Dir;
use kernel::{c_str, prelude::*};

/// State that lives from `insmod` to `rmmod`.
pub(crate) struct AetherModule {
    /// `/sys/kernel/debug/aether/`; per-device directories hang below it.
    _debugfs_root: Dir,
}

impl kernel::Module for AetherModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let debugfs_root = Dir::new(c_str!("aether"));
        pr_info!("aether: loaded (debugfs: {})\n", if debugfs_root.is_present() { "yes" } else { "no" });
        Ok(Self { _debugfs_root: debugfs_root })
    }
}

impl Drop for AetherModule {
    fn drop(&mut self) {
        pr_info!("aether: unloaded\n");
    }
}
