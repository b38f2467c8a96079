// SPDX-License-Identifier: GPL-2.0

//! Module parameters (`/sys/module/aether/parameters/`): the gate parameters
//! and `enabled` that newly created devices start with. Values go through the
//! same parser as debugfs and `dmsetup message`; a refused value changes
//! nothing and logs one line.

use crate::kernel_ext::moduleparam::{module_param_handler, ParamHandler};
use crate::kernel_ext::print::ratelimit;
use crate::tuning::{self, Tunable, DEFAULTS};
use kernel::prelude::*;

/// Dispatches the C shim's `module_param_cb()` parameters to [`DEFAULTS`].
pub(crate) struct ModuleParams;

impl ParamHandler for ModuleParams {
    fn set(name: &str, value: &[u8]) -> Result {
        tuning::input_str(value).and_then(|v| DEFAULTS.set(name, v)).map_err(|e| {
            if ratelimit() {
                pr_err!("module parameter {}: refused: {}\n", name, e.as_str());
            }
            e.errno()
        })
    }

    fn get(name: &str, out: &mut dyn core::fmt::Write) -> Result {
        let t = Tunable::from_name(name).ok_or(EINVAL)?;
        tuning::show(&DEFAULTS.load(), t, out).map_err(|_| EINVAL)
    }
}

module_param_handler!(ModuleParams);
