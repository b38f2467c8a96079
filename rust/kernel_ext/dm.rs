// SPDX-License-Identifier: GPL-2.0

//! device-mapper targets.
//!
//! A target implements [`TargetOperations`]; [`Registration`] builds the C
//! `struct target_type` from it (the same shape as `kernel::block::mq`'s
//! `OperationsVTable`) and registers it for as long as the registration lives.
//! The trampolines here are the only code that sees raw `dm_target` pointers.

use super::bindings;
use super::bio::Bio;
use kernel::ffi::{c_char, c_int, c_uint, c_void};
use core::marker::PhantomData;
use kernel::{
    error::{to_result, Error},
    init::PinInit,
    prelude::*,
    str::CStr,
    types::{ForeignOwnable, Opaque},
    ThisModule,
};

/// What a target's `map` did with a bio.
pub(crate) enum MapResult {
    /// The bio was remapped; device-mapper submits it (`DM_MAPIO_REMAPPED`).
    Remapped,
    /// The target served the bio itself: the layer ends it with this status
    /// once `map` has returned (and the per-bio data is complete), then
    /// reports `DM_MAPIO_SUBMITTED`. `end_io` still runs for it.
    Complete(BlkStatus),
    /// Fail the bio with an I/O error (`DM_MAPIO_KILL`).
    #[allow(dead_code)] // Layer API; aether itself never fails a bio.
    Kill,
    /// Give the bio back to device-mapper to map again later
    /// (`DM_MAPIO_REQUEUE`).
    #[allow(dead_code)] // Layer API; aether never needs to requeue.
    Requeue,
}

/// Which `dmsetup` view a status call is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusType {
    /// `dmsetup status`.
    Info,
    /// `dmsetup table`: the constructor arguments.
    Table,
    /// The IMA measurement record.
    Ima,
}

/// Completion status of a bio, as the block layer reports it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlkStatus(u8);

impl BlkStatus {
    /// Success (`BLK_STS_OK`).
    pub(crate) const OK: Self = Self(0);

    pub(crate) fn is_ok(self) -> bool {
        self.0 == 0
    }

    pub(super) fn from_raw(v: u8) -> Self {
        Self(v)
    }

    pub(super) fn raw(self) -> u8 {
        self.0
    }
}

/// The target instance being constructed or running: one table line.
///
/// # Invariants
///
/// `ptr` points to the `dm_target` device-mapper passed to the current callback;
/// it is valid for the callback's duration and, for fields device-mapper leaves
/// to the target, writable during `ctr`.
pub(crate) struct Target {
    ptr: *mut bindings::dm_target,
}

impl Target {
    /// Start of this line in the mapped device, in sectors.
    pub(crate) fn begin(&self) -> u64 {
        // SAFETY: `ptr` is valid by the type invariant.
        unsafe { (*self.ptr).begin }
    }

    /// Length of this line, in sectors.
    pub(crate) fn len(&self) -> u64 {
        // SAFETY: `ptr` is valid by the type invariant.
        unsafe { (*self.ptr).len }
    }

    /// The mapped device this table belongs to.
    pub(crate) fn mapped_device(&self) -> MappedDevice {
        // SAFETY: `ptr` and its table are valid by the type invariant.
        // INVARIANT: the device outlives its tables, and this table exists.
        MappedDevice { md: unsafe { bindings::dm_table_get_md((*self.ptr).table) } }
    }

    /// Sets the message `dmsetup` shows when `ctr` fails.
    pub(crate) fn set_error(&mut self, msg: &'static CStr) {
        // SAFETY: `ptr` is valid by the type invariant; device-mapper only reads
        // `error` (never frees it), and `msg` is static.
        unsafe { (*self.ptr).error = msg.as_char_ptr() as *mut c_char };
    }

