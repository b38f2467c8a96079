// SPDX-License-Identifier: GPL-2.0

//! device-mapper targets.
//!
//! A target implements [`TargetOperations`]; [`Registration`] builds the C
//! `struct target_type` from it (the same shape as `kernel::block::mq`'s
//! `OperationsVTable`) and registers it for as long as the registration lives.
//! The trampolines here are the only code that sees raw `dm_target` pointers.

use super::bindings;
use super::bio::{Bio, ParkedBio};
use kernel::ffi::{c_char, c_int, c_uint, c_void};
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use kernel::{
    error::{to_result, Error},
    init::PinInit,
    prelude::*,
    str::CStr,
    types::Opaque,
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
    /// The target keeps the bio to finish later: the layer hands it to
    /// [`TargetOperations::park`] as a [`ParkedBio`] and reports
    /// `DM_MAPIO_SUBMITTED`. Remap the bio before returning this.
    Park,
    /// Fail the bio with an I/O error (`DM_MAPIO_KILL`).
    Kill,
    /// Give the bio back to device-mapper (`DM_MAPIO_REQUEUE`). For
    /// bio-based devices it is mapped again only while a noflush suspend is
    /// in progress; otherwise device-mapper fails it with an I/O error (6.12
    /// `dm_handle_requeue`), so it is no way to wait.
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

    /// An I/O error: anything but success and `BLK_STS_AGAIN` (a `REQ_NOWAIT`
    /// bio the device would have had to wait for; its submitter, io_uring,
    /// retries it).
    pub(crate) fn is_error(self) -> bool {
        self.0 != 0 && self.0 != bindings::AETHER_CONST_BLK_STS_AGAIN
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
/// to the target, writable during `ctr`. Its `private` points to the target's
/// [`Devices`] (the first field of its private data after `ctr`).
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

    /// The mapped device this table belongs to, for as long as this borrow.
    pub(crate) fn mapped_device(&self) -> MappedDevice<'_> {
        // SAFETY: `ptr` and its table are valid by the type invariant.
        // INVARIANT: a device outlives its tables, and this table outlives `self`.
        MappedDevice { md: unsafe { bindings::dm_table_get_md((*self.ptr).table) }, _target: PhantomData }
    }

    /// Opens `path` (e.g. `/dev/nvme0n1` or `259:0`) with the table's mode, for
    /// this target; only during `ctr`. The target holds the reference until
    /// its `dtr`; the returned id finds it again with [`Target::device`].
    pub(crate) fn open_device(&mut self, path: &CStr) -> Result<DevId> {
        // SAFETY: During `ctr`, `private` points to the `Devices` the `ctr`
        // trampoline owns (type invariant), and nothing else accesses it.
        let devs = unsafe { &mut *(*self.ptr).private.cast::<Devices>() };
        let slot = devs.devs.iter_mut().position(|d| d.is_null()).ok_or(E2BIG)?;
        let mut dev = core::ptr::null_mut();
        // SAFETY: `ptr` is valid during `ctr`; `path` is NUL-terminated; `dev`
        // is a valid out-pointer.
        to_result(unsafe {
            bindings::dm_get_device(self.ptr, path.as_char_ptr(), bindings::dm_table_get_mode((*self.ptr).table), &mut dev)
        })?;
        if let Some(d) = devs.devs.get_mut(slot) {
            // INVARIANT (`Devices`): `dev` was just returned by `dm_get_device` for `ptr`.
            *d = dev;
        }
        Ok(DevId { target: self.ptr as usize, slot })
    }

    /// The underlying device `id` opened by this target, for as long as this borrow.
    pub(crate) fn device(&self, id: DevId) -> Option<&DmDev> {
        if id.target != self.ptr as usize {
            return None;
        }
        // SAFETY: `private` points to the target's `Devices` (type invariant),
        // which only `open_device` (in `ctr`, with `&mut self`) and the `dtr`
        // trampoline (after the last callback) modify.
        let devs = unsafe { &*(*self.ptr).private.cast::<Devices>() };
        let dev = devs.devs.get(id.slot)?;
        if dev.is_null() {
            return None;
        }
        // SAFETY: `DmDev` is a transparent wrapper of the pointer.
        Some(unsafe { &*core::ptr::from_ref(dev).cast::<DmDev>() })
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

/// A mapped device (`dmsetup create NAME`), borrowed from one of its targets
/// for the duration of a callback; keep [`MappedDevice::id`] to recognise it
/// later.
///
/// # Invariants
///
/// `md` is the `mapped_device` of the table of a target borrowed for `'a`: it
/// is live for `'a`, because a device outlives its tables.
#[derive(Clone, Copy)]
pub(crate) struct MappedDevice<'a> {
    md: *mut bindings::mapped_device,
    _target: PhantomData<&'a Target>,
}

/// Identifies a mapped device; stable across reloads and renames. Only a
/// value to compare: it gives no access to the device.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeviceId(usize);

impl<'a> MappedDevice<'a> {
    /// The device's identity, to keep beyond this borrow.
    pub(crate) fn id(&self) -> DeviceId {
        DeviceId(self.md as usize)
    }

    /// The device's `dev_t` (`/dev/dm-N`), which names it in trace events.
    pub(crate) fn devt(&self) -> u32 {
        // SAFETY: `md` is live (type invariant), so is its gendisk.
        unsafe { bindings::aether_md_devt(self.md) }
    }

    /// The device's current name, copied into `buf`. May sleep.
    pub(crate) fn name<'b>(&self, buf: &'b mut [u8; DM_NAME_LEN]) -> Option<&'b CStr> {
        // SAFETY: `md` is live (type invariant); `buf` holds the `DM_NAME_LEN`
        // bytes `strcpy` may write; a null uuid skips the uuid. The call takes
        // `dm_hash_cells_mutex`, which none of aether's callers hold (they run
        // from table load and resume).
        let r = unsafe { bindings::dm_copy_name_and_uuid(self.md, buf.as_mut_ptr().cast(), core::ptr::null_mut()) };
        if r != 0 {
            return None;
        }
        let len = buf.iter().position(|&b| b == 0)?;
        CStr::from_bytes_with_nul(buf.get(..=len)?).ok().filter(|n| !n.is_empty())
    }

    /// The kernel's name of the device's disk, `dm-N`: fixed from `dmsetup
    /// create` to `dmsetup remove`, unlike [`MappedDevice::name`].
    pub(crate) fn disk_name(&self) -> &'a CStr {
        // SAFETY: `md` is live for `'a` (type invariant), and so is its gendisk,
        // which device-mapper allocates with it and frees only with it;
        // `disk_name` is a NUL-terminated array set at creation and never
        // changed.
        unsafe { CStr::from_char_ptr((*bindings::dm_disk(self.md)).disk_name.as_ptr()) }
    }
}

