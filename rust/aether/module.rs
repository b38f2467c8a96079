// SPDX-License-Identifier: GPL-2.0

//! Module load and unload: registers the `aether` target type and owns
//! `/sys/kernel/debug/aether/`. In `aether_test.ko` both are named
//! `aether_test`, so the two modules can be loaded side by side.

use crate::kernel_ext::debugfs::Dir;
use crate::kernel_ext::dm::Registration;
use crate::devices::Registry;
use crate::target::AetherTarget;
use kernel::{c_str, prelude::*, str::CStr};

/// Target version reported by `dmsetup targets`.
const TARGET_VERSION: [u32; 3] = [0, 1, 0];

/// The target type's name, which is also the debugfs root's.
#[cfg(not(aether_kunit))]
const NAME: &CStr = c_str!("aether");
#[cfg(aether_kunit)]
const NAME: &CStr = c_str!("aether_test");

/// State that lives from `insmod` to `rmmod`. device-mapper holds a module
/// reference for every live `aether` table, so `rmmod` is refused (EBUSY)
/// while any device exists.
pub(crate) struct AetherModule {
    _registration: Pin<KBox<Registration<AetherTarget>>>,
}

impl kernel::Module for AetherModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let registry = Registry::new(Dir::new(NAME))?;
        let registration = KBox::pin_init(Registration::new(NAME, TARGET_VERSION, module, registry), GFP_KERNEL)
            .inspect_err(|e| pr_err!("cannot register the device-mapper target: error {}\n", e.to_errno()))?;
        pr_info!("target registered (version {}.{}.{})\n", TARGET_VERSION[0], TARGET_VERSION[1], TARGET_VERSION[2]);
        Ok(Self { _registration: registration })
    }
}

impl Drop for AetherModule {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}