    /// Asks for one clone each of flush, discard and write-zeroes bios, and
    /// reserves `size_of::<P>()` bytes of per-bio data: a pass-through setup.
    fn setup_passthrough<P>(&mut self) {
        // `dm_per_bio_data` returns the bytes right before `dm_target_io`,
        // which is 8-byte aligned; a more aligned `P` would be misaligned.
        const { assert!(core::mem::align_of::<P>() <= 8) };
        // SAFETY: `ptr` is valid and writable during `ctr` by the type invariant.
        unsafe {
            let ti = &mut *self.ptr;
            ti.num_flush_bios = 1;
            ti.num_discard_bios = 1;
            ti.num_write_zeroes_bios = 1;
            ti.per_io_data_size = core::mem::size_of::<P>() as c_uint;
        }
    }
}

/// A mapped device (`dmsetup create NAME`), by reference.
///
/// # Invariants
///
/// `md` is a live `mapped_device` for as long as any table of it exists. A
/// holder must drop this value (or stop using it) before the last table of
/// the device is destroyed, i.e. by the end of that table's `dtr`.
#[derive(Clone, Copy)]
pub(crate) struct MappedDevice {
    md: *mut bindings::mapped_device,
}

// SAFETY: `mapped_device` is shared by device-mapper across threads; we only
// call functions on it that do their own locking.
unsafe impl Send for MappedDevice {}
// SAFETY: See `Send`.
unsafe impl Sync for MappedDevice {}

impl MappedDevice {
    /// Identifies the device; stable across reloads and renames.
    pub(crate) fn id(&self) -> usize {
        self.md as usize
    }

    /// The device's `dev_t` (`/dev/dm-N`), which names it in trace events.
    pub(crate) fn devt(&self) -> u32 {
        // SAFETY: `md` is live (type invariant), so is its gendisk.
        unsafe { bindings::aether_md_devt(self.md) }
    }

    /// The device's current name, copied into `buf`. May sleep.
    pub(crate) fn name<'a>(&self, buf: &'a mut [u8; DM_NAME_LEN]) -> Option<&'a CStr> {
        // SAFETY: `md` is live (type invariant); `buf` holds the `DM_NAME_LEN`
        // bytes `strcpy` may write; a null uuid skips the uuid. The call takes
        // `dm_hash_cells_mutex`, which none of aether's callers hold (they run
        // from table load, resume and debugfs file operations).
        let r = unsafe { bindings::dm_copy_name_and_uuid(self.md, buf.as_mut_ptr().cast(), core::ptr::null_mut()) };
        if r != 0 {
            return None;
        }
        let len = buf.iter().position(|&b| b == 0)?;
        CStr::from_bytes_with_nul(buf.get(..=len)?).ok().filter(|n| !n.is_empty())
    }
}

/// An underlying device opened for a target with `dm_get_device`.
///
/// # Invariants
///
/// `dev` was returned by `dm_get_device` for `target` and has not been put.
/// The value is dropped only inside the owning target's `ctr` or `dtr`
/// (it lives in the target's private data, never behind a shared handle):
/// `dm_put_device` edits `ti->table->devices` without locking, which is only
/// safe there, and `target` is alive then.
pub(crate) struct DmDev {
    dev: *mut bindings::dm_dev,
    target: *mut bindings::dm_target,
}

// SAFETY: A `dm_dev` is refcounted by device-mapper and read-only after
// `dm_get_device`, so reading it from any thread is fine. `Drop` is confined to
// the owning target's `ctr`/`dtr` (type invariant), which device-mapper never
// runs concurrently with other operations on that table.
unsafe impl Send for DmDev {}
// SAFETY: See `Send`.
unsafe impl Sync for DmDev {}