/// An underlying device a target opened with [`Target::open_device`]. Targets
/// only ever see it borrowed from a [`Target`] ([`Target::device`]), so it
/// cannot outlive the target's callbacks; the `dtr` trampoline puts it.
///
/// # Invariants
///
/// The pointer was returned by `dm_get_device` for the target it was borrowed
/// from and is held until that target's `dtr`.
#[repr(transparent)]
pub(crate) struct DmDev(*mut bindings::dm_dev);

/// Which device of a target: an index checked against the target on use.
#[derive(Clone, Copy)]
pub(crate) struct DevId {
    /// The `dm_target` that opened it, compared only, never dereferenced.
    target: usize,
    slot: usize,
}

/// Most underlying devices one target line may open.
const MAX_DEVICES: usize = 2;

/// The devices a target opened; put on drop. The first field of the target's
/// private data, so that [`Target::device`] finds it without knowing `T`.
///
/// # Invariants
///
/// Every non-null entry was returned by `dm_get_device` for `target` and not
/// yet put. The value is dropped only by the `ctr` trampoline (on failure) or
/// the `dtr` trampoline, when `target` is alive and device-mapper runs nothing
/// else on its table (`dm_put_device` edits the table's device list unlocked).
#[repr(C)]
struct Devices {
    target: *mut bindings::dm_target,
    devs: [*mut bindings::dm_dev; MAX_DEVICES],
}

impl Drop for Devices {
    fn drop(&mut self) {
        for dev in self.devs.iter().rev().filter(|d| !d.is_null()) {
            // SAFETY: By the type invariant `dev` is held for `target`, which is
            // alive, and we are in its `ctr` or `dtr`.
            unsafe { bindings::dm_put_device(self.target, *dev) };
        }
    }
}

/// A target's private data: its devices first (see [`Devices`]), then the
/// target's own state.
#[repr(C)]
struct Private<T> {
    devs: Devices,
    this: ManuallyDrop<Pin<KBox<T>>>,
}

impl<T> Drop for Private<T> {
    fn drop(&mut self) {
        // SAFETY: `this` is dropped once, here, and not used afterwards. The
        // target's state goes before its devices (which `devs` puts right
        // after), so it may still refer to them while it drops.
        unsafe { ManuallyDrop::drop(&mut self.this) };
    }
}

impl DmDev {
    pub(crate) fn bdev(&self) -> *mut bindings::block_device {
        // SAFETY: `self.0` is held by the target (type invariant).
        unsafe { (*self.0).bdev }
    }

    /// The device's name as device-mapper prints it (`major:minor`).
    pub(crate) fn name(&self) -> &CStr {
        // SAFETY: `self.0` is valid by the type invariant and `name` is a
        // NUL-terminated array inside it.
        unsafe { CStr::from_char_ptr((*self.0).name.as_ptr()) }
    }

