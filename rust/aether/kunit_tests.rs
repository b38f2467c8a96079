// SPDX-License-Identifier: GPL-2.0

//! KUnit suites built into aether.ko. They run in the kernel when the module
//! loads (`make test` boots QEMU for that) and report KTAP.

use crate::kernel_ext::debugfs::Dir;
use crate::kernel_ext::kunit::{kunit_assert, kunit_suite};
use kernel::c_str;

/// A directory appears, nests, and is gone once its handles are dropped: creating
/// the same name again only succeeds if the first one was removed.
fn debugfs_dir_lifecycle() {
    let root = Dir::new(c_str!("aether-kunit"));
    kunit_assert!(root.is_present());
    let child = root.subdir(c_str!("child"));
    kunit_assert!(child.is_present());
    // A second directory of the same name in the same parent is refused (-EEXIST).
    kunit_assert!(!root.subdir(c_str!("child")).is_present());
    drop(root);
    // The child keeps its parent alive.
    kunit_assert!(!Dir::new(c_str!("aether-kunit")).is_present());
    drop(child);
    kunit_assert!(Dir::new(c_str!("aether-kunit")).is_present());
}

/// An absent parent yields absent children rather than entries in the root.
fn debugfs_absent_parent() {
    let first = Dir::new(c_str!("aether-kunit-dup"));
    let dup = Dir::new(c_str!("aether-kunit-dup"));
    kunit_assert!(first.is_present());
    kunit_assert!(!dup.is_present());
    kunit_assert!(!dup.subdir(c_str!("x")).is_present());
}

kunit_suite!(aether_kernel_ext, [debugfs_dir_lifecycle, debugfs_absent_parent]);