impl DmDev {
    /// Opens `path` (e.g. `/dev/nvme0n1` or `259:0`) with the table's mode.
    pub(crate) fn open(target: &mut Target, path: &CStr) -> Result<Self> {
        let mut dev = core::ptr::null_mut();
        // SAFETY: `target.ptr` is valid during `ctr`; `path` is NUL-terminated;
        // `dev` is a valid out-pointer.
        to_result(unsafe {
            bindings::dm_get_device(target.ptr, path.as_char_ptr(), bindings::dm_table_get_mode((*target.ptr).table), &mut dev)
        })?;
        // INVARIANT: `dev` was just returned by `dm_get_device` for `target`.
        Ok(Self { dev, target: target.ptr })
    }

    pub(crate) fn bdev(&self) -> *mut bindings::block_device {
        // SAFETY: `dev` is valid by the type invariant.
        unsafe { (*self.dev).bdev }
    }

    /// The device's name as device-mapper prints it (`major:minor`).
    pub(crate) fn name(&self) -> &CStr {
        // SAFETY: `dev` is valid by the type invariant and `name` is a
        // NUL-terminated array inside it.
        unsafe { CStr::from_char_ptr((*self.dev).name.as_ptr()) }
    }

    /// Whether the device takes `REQ_NOWAIT` bios (fails them rather than
    /// wait); stacked drivers without the flag reject such bios outright.
    pub(crate) fn supports_nowait(&self) -> bool {
        // SAFETY: `bdev()` is a live block device.
        unsafe { bindings::aether_bdev_nowait(self.bdev()) }
    }

}

impl Drop for DmDev {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `dev` is held for `target`, which is alive.
        unsafe { bindings::dm_put_device(self.target, self.dev) };
    }
}

/// Writes `dmsetup status`/`table`/`message` output into device-mapper's
/// buffer, truncating like `DMEMIT` when it is full.
pub(crate) type ResultWriter<'a> = super::fmt::BufWriter<'a>;

/// Calls device-mapper's callout for each underlying device (`iterate_devices`).
pub(crate) struct DeviceVisitor {
    target: *mut bindings::dm_target,
    callout: bindings::iterate_devices_callout_fn,
    data: *mut c_void,
}

impl DeviceVisitor {
    /// Reports that `dev` backs `len` sectors of this target starting at `start`.
    pub(crate) fn visit(&mut self, dev: &DmDev, start: u64, len: u64) -> c_int {
        match self.callout {
            // SAFETY: device-mapper passed `callout` and `data` together for this
            // target; `dev.dev` is held by the target (type invariant of `DmDev`).
            Some(f) => unsafe { f(self.target, dev.dev, start, len, self.data) },
            None => 0,
        }
    }
}