    /// Whether the device takes `REQ_NOWAIT` bios (fails them rather than
    /// wait); stacked drivers without the flag reject such bios outright.
    pub(crate) fn supports_nowait(&self) -> bool {
        // SAFETY: `bdev()` is a live block device.
        unsafe { bindings::aether_bdev_nowait(self.bdev()) }
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
            // target; `dev.0` is held by a target (type invariant of `DmDev`).
            Some(f) => unsafe { f(self.target, dev.0, start, len, self.data) },
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

    /// Takes a bio `map` returned [`MapResult::Park`] for. It must end up
    /// filled or submitted (dropping it fails it). By default: submitted.
    fn park(&self, _target: &Target, bio: ParkedBio) {
        bio.submit();
    }

    /// Observes a bio's completion (possibly in hard-IRQ context).
    fn end_io(&self, bio: &Bio, per_bio: &Self::PerBio, status: BlkStatus);

    /// The table became the device's live table (`dmsetup resume`).
    fn resume(&self, _target: &Target) {}

    /// The device is about to suspend; bios may still be mapped. May sleep.
    fn presuspend(&self, _target: &Target) {}

    /// A suspend was abandoned after `presuspend` (a signal, or a file
    /// system that would not freeze): the device runs on. May sleep.
    fn presuspend_undo(&self, _target: &Target) {}

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
    // SAFETY: `ctr` stored a `KBox<Private<T>>` in `private`, which stays
    // there until `dtr` (caller's guarantee); we only read it.
    let p = unsafe { &*(*ti).private.cast::<Private<T>>() };
    p.this.as_ref()
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
        // INVARIANT (`Devices`, `Target`): `private` points to the devices
        // while `T::ctr` runs; `open_device` fills them in.
        let mut devs = Devices { target: ti, devs: [core::ptr::null_mut(); MAX_DEVICES] };
        // SAFETY: `ti` is valid during `ctr`; `devs` outlives `T::ctr`.
        unsafe { (*ti).private = core::ptr::from_mut(&mut devs).cast() };
        // SAFETY: `ti->type` came from `dm_get_target_type()`, which found our
        // `tt` on device-mapper's list and took a reference on `tt->module`
        // (this module), so the `Registration<T>` containing `tt` outlives
        // this table.
        let reg = unsafe { &*kernel::container_of!((*ti).type_.cast::<Opaque<bindings::target_type>>(), Registration<T>, tt) };
        let result = T::ctr(&reg.ctx, &mut target, args.get(..n).unwrap_or(&[]));
        // SAFETY: `ti` is valid during `ctr`. Nothing may reach `devs` through
        // `private` any more; on failure device-mapper never calls us again
        // for this target, and dropping `devs` (here or in `Private`) puts
        // what `T::ctr` opened, inside `ctr`.
        unsafe { (*ti).private = core::ptr::null_mut() };
        let this = match result {
            Ok(this) => this,
            Err(e) => {
                drop(devs);
                return e.to_errno();
            }
        };
        match KBox::new(Private { devs, this: ManuallyDrop::new(this) }, GFP_KERNEL) {
            Ok(private) => {
                // SAFETY: `ti` is valid during `ctr`.
                unsafe { (*ti).private = KBox::into_raw(private).cast() };
                0
            }
            // The `Private` was dropped: the target's state, then its devices.
            Err(e) => Error::from(e).to_errno(),
        }
    }

    /// # Safety
    ///
    /// Called by device-mapper as `target_type.dtr`, once, for a target whose
    /// `ctr` succeeded.
    unsafe extern "C" fn dtr(ti: *mut bindings::dm_target) {
        // SAFETY: `ctr` succeeded for this target, so `private` holds our
        // `KBox<Private<T>>`; we take it back exactly once. Dropping it drops
        // the target's state, then puts its devices, inside `dtr` as
        // `Devices` requires.
        drop(unsafe { KBox::from_raw((*ti).private.cast::<Private<T>>()) });
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
            MapResult::Park => {
                // SAFETY: `map` has returned and holds nothing of the bio;
                // we report `DM_MAPIO_SUBMITTED` below, so the parked bio is
                // the only owner.
                let parked = unsafe { ParkedBio::from_raw(bio) };
                this.park(&Target { ptr: ti }, parked);
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
    /// Called by device-mapper as `target_type.presuspend_undo` between `ctr` and `dtr`.
    unsafe extern "C" fn presuspend_undo(ti: *mut bindings::dm_target) {
        // SAFETY: `presuspend_undo` runs between a successful `ctr` and `dtr`.
        let this = unsafe { private::<T>(ti) };
        this.presuspend_undo(&Target { ptr: ti });
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
                presuspend_undo: Some(VTable::<T>::presuspend_undo),
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
