// SPDX-License-Identifier: GPL-2.0

//! KUnit suites written in Rust, for 6.12, which lacks `#[kunit_tests]`.
//!
//! [`kunit_suite!`] has the shape of upstream's `kunit_unsafe_test_suite!` plus
//! `kunit_case` (6.15): it emits a `kunit_suite` in `.kunit_test_suites`, so the
//! suite runs when the module loads and its KTAP goes to the kernel log and to
//! `/sys/kernel/debug/kunit/<suite>/results`. Test cases are plain safe `fn()`s
//! that use [`kunit_expect!`] and [`kunit_expect_eq!`].

use kernel::bindings;
use kernel::str::CStr;

pub(crate) use kernel::bindings::{kunit, kunit_case as KunitCase, kunit_suite as KunitSuite};

/// A test case entry for a suite's NULL-terminated case table.
pub(crate) const fn kunit_case(name: &'static CStr, run_case: extern "C" fn(*mut kunit)) -> KunitCase {
    KunitCase {
        run_case: Some(run_case as unsafe extern "C" fn(*mut kunit)),
        name: name.as_char_ptr(),
        generate_params: None,
        attr: bindings::kunit_attributes { speed: bindings::kunit_speed_KUNIT_SPEED_NORMAL },
        status: bindings::kunit_status_KUNIT_SUCCESS,
        module_name: core::ptr::null_mut(),
        log: core::ptr::null_mut(),
    }
}

/// The terminating entry of a case table.
pub(crate) const fn kunit_case_null() -> KunitCase {
    KunitCase {
        run_case: None,
        name: core::ptr::null(),
        generate_params: None,
        attr: bindings::kunit_attributes { speed: bindings::kunit_speed_KUNIT_SPEED_NORMAL },
        status: bindings::kunit_status_KUNIT_SUCCESS,
        module_name: core::ptr::null_mut(),
        log: core::ptr::null_mut(),
    }
}

/// A suite's name as the fixed-size array `struct kunit_suite` stores; fails
/// the build if the name does not fit.
pub(crate) const fn suite_name(name: &str) -> [kernel::ffi::c_char; 256] {
    let bytes = name.as_bytes();
    let mut out = [0 as kernel::ffi::c_char; 256];
    assert!(bytes.len() < 256, "KUnit suite name too long");
    let mut i = 0;
    while i < bytes.len() {
        out[i] = bytes[i] as kernel::ffi::c_char;
        i += 1;
    }
    out
}

/// A suite with no init/exit hooks.
pub(crate) const fn suite(name: [kernel::ffi::c_char; 256], cases: *mut KunitCase) -> KunitSuite {
    KunitSuite {
        name,
        suite_init: None,
        suite_exit: None,
        init: None,
        exit: None,
        test_cases: cases,
        attr: bindings::kunit_attributes { speed: bindings::kunit_speed_KUNIT_SPEED_NORMAL },
        status_comment: [0; 256],
        debugfs: core::ptr::null_mut(),
        log: core::ptr::null_mut(),
        suite_init_err: 0,
        is_init: false,
    }
}

/// Declares a KUnit suite `$suite` whose cases are the safe `fn()`s listed, which
/// must be in scope where the macro is invoked.
///
/// ```ignore
/// kunit_suite!(aether_example, [adds_up, rejects_garbage]);
/// ```
macro_rules! kunit_suite {
    ($suite:ident, [$($case:ident),+ $(,)?]) => {
        #[allow(non_snake_case)]
        mod $suite {
            use $crate::kernel_ext::kunit::{kunit, kunit_case, kunit_case_null, suite,
                                            suite_name, KunitCase, KunitSuite};

            $(
                /// KUnit entry point: runs the safe test function of the same name.
                extern "C" fn $case(_test: *mut kunit) {
                    super::$case();
                }
            )+

            const N_CASES: usize = [$(stringify!($case)),+].len();

            // KUnit writes per-case status into this table, so it must be mutable.
            static mut CASES: [KunitCase; N_CASES + 1] = [
                $(kunit_case(kernel::c_str!(stringify!($case)), $case),)+
                kunit_case_null(),
            ];

            static mut SUITE: KunitSuite = suite(
                suite_name(stringify!($suite)),
                core::ptr::addr_of_mut!(CASES).cast::<KunitCase>(),
            );

            /// The module loader collects this section and runs the suite after init.
            #[used]
            #[link_section = ".kunit_test_suites"]
            static mut SUITE_ENTRY: *const KunitSuite = core::ptr::addr_of_mut!(SUITE);
        }
    };
}
pub(crate) use kunit_suite;

/// Reports a failed expectation to the running KUnit case without stopping it.
///
/// Upstream's `kunit_assert!` aborts the case (`kthread_exit`), which skips
/// destructors: a test holding debugfs files would leak them, still pointing at
/// this module's fops after `rmmod`. Expectations let the case run to its end.
pub(crate) fn expectation_failed(file: &'static CStr, line: u32, condition: &'static CStr) {
    // SAFETY: Returns the running test or null; no preconditions.
    let test = unsafe { bindings::kunit_get_current_test() };
    if test.is_null() {
        kernel::pr_err!("expectation failed outside a KUnit test: {}:{}\n", file.to_str().unwrap_or("?"), line);
        return;
    }
    let loc = bindings::kunit_loc { file: file.as_char_ptr(), line: line as i32 };
    let assert = bindings::kunit_unary_assert {
        assert: bindings::kunit_assert {},
        condition: condition.as_char_ptr(),
        expected_true: true,
    };
    // SAFETY: `test` is the running test (non-null); `loc` and `assert` outlive
    // the call, which formats them immediately; the strings are NUL-terminated
    // and static; a null format means no extra message.
    unsafe {
        bindings::__kunit_do_failed_assertion(
            test,
            &loc,
            bindings::kunit_assert_type_KUNIT_EXPECTATION,
            &assert.assert,
            Some(bindings::kunit_unary_assert_format),
            core::ptr::null(),
        );
    }
}

/// Marks the running KUnit case failed unless `$cond` holds, and carries on.
macro_rules! kunit_expect {
    ($cond:expr $(,)?) => {
        if !$cond {
            $crate::kernel_ext::kunit::expectation_failed(
                kernel::c_str!(file!()),
                line!(),
                kernel::c_str!(stringify!($cond)),
            );
        }
    };
}
pub(crate) use kunit_expect;

/// Marks the running KUnit case failed unless `$left == $right`, and carries on.
macro_rules! kunit_expect_eq {
    ($left:expr, $right:expr $(,)?) => {
        $crate::kernel_ext::kunit::kunit_expect!($left == $right)
    };
}
pub(crate) use kunit_expect_eq;