/// The callbacks of a device-mapper target; one `Self` per table line.
pub(crate) trait TargetOperations: Sized + Send + Sync + 'static {
    /// Per-bio state device-mapper reserves in front of every bio it maps.
    /// Every bio's starts as `Default` before `map` sees it.
    type PerBio: Copy + Default;

    /// Data the registration owns and every constructor sees.
    type Context: Send + Sync;

    /// `target_type.features`, e.g. [`FEATURE_NOWAIT`].
    const FEATURES: u64 = 0;

    /// Builds the target from its table arguments; on error, call
    /// [`Target::set_error`] so `dmsetup` can say why.
    fn ctr(ctx: &Self::Context, target: &mut Target, args: &[&CStr]) -> Result<Pin<KBox<Self>>>;

    /// Maps a bio: remap it to an underlying device, or serve it. What `map`
    /// leaves in `per_bio` is what `end_io` gets for this bio.
    fn map(&self, target: &Target, bio: &mut Bio, per_bio: &mut Self::PerBio) -> MapResult;

    /// Observes a bio's completion (possibly in hard-IRQ context).
    fn end_io(&self, bio: &Bio, per_bio: &Self::PerBio, status: BlkStatus);

    /// The table became the device's live table (`dmsetup resume`).
    fn resume(&self, _target: &Target) {}

    /// The device is about to suspend; bios may still be mapped. May sleep.
    fn presuspend(&self, _target: &Target) {}

    /// The device is suspended: no bio is in flight through the target and
    /// none will be mapped until `resume`. Wait here for the target's own
    /// I/O. May sleep.
    fn postsuspend(&self, _target: &Target) {}

    /// Writes `dmsetup status`/`table` output.
    fn status(&self, kind: StatusType, out: &mut ResultWriter<'_>);

    /// Handles `dmsetup message`; output written to `out` is returned to the user.
    fn message(&self, args: &[&CStr], out: &mut ResultWriter<'_>) -> Result;

    /// Reports every underlying device to `visitor`.
    fn iterate_devices(&self, target: &Target, visitor: &mut DeviceVisitor) -> c_int;
}

/// The target's `map` never sleeps, so `REQ_NOWAIT` bios (io_uring's
/// non-blocking submission) may be mapped without a worker-thread punt.
pub(crate) const FEATURE_NOWAIT: u64 = bindings::DM_TARGET_NOWAIT as u64;

/// Longest device-mapper device name, with its NUL (`DM_NAME_LEN`).
pub(crate) const DM_NAME_LEN: usize = bindings::DM_NAME_LEN as usize;

/// Most arguments a table line or message may have.
const MAX_ARGS: usize = 32;

/// Collects `argv` into `out` as `&CStr`s.
///
/// # Safety
///
/// `argv` must point to `argc` valid NUL-terminated strings that outlive `'a`.
unsafe fn collect_args<'a>(argc: c_uint, argv: *mut *mut c_char, out: &mut [&'a CStr; MAX_ARGS]) -> Result<usize> {
    let n = argc as usize;
    if n > MAX_ARGS {
        return Err(E2BIG);
    }
    for (i, slot) in out.iter_mut().enumerate().take(n) {
        // SAFETY: `i < argc`, so `argv.add(i)` is in bounds and holds a valid
        // NUL-terminated string (caller's guarantee).
        *slot = unsafe { CStr::from_char_ptr(*argv.add(i)) };
    }
    Ok(n)
}

/// Per-bio data of `bio` for target type `T`: uninitialised until the `map`
/// trampoline writes it.
///
/// # Safety
///
/// `bio` must be a bio device-mapper is mapping or completing for a target of
/// type `T`, which set `per_io_data_size` to `size_of::<T::PerBio>()`.
unsafe fn per_bio<T: TargetOperations>(bio: *mut bindings::bio) -> *mut T::PerBio {
    // SAFETY: `dm_per_bio_data` returns the `size_of::<T::PerBio>()` bytes right
    // before the bio's `dm_target_io`, 8-byte aligned (and `setup_passthrough`
    // checks `T::PerBio` needs no more); they belong to the target until the
    // bio completes (caller's guarantee).
    unsafe { bindings::dm_per_bio_data(bio, core::mem::size_of::<T::PerBio>()).cast::<T::PerBio>() }
}

/// The target's private data.
///
/// # Safety
///
/// `ti` must be a target of type `T` whose `ctr` succeeded and whose `dtr` has
/// not run.
unsafe fn private<'a, T: TargetOperations>(ti: *mut bindings::dm_target) -> Pin<&'a T> {
    // SAFETY: `ctr` stored `Pin<KBox<T>>::into_foreign()` in `private`, which
    // stays there until `dtr` (caller's guarantee).
    unsafe { <Pin<KBox<T>> as ForeignOwnable>::borrow((*ti).private) }
}

/// The C callbacks of a `Registration<T>`. Each is only ever called by
/// device-mapper for a target of the `target_type` that `Registration<T>`
/// registered, with the arguments that callback type documents.
struct VTable<T>(PhantomData<T>);

