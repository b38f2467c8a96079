// SPDX-License-Identifier: GPL-2.0

//! KUnit suites written in Rust, for 6.12, which lacks `#[kunit_tests]`.
//!
//! Built into `aether_test.ko` only (`cfg(aether_kunit)`, see Kbuild).
//!
//! [`kunit_suite!`] has the shape of upstream's `kunit_unsafe_test_suite!` plus
//! `kunit_case` (6.15), but expands to safe code: it declares a [`Suite`], and
//! [`kunit_suites!`] lists the suites for the `.kunit_test_suites` entry that
//! `entry.rs` emits. Each suite then runs when the module loads and its KTAP
//! goes to the kernel log and to `/sys/kernel/debug/kunit/<suite>/results`.
//! Test cases are plain safe `fn()`s that use [`kunit_expect!`] and
//! [`kunit_expect_eq!`].

use core::cell::UnsafeCell;
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

/// A suite's case table, NULL-terminated. KUnit writes each case's status and
/// log into it, so it sits in an `UnsafeCell`; Rust code never touches it.
pub(crate) struct Cases<const N: usize>(UnsafeCell<[KunitCase; N]>);

// SAFETY: The table is accessed only by KUnit, through the pointer in its
// suite, which runs one suite's cases at a time (under `kunit_run_lock`).
unsafe impl<const N: usize> Sync for Cases<N> {}

impl<const N: usize> Cases<N> {
    /// `cases` must end with [`kunit_case_null`]; the build fails otherwise.
    pub(crate) const fn new(cases: [KunitCase; N]) -> Self {
        assert!(N > 0 && cases[N - 1].run_case.is_none(), "KUnit case table must end with kunit_case_null()");
        Self(UnsafeCell::new(cases))
    }
}

/// A KUnit suite with no init/exit hooks, handed to KUnit through the
/// `.kunit_test_suites` section (see `entry.rs`). KUnit writes its status and
/// debugfs state into it.
pub(crate) struct Suite(UnsafeCell<KunitSuite>);

// SAFETY: As for `Cases`: only KUnit accesses the suite, one run at a time.
unsafe impl Sync for Suite {}

impl Suite {
    /// A suite named `name` running the cases of `cases`.
    pub(crate) const fn new<const N: usize>(name: [kernel::ffi::c_char; 256], cases: &'static Cases<N>) -> Self {
        Self(UnsafeCell::new(KunitSuite {
            name,
            suite_init: None,
            suite_exit: None,
            init: None,
            exit: None,
            test_cases: cases.0.get().cast::<KunitCase>(),
            attr: bindings::kunit_attributes { speed: bindings::kunit_speed_KUNIT_SPEED_NORMAL },
            status_comment: [0; 256],
            debugfs: core::ptr::null_mut(),
            log: core::ptr::null_mut(),
            suite_init_err: 0,
            is_init: false,
        }))
    }
}

/// One entry of the `.kunit_test_suites` array the module loader collects: a
/// `struct kunit_suite *`.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct SuiteEntry(*const KunitSuite);

// SAFETY: The pointer is only read by the module loader and KUnit.
unsafe impl Sync for SuiteEntry {}

/// The section entries for `suites`.
pub(crate) const fn entries<const N: usize>(suites: &[&'static Suite; N]) -> [SuiteEntry; N] {
    let mut out = [SuiteEntry(core::ptr::null()); N];
    let mut i = 0;
    while i < N {
        out[i] = SuiteEntry(suites[i].0.get().cast_const());
        i += 1;
    }
    out
}

/// Declares a KUnit suite `$suite` whose cases are the safe `fn()`s listed, which
/// must be in scope where the macro is invoked. Expands to safe code only; list
/// the suite in [`kunit_suites!`] so that it runs.
///
/// ```ignore
/// kunit_suite!(aether_example, [adds_up, rejects_garbage]);
/// ```
macro_rules! kunit_suite {
    ($suite:ident, [$($case:ident),+ $(,)?]) => {
        #[allow(non_snake_case)]
        pub(crate) mod $suite {
            use $crate::kernel_ext::kunit::{kunit, kunit_case, kunit_case_null, suite_name, Cases, Suite};

            $(
                /// KUnit entry point: runs the safe test function of the same name.
                extern "C" fn $case(_test: *mut kunit) {
                    super::$case();
                }
            )+

            const N_CASES: usize = [$(stringify!($case)),+].len();

            static CASES: Cases<{ N_CASES + 1 }> = Cases::new([
                $(kunit_case(kernel::c_str!(stringify!($case)), $case),)+
                kunit_case_null(),
            ]);

            /// The suite, for [`kunit_suites!`].
            pub(crate) static SUITE: Suite = Suite::new(suite_name(stringify!($suite)), &CASES);
        }
    };
}
pub(crate) use kunit_suite;

/// Lists the module's suites (each declared with [`kunit_suite!`]) as `SUITES`,
/// which `entry.rs` puts in the `.kunit_test_suites` section: the module loader
/// collects it and KUnit runs the suites once the module is live.
macro_rules! kunit_suites {
    ($($suite:ident),+ $(,)?) => {
        /// How many suites [`SUITES`] holds.
        pub(crate) const SUITE_COUNT: usize = [$(stringify!($suite)),+].len();
        /// Every suite of the module.
        pub(crate) static SUITES: [&$crate::kernel_ext::kunit::Suite; SUITE_COUNT] = [$(&$suite::SUITE),+];
    };
}
pub(crate) use kunit_suites;

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