impl<T: TargetOperations> VTable<T> {
    /// # Safety
    ///
    /// Called by device-mapper as `target_type.ctr` with a valid `ti` and
    /// `argc` valid NUL-terminated strings in `argv`.
    unsafe extern "C" fn ctr(ti: *mut bindings::dm_target, argc: c_uint, argv: *mut *mut c_char) -> c_int {
        let mut target = Target { ptr: ti };
        let mut args: [&CStr; MAX_ARGS] = [kernel::c_str!(""); MAX_ARGS];
        // SAFETY: device-mapper passes `argc` valid strings that live until `ctr` returns.
        let n = match unsafe { collect_args(argc, argv, &mut args) } {
            Ok(n) => n,
            Err(e) => {
                kernel::pr_err!("bad table line: too many arguments ({}, at most {})\n", argc, MAX_ARGS);
                target.set_error(kernel::c_str!("Too many arguments"));
                return e.to_errno();
            }
        };
        target.setup_passthrough::<T::PerBio>();
        // SAFETY: `ti->type` came from `dm_get_target_type()`, which found our
        // `tt` on device-mapper's list and took a reference on `tt->module`
        // (this module), so the `Registration<T>` containing `tt` outlives
        // this table.
        let reg = unsafe { &*kernel::container_of!((*ti).type_.cast::<Opaque<bindings::target_type>>(), Registration<T>, tt) };
        match T::ctr(&reg.ctx, &mut target, args.get(..n).unwrap_or(&[])) {
            Ok(private) => {
                // SAFETY: `ti` is valid during `ctr`.
                unsafe { (*ti).private = private.into_foreign() as *mut c_void };
                0
            }
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// Called by device-mapper as `target_type.dtr`, once, for a target whose
    /// `ctr` succeeded.
    unsafe extern "C" fn dtr(ti: *mut bindings::dm_target) {
        // SAFETY: `ctr` succeeded for this target, so `private` holds our
        // `into_foreign` pointer; we take it back exactly once.
        drop(unsafe { <Pin<KBox<T>> as ForeignOwnable>::from_foreign((*ti).private) });
    }

    /// # Safety
    ///
    /// Called by device-mapper as `target_type.map` with a valid `ti` (between
    /// `ctr` and `dtr`) and a bio it owns until we return.
    unsafe extern "C" fn map(ti: *mut bindings::dm_target, bio: *mut bindings::bio) -> c_int {
        // SAFETY: `map` runs between a successful `ctr` and `dtr`.
        let this = unsafe { private::<T>(ti) };
        // SAFETY: The bio belongs to a target of type `T` (see `per_bio`). The
        // per-bio data is initialised before `map` sees it, so `end_io`
        // always reads initialised data.
        let pb = unsafe {
            let pb = per_bio::<T>(bio);
            pb.write(T::PerBio::default());
            &mut *pb
        };
        let result = {
            // SAFETY: device-mapper hands us this bio exclusively until we return.
            let mut b = unsafe { Bio::from_raw(bio) };
            this.map(&Target { ptr: ti }, &mut b, pb)
        };
        match result {
            MapResult::Remapped => bindings::DM_MAPIO_REMAPPED as c_int,
            MapResult::Complete(status) => {
                // SAFETY: `map` has returned, so nothing borrows the bio or its
                // per-bio data any more; the bio is still ours to end, once.
                unsafe {
                    (*bio).bi_status = status.0;
                    bindings::bio_endio(bio);
                }
                bindings::DM_MAPIO_SUBMITTED as c_int
            }
            MapResult::Kill => bindings::DM_MAPIO_KILL as c_int,
            MapResult::Requeue => bindings::DM_MAPIO_REQUEUE as c_int,
        }
    }

    /// # Safety
    ///
    /// Called by device-mapper as `target_type.end_io` for a bio our `map`
    /// handled, with `error` pointing to its status; possibly in hard IRQ.
    unsafe extern "C" fn end_io(ti: *mut bindings::dm_target, bio: *mut bindings::bio, error: *mut u8) -> c_int {
        // SAFETY: `end_io` runs between a successful `ctr` and `dtr`.
        let this = unsafe { private::<T>(ti) };
        // SAFETY: the completing bio is ours until we return.
        let b = unsafe { Bio::from_raw(bio) };
        // SAFETY: The bio went through our `map`, which wrote its per-bio data.
        let pb = unsafe { &*per_bio::<T>(bio) };
        // SAFETY: `error` is null or points to the bio's completion status.
        let status = BlkStatus(if error.is_null() { 0 } else { unsafe { *error } });
        this.end_io(&b, pb, status);
        bindings::DM_ENDIO_DONE as c_int
    }

    /// # Safety
    ///
    /// Called by device-mapper as `target_type.resume` between `ctr` and `dtr`.
    unsafe extern "C" fn resume(ti: *mut bindings::dm_target) {
        // SAFETY: `resume` runs between a successful `ctr` and `dtr`.
        let this = unsafe { private::<T>(ti) };
        this.resume(&Target { ptr: ti });
    }

    /// # Safety
    ///
    /// Called by device-mapper as `target_type.presuspend` between `ctr` and `dtr`.
    unsafe extern "C" fn presuspend(ti: *mut bindings::dm_target) {
        // SAFETY: `presuspend` runs between a successful `ctr` and `dtr`.
        let this = unsafe { private::<T>(ti) };
        this.presuspend(&Target { ptr: ti });
    }

    /// # Safety
    ///
    /// Called by device-mapper as `target_type.postsuspend` between `ctr` and `dtr`.
    unsafe extern "C" fn postsuspend(ti: *mut bindings::dm_target) {
        // SAFETY: `postsuspend` runs between a successful `ctr` and `dtr`.
        let this = unsafe { private::<T>(ti) };
        this.postsuspend(&Target { ptr: ti });
    }

    /// # Safety
    ///
    /// Called by device-mapper as `target_type.status` between `ctr` and `dtr`,
    /// with `maxlen` writable bytes at `result`.
    unsafe extern "C" fn status(
        ti: *mut bindings::dm_target,
        kind: bindings::status_type_t,
        _flags: c_uint,
        result: *mut c_char,
        maxlen: c_uint,
    ) {
        // SAFETY: `status` runs between a successful `ctr` and `dtr`.
        let this = unsafe { private::<T>(ti) };
        // SAFETY: device-mapper gives us `maxlen` writable bytes at `result`.
        let mut out = unsafe { ResultWriter::from_raw(result, maxlen as usize) };
        let kind = match kind {
            bindings::status_type_t_STATUSTYPE_INFO => StatusType::Info,
            bindings::status_type_t_STATUSTYPE_TABLE => StatusType::Table,
            _ => StatusType::Ima,
        };
        this.status(kind, &mut out);
    }

    /// # Safety
    ///
    /// Called by device-mapper as `target_type.message` between `ctr` and
    /// `dtr`, with `argc` strings in `argv` and `maxlen` bytes at `result`.
    unsafe extern "C" fn message(
        ti: *mut bindings::dm_target,
        argc: c_uint,
        argv: *mut *mut c_char,
        result: *mut c_char,
        maxlen: c_uint,
    ) -> c_int {
        // SAFETY: `message` runs between a successful `ctr` and `dtr`.
        let this = unsafe { private::<T>(ti) };
        let mut args: [&CStr; MAX_ARGS] = [kernel::c_str!(""); MAX_ARGS];
        // SAFETY: device-mapper passes `argc` valid strings that live until we return.
        let n = match unsafe { collect_args(argc, argv, &mut args) } {
            Ok(n) => n,
            Err(e) => return e.to_errno(),
        };
        // SAFETY: device-mapper gives us `maxlen` writable bytes at `result`.
        let mut out = unsafe { ResultWriter::from_raw(result, maxlen as usize) };
        match this.message(args.get(..n).unwrap_or(&[]), &mut out) {
            // 1 tells device-mapper that `result` holds output for the user.
            Ok(()) => c_int::from(!out.is_empty()),
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// Called by device-mapper as `target_type.iterate_devices` between `ctr`
    /// and `dtr`, with a callout and its data.
    unsafe extern "C" fn iterate_devices(
        ti: *mut bindings::dm_target,
        callout: bindings::iterate_devices_callout_fn,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: `iterate_devices` runs between a successful `ctr` and `dtr`.
        let this = unsafe { private::<T>(ti) };
        let mut visitor = DeviceVisitor { target: ti, callout, data };
        this.iterate_devices(&Target { ptr: ti }, &mut visitor)
    }
}

/// A registered target type; unregistered on drop.
///
/// # Invariants
///
/// `tt` holds a `target_type` whose callbacks are `VTable<T>`'s, registered with
/// device-mapper from successful initialisation until drop. Constructors reach
/// `ctx` from `ti->type` (`container_of`), so both stay at a fixed address.
/// The registration is owned by the module object and dropped only at module
/// exit, when device-mapper's module reference guarantees no table of this
/// type exists.
#[pin_data(PinnedDrop)]
pub(crate) struct Registration<T: TargetOperations> {
    #[pin]
    tt: Opaque<bindings::target_type>,
    ctx: T::Context,
    _t: PhantomData<T>,
}

// SAFETY: After registration device-mapper only reads `tt`, from any thread,
// and we never write it again; `ctx` is `Send + Sync` by the trait bound.
unsafe impl<T: TargetOperations> Send for Registration<T> {}
// SAFETY: See `Send`; `&Registration` exposes only `&ctx`, which is `Sync`.
unsafe impl<T: TargetOperations> Sync for Registration<T> {}

impl<T: TargetOperations> Registration<T> {
    /// Registers target type `name` at `version` owned by `module`; its
    /// constructors get `ctx`.
    pub(crate) fn new(
        name: &'static CStr,
        version: [u32; 3],
        module: &'static ThisModule,
        ctx: T::Context,
    ) -> impl PinInit<Self, Error> {
        let tt_init = move |slot: *mut bindings::target_type| -> Result {
            let tt = bindings::target_type {
                features: T::FEATURES,
                name: name.as_char_ptr(),
                module: module.as_ptr().cast(),
                version,
                ctr: Some(VTable::<T>::ctr),
                dtr: Some(VTable::<T>::dtr),
                map: Some(VTable::<T>::map),
                end_io: Some(VTable::<T>::end_io),
                status: Some(VTable::<T>::status),
                message: Some(VTable::<T>::message),
                iterate_devices: Some(VTable::<T>::iterate_devices),
                resume: Some(VTable::<T>::resume),
                presuspend: Some(VTable::<T>::presuspend),
                postsuspend: Some(VTable::<T>::postsuspend),
                ..Default::default()
            };
            // SAFETY: `slot` is valid for writes (pin-init contract) and pinned, so
            // the address device-mapper keeps stays valid until `PinnedDrop`.
            unsafe {
                slot.write(tt);
                to_result(bindings::dm_register_target(slot))
            }
        };
        // SAFETY: On success the `tt` slot is fully initialised and registered; on
        // error nothing was registered and the slot needs no cleanup. `tt` must
        // stay the last fallible field of `Self`: if a later one failed, the
        // registered `Opaque` would be dropped without being unregistered.
        let tt = unsafe { kernel::init::pin_init_from_closure(move |slot: *mut Opaque<bindings::target_type>| tt_init(Opaque::raw_get(slot))) };
        // `ctx` is written before `tt` registers the type, so a constructor
        // never sees it uninitialised.
        try_pin_init!(Self { ctx, tt <- tt, _t: PhantomData })
    }
}

#[pinned_drop]
impl<T: TargetOperations> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: Registered since initialisation (type invariant). The
        // registration is dropped only at module exit (type invariant), and
        // device-mapper holds a module reference for every live table of this
        // type, so none exists now.
        unsafe { bindings::dm_unregister_target(self.tt.get()) };
    }
}
