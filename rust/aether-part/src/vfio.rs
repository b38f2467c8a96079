//! The VFIO handshake: container, group, device, BAR0, DMA, NVMe admin Identify.
//!
//! Structures and constants come from the rust-vmm `vfio-bindings` crate. The crate does
//! not carry the ioctl request numbers (bindgen cannot expand `_IO()`), so they are built
//! with rust-vmm's `vmm_sys_util::ioctl_io_nr!` from the crate's `VFIO_TYPE` and `VFIO_BASE`,
//! using the offsets of <linux/vfio.h>, and called through `vmm_sys_util::ioctl`.

use crate::parse::Bdf;
use crate::nvme;
use crate::plan::VFIO_DRIVER;
use crate::sys::{self, Roots};
use nix::sys::mman::{mmap, mmap_anonymous, munmap, MapFlags, ProtFlags};
use serde::Serialize;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::num::NonZeroUsize;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};
use vfio_bindings::bindings::vfio::*;

mod ioc {
    //! The VFIO ioctls, all `_IO(VFIO_TYPE, VFIO_BASE + n)`: request numbers from rust-vmm's
    //! `vmm_sys_util::ioctl_io_nr!` over `vfio-bindings`' constants, calls through its
    //! `ioctl_with_*` helpers. Each wrapper turns a negative return into the errno.
    //!
    //! # Safety (every function)
    //!
    //! `fd` must be an open fd of the kind the ioctl is for (container, group or device), and
    //! the argument must point to a live value of the type `<linux/vfio.h>` gives the ioctl,
    //! with `argsz` set where it has one; the kernel may write through `*mut` arguments.
    use std::io::{Error, Result};
    use std::os::fd::RawFd;
    use std::os::raw::{c_int, c_ulong};
    use vfio_bindings::bindings::vfio::*;
    use vmm_sys_util::ioctl::{ioctl, ioctl_with_mut_ptr, ioctl_with_ptr, ioctl_with_val};
    use vmm_sys_util::ioctl_io_nr;

    const T: u32 = VFIO_TYPE as u32;
    ioctl_io_nr!(VFIO_GET_API_VERSION, T, VFIO_BASE);
    ioctl_io_nr!(VFIO_CHECK_EXTENSION, T, VFIO_BASE + 1);
    ioctl_io_nr!(VFIO_SET_IOMMU, T, VFIO_BASE + 2);
    ioctl_io_nr!(VFIO_GROUP_GET_STATUS, T, VFIO_BASE + 3);
    ioctl_io_nr!(VFIO_GROUP_SET_CONTAINER, T, VFIO_BASE + 4);
    ioctl_io_nr!(VFIO_GROUP_UNSET_CONTAINER, T, VFIO_BASE + 5);
    ioctl_io_nr!(VFIO_GROUP_GET_DEVICE_FD, T, VFIO_BASE + 6);
    ioctl_io_nr!(VFIO_DEVICE_GET_INFO, T, VFIO_BASE + 7);
    ioctl_io_nr!(VFIO_DEVICE_GET_REGION_INFO, T, VFIO_BASE + 8);
    ioctl_io_nr!(VFIO_IOMMU_MAP_DMA, T, VFIO_BASE + 13);
    ioctl_io_nr!(VFIO_IOMMU_UNMAP_DMA, T, VFIO_BASE + 14);

    fn res(r: c_int) -> Result<i32> {
        if r < 0 { Err(Error::last_os_error()) } else { Ok(r) }
    }
    pub unsafe fn get_api_version(fd: RawFd) -> Result<i32> {
        // SAFETY: no argument; `fd` is open (caller).
        res(unsafe { ioctl(&fd, VFIO_GET_API_VERSION()) })
    }
    pub unsafe fn check_extension(fd: RawFd, ext: c_int) -> Result<i32> {
        // SAFETY: the argument is an int by value; `fd` is an open container (caller).
        res(unsafe { ioctl_with_val(&fd, VFIO_CHECK_EXTENSION(), ext as c_ulong) })
    }
    pub unsafe fn set_iommu(fd: RawFd, kind: c_int) -> Result<i32> {
        // SAFETY: the argument is an int by value; `fd` is an open container (caller).
        res(unsafe { ioctl_with_val(&fd, VFIO_SET_IOMMU(), kind as c_ulong) })
    }
    pub unsafe fn group_get_status(fd: RawFd, st: *mut vfio_group_status) -> Result<i32> {
        // SAFETY: `st` points to a live vfio_group_status with argsz set (caller).
        res(unsafe { ioctl_with_mut_ptr(&fd, VFIO_GROUP_GET_STATUS(), st) })
    }
    pub unsafe fn group_set_container(fd: RawFd, container: *const i32) -> Result<i32> {
        // SAFETY: `container` points to a live int holding an open container fd (caller).
        res(unsafe { ioctl_with_ptr(&fd, VFIO_GROUP_SET_CONTAINER(), container) })
    }
    pub unsafe fn group_unset_container(fd: RawFd) -> Result<i32> {
        // SAFETY: no argument; `fd` is an open group (caller).
        res(unsafe { ioctl(&fd, VFIO_GROUP_UNSET_CONTAINER()) })
    }
    pub unsafe fn group_get_device_fd(fd: RawFd, name: *const u8) -> Result<i32> {
        // SAFETY: `name` points to a NUL-terminated device name (caller).
        res(unsafe { ioctl_with_ptr(&fd, VFIO_GROUP_GET_DEVICE_FD(), name) })
    }
    pub unsafe fn device_get_info(fd: RawFd, info: *mut vfio_device_info) -> Result<i32> {
        // SAFETY: `info` points to a live vfio_device_info with argsz set (caller).
        res(unsafe { ioctl_with_mut_ptr(&fd, VFIO_DEVICE_GET_INFO(), info) })
    }
    pub unsafe fn device_get_region_info(fd: RawFd, ri: *mut vfio_region_info) -> Result<i32> {
        // SAFETY: `ri` points to a live vfio_region_info with argsz and index set (caller).
        res(unsafe { ioctl_with_mut_ptr(&fd, VFIO_DEVICE_GET_REGION_INFO(), ri) })
    }
    pub unsafe fn iommu_map_dma(fd: RawFd, map: *const vfio_iommu_type1_dma_map) -> Result<i32> {
        // SAFETY: `map` points to a live vfio_iommu_type1_dma_map with argsz set (caller).
        res(unsafe { ioctl_with_ptr(&fd, VFIO_IOMMU_MAP_DMA(), map) })
    }
    pub unsafe fn iommu_unmap_dma(fd: RawFd, u: *mut vfio_iommu_type1_dma_unmap) -> Result<i32> {
        // SAFETY: `u` points to a live vfio_iommu_type1_dma_unmap with argsz set (caller).
        res(unsafe { ioctl_with_mut_ptr(&fd, VFIO_IOMMU_UNMAP_DMA(), u) })
    }
}

#[derive(Debug, Serialize, Default, Clone)]
pub struct Identify {
    pub vid: u16,
    pub serial: String,
    pub model: String,
    pub firmware: String,
    pub mdts: u8,
    pub mdts_bytes: Option<u64>,
    pub sqes: u8,
    pub cqes: u8,
    pub maxcmd: u16,
    pub nn: u32,
}

fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim_end_matches([' ', '\0']).trim().to_string()
}

/// Decode an Identify Controller data structure (4096 bytes).
pub fn parse_identify(d: &[u8], mpsmin_bytes: u64) -> Identify {
    let u16le = |o: usize| u16::from_le_bytes([d[o], d[o + 1]]);
    let mdts = d[77];
    Identify {
        vid: u16le(0),
        serial: ascii(&d[4..24]),
        model: ascii(&d[24..64]),
        firmware: ascii(&d[64..72]),
        mdts,
        mdts_bytes: (mdts != 0).then(|| mpsmin_bytes << mdts),
        sqes: d[512],
        cqes: d[513],
        maxcmd: u16le(514),
        nn: u32::from_le_bytes([d[516], d[517], d[518], d[519]]),
    }
}

/// Controller capabilities (CAP register).
#[derive(Debug, Serialize, Default, Clone, PartialEq)]
pub struct Cap {
    pub raw: String,
    pub mqes: u32,
    pub timeout_ms: u64,
    pub dstrd: u32,
    pub mpsmin_bytes: u64,
    pub mpsmax_bytes: u64,
    pub css_nvm: bool,
}

pub fn parse_cap(cap: u64) -> Cap {
    Cap {
        raw: format!("0x{cap:016x}"),
        mqes: (cap & 0xffff) as u32 + 1,
        timeout_ms: ((cap >> 24) & 0xff) * 500,
        dstrd: ((cap >> 32) & 0xf) as u32,
        mpsmin_bytes: 4096u64 << ((cap >> 48) & 0xf),
        mpsmax_bytes: 4096u64 << ((cap >> 52) & 0xf),
        css_nvm: (cap >> 37) & 1 == 1,
    }
}

pub fn version_string(vs: u32) -> String {
    format!("{}.{}.{}", vs >> 16, (vs >> 8) & 0xff, vs & 0xff)
}

/// An admin Identify (CNS=1, controller) submission entry with command id `cid`.
pub fn identify_sqe(cid: u16, prp1: u64) -> [u32; 16] {
    let mut e = [0u32; 16];
    e[0] = 0x06 | ((cid as u32) << 16);
    e[6] = prp1 as u32;
    e[7] = (prp1 >> 32) as u32;
    e[10] = 1;
    e
}

#[derive(Debug, Serialize, Default)]
pub struct Handshake {
    pub ok: bool,
    pub bdf: String,
    pub iommu_group: u32,
    pub api_version: i32,
    pub type1v2: bool,
    pub group_viable: bool,
    pub device_regions: u32,
    pub device_irqs: u32,
    pub bar0_size: u64,
    pub cap: Cap,
    pub version: String,
    pub identify_status: u16,
    pub identify: Option<Identify>,
    pub steps: Vec<String>,
    pub error: Option<String>,
}

/// A shared mapping of a VFIO device region (BAR0), accessed with volatile 32-bit MMIO.
///
/// # Invariants
///
/// - `ptr` is the page-aligned start of a live, readable and writable `MAP_SHARED` mapping
///   of exactly `len` (> 0) bytes, created by [`Bar::map`] and owned by this `Bar`: nothing
///   else unmaps it, and it stays mapped until `Drop`. The mapping holds its own reference to
///   the device file, so closing the device fd does not invalidate it.
/// - No Rust reference into the mapping is ever created; every access goes through
///   [`Bar::r32`]/[`Bar::w32`], which check alignment and bounds against `len`.
pub(crate) struct Bar {
    ptr: NonNull<core::ffi::c_void>,
    pub(crate) len: usize,
}
impl Bar {
    /// Map `len` bytes of the device file `dev` at file offset `offset` (a VFIO region
    /// offset) read/write and shared, establishing the type invariants.
    fn map(dev: &File, offset: u64, len: NonZeroUsize) -> nix::Result<Bar> {
        // SAFETY: addr is None, so the kernel picks a fresh range and no existing mapping (no
        // Rust-owned memory) is replaced; `dev` is an open VFIO device fd borrowed for the call.
        // The returned pointer and `len` are moved into the `Bar`, which owns the mapping.
        let ptr = unsafe { mmap(None, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED, dev, offset as i64) }?;
        Ok(Bar { ptr, len: len.get() })
    }
    /// The address of the 32-bit register at byte offset `off`.
    ///
    /// Panics unless `off` is 4-byte aligned and `off + 4 <= len`.
    fn reg(&self, off: usize) -> *mut u32 {
        assert!(
            off % 4 == 0 && off.checked_add(4).is_some_and(|end| end <= self.len),
            "BAR0 register offset 0x{off:x} is unaligned or outside the {}-byte mapping",
            self.len
        );
        self.ptr.as_ptr().cast::<u8>().wrapping_add(off).cast::<u32>()
    }
    pub(crate) fn r32(&self, off: usize) -> u32 {
        let p = self.reg(off);
        // SAFETY: `reg` checked that [off, off + 4) lies inside the `len`-byte mapping, which is
        // live while `self` is (type invariant), and is 4-byte aligned (page-aligned base, off % 4
        // == 0). Volatile, because this is device MMIO: each read must reach the device once.
        unsafe { std::ptr::read_volatile(p) }
    }
    pub(crate) fn w32(&self, off: usize, v: u32) {
        let p = self.reg(off);
        // SAFETY: as in `r32`: `reg` bounds- and alignment-checked [off, off + 4) against the live
        // writable mapping; no Rust reference aliases it (type invariant), so writing through
        // `&self` is fine. Volatile, because each MMIO write must reach the device exactly once.
        unsafe { std::ptr::write_volatile(p, v) }
    }
    fn r64(&self, off: usize) -> u64 {
        self.r32(off) as u64 | ((self.r32(off + 4) as u64) << 32)
    }
    fn w64(&self, off: usize, v: u64) {
        self.w32(off, v as u32);
        self.w32(off + 4, (v >> 32) as u32);
    }
}
impl Drop for Bar {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `Bar::map`, still mapped and owned
        // by `self` (type invariant); no reference into it exists, and it is never used again.
        unsafe {
            let _ = munmap(self.ptr, self.len);
        }
    }
}

/// A zeroed, page-aligned anonymous host buffer mapped for device DMA through a VFIO container.
///
/// # Invariants
///
/// - `ptr` is the page-aligned start of a live, private, anonymous read/write mapping of
///   exactly `len` (> 0) bytes, created and zeroed by [`Dma::new`] and owned by this `Dma`;
///   it is unmapped only in `Drop`.
/// - While `mapped` is true, `[iova, iova + len)` in `container`'s IOMMU domain translates to
///   exactly this buffer, so the device can reach this buffer and no other memory of ours.
///   `Drop` removes the IOMMU mapping before unmapping the memory.
/// - `container` is the VFIO container the IOVA mapping lives in; the borrow keeps it open.
/// - No Rust reference into the buffer is ever created: the device writes it at any time, so
///   every access goes through the bounds-checked accessors (volatile for queue entries).
pub(crate) struct Dma<'a> {
    container: &'a File,
    ptr: NonNull<core::ffi::c_void>,
    pub(crate) len: usize,
    pub(crate) iova: u64,
    mapped: bool,
}
impl<'a> Dma<'a> {
    /// Allocate and zero `len` bytes and map them for DMA at `iova` in `container`, whose
    /// IOMMU type must already be set.
    pub(crate) fn new(container: &'a File, len: NonZeroUsize, iova: u64) -> Result<Self, String> {
        // SAFETY: anonymous mapping at a kernel-chosen address (addr None): it cannot replace or
        // alias any existing mapping. Ownership passes to the `Dma` built below.
        let ptr = unsafe {
            mmap_anonymous(None, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS)
        }
        .map_err(|e| format!("mmap DMA buffer: {e}"))?;
        // SAFETY: `ptr` is the start of the fresh, writable `len`-byte mapping just created (u8 has
        // alignment 1), and nothing else refers to it yet.
        unsafe { std::ptr::write_bytes(ptr.as_ptr() as *mut u8, 0, len.get()) };
        // From here `Drop` unmaps the memory on every path.
        let mut dma = Dma { container, ptr, len: len.get(), iova, mapped: false };
        let map = vfio_iommu_type1_dma_map {
            argsz: std::mem::size_of::<vfio_iommu_type1_dma_map>() as u32,
            flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
            vaddr: ptr.as_ptr() as u64,
            iova,
            size: len.get() as u64,
        };
        // SAFETY: `container` is an open container fd (borrowed for 'a); `map` is the bindgen
        // vfio_iommu_type1_dma_map (32 bytes, layout asserted) with argsz = its size, which the kernel
        // only reads. It pins [vaddr, vaddr + size) = exactly our buffer; `mapped` records it for Drop.
        unsafe { ioc::iommu_map_dma(container.as_raw_fd(), &map) }.map_err(|e| format!("VFIO_IOMMU_MAP_DMA: {e}"))?;
        dma.mapped = true;
        Ok(dma)
    }
    /// The address of `n` bytes at byte offset `off`, aligned to `align`.
    ///
    /// Panics unless `off` is a multiple of `align` and `[off, off + n)` lies inside the buffer.
    fn at(&self, off: u64, n: usize, align: u64) -> *mut u8 {
        assert!(
            off % align == 0 && off.checked_add(n as u64).is_some_and(|end| end <= self.len as u64),
            "DMA offset 0x{off:x} (+{n}) is misaligned or outside the {}-byte buffer",
            self.len
        );
        self.ptr.as_ptr().cast::<u8>().wrapping_add(off as usize)
    }
    /// Volatile read of the u32 at `off`: the device writes completions behind the compiler's back.
    pub(crate) fn r32(&self, off: u64) -> u32 {
        let p = self.at(off, 4, 4).cast::<u32>();
        // SAFETY: `at` checked that [off, off + 4) is inside the live mapping (type invariant) and
        // 4-byte aligned (page-aligned base). No Rust reference into the buffer exists (only these
        // accessors touch it), so the read aliases nothing; volatile so each poll reaches memory.
        unsafe { std::ptr::read_volatile(p) }
    }
    /// Volatile write of the u32 at `off` (queue entries, PRP lists).
    pub(crate) fn w32(&self, off: u64, v: u32) {
        let p = self.at(off, 4, 4).cast::<u32>();
        // SAFETY: as in `r32`, [off, off + 4) is in bounds, aligned and not referenced by Rust; the
        // mapping is writable. Writing through `&self` is sound because the memory is never borrowed.
        unsafe { std::ptr::write_volatile(p, v) }
    }
    /// Write a submission queue entry at `off` (64-byte aligned).
    pub(crate) fn write_sqe(&self, off: u64, e: &nvme::Sqe) {
        self.at(off, 64, 64);
        for (i, d) in e.iter().enumerate() {
            self.w32(off + 4 * i as u64, *d);
        }
    }
    /// Write little-endian u64s (a PRP list) at `off` (8-byte aligned).
    pub(crate) fn write_u64s(&self, off: u64, v: &[u64]) {
        self.at(off, 8 * v.len(), 8);
        for (i, x) in v.iter().enumerate() {
            self.w32(off + 8 * i as u64, *x as u32);
            self.w32(off + 8 * i as u64 + 4, (*x >> 32) as u32);
        }
    }
    /// Copy `out.len()` bytes at `off` out of the buffer. The caller makes sure the device has
    /// finished writing them (their command completed, with a fence after the phase bit).
    pub(crate) fn copy_out(&self, off: u64, out: &mut [u8]) {
        let p = self.at(off, out.len(), 1);
        // SAFETY: `at` checked [off, off + len) against the live mapping, which was zeroed at creation
        // (initialised u8s, alignment 1). `out` is a distinct Rust allocation, so the ranges do not
        // overlap. The device may still write other parts of the buffer; this copy reads only bytes
        // whose DMA has completed, so it races with nothing.
        unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), out.len()) }
    }
    pub(crate) fn unmap(&mut self) -> Result<(), String> {
        if self.mapped {
            let mut u = vfio_iommu_type1_dma_unmap {
                argsz: std::mem::size_of::<vfio_iommu_type1_dma_unmap>() as u32,
                flags: 0,
                iova: self.iova,
                size: self.len as u64,
                ..Default::default()
            };
            // SAFETY: the container fd is open (borrowed for 'a); `u` is the bindgen struct (24 bytes,
            // layout asserted, excluding the flexible `data` array) with argsz = its size. flags = 0,
            // so the kernel reads no trailing data (no dirty bitmap) and writes back only `size`.
            unsafe { ioc::iommu_unmap_dma(self.container.as_raw_fd(), &mut u) }
                .map_err(|e| format!("VFIO_IOMMU_UNMAP_DMA: {e}"))?;
            self.mapped = false;
        }
        Ok(())
    }
}
impl Drop for Dma<'_> {
    fn drop(&mut self) {
        let _ = self.unmap();
        // SAFETY: `ptr`/`len` are exactly the mapping made in `Dma::new`, owned by `self`, and no
        // slice into it outlives `self`. If the IOMMU unmap above failed, type1 keeps the pages pinned
        // until the container closes, so they are never reused for other memory the device could reach.
        unsafe {
            let _ = munmap(self.ptr, self.len);
        }
    }
}

const PAGE: usize = 4096;
const IOVA: u64 = 0x1000_0000;
pub(crate) const REG_CC: usize = 0x14;
const REG_CSTS: usize = 0x1c;
const REG_AQA: usize = 0x24;
const REG_ASQ: usize = 0x28;
const REG_ACQ: usize = 0x30;

fn wait_rdy(bar: &Bar, want: bool, timeout: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let csts = bar.r32(REG_CSTS);
        if csts & 2 != 0 {
            return Err(format!("controller fatal status (CSTS=0x{csts:x}, CFS set)"));
        }
        if (csts & 1 == 1) == want {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!("timeout waiting for CSTS.RDY={} (CSTS=0x{csts:x})", want as u8));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// An enabled controller and its admin queue pair, which live in `dma` at the offsets of
/// [`nvme::Layout`]. Admin commands run one at a time, each with a timeout.
pub(crate) struct Ctrl<'b, 'a> {
    pub(crate) bar: &'b Bar,
    pub(crate) dma: &'b Dma<'a>,
    pub(crate) cap: Cap,
    /// Limit for every admin command and every I/O wait.
    pub(crate) timeout: Duration,
    lay: nvme::Layout,
    tail: u32,
    head: u32,
    phase: bool,
    cid: u16,
}

impl<'b, 'a> Ctrl<'b, 'a> {
    /// Reset the controller, point it at the admin queues and enable it (4 KiB pages, NVM
    /// command set, 64-byte SQ and 16-byte CQ entries).
    pub(crate) fn enable(bar: &'b Bar, dma: &'b Dma<'a>, cap: &Cap, timeout: Duration) -> Result<Self, String> {
        let lay = nvme::Layout::new(1, PAGE as u64);
        if (dma.len as u64) < lay.io_sq {
            return Err(format!("DMA buffer of {} bytes is smaller than the admin queues need", dma.len));
        }
        let (_, cq0) = nvme::doorbells(0, cap.dstrd);
        if cq0 + 4 > bar.len {
            return Err(format!("CQ0 head doorbell at 0x{cq0:x} (CAP.DSTRD={}) lies outside BAR0 ({} bytes)", cap.dstrd, bar.len));
        }
        let rdy = Duration::from_millis(cap.timeout_ms.max(500));
        if bar.r32(REG_CC) & 1 == 1 {
            bar.w32(REG_CC, 0);
        }
        wait_rdy(bar, false, rdy)?;
        let q = nvme::ADMIN_QSIZE - 1;
        bar.w32(REG_AQA, (q << 16) | q);
        bar.w64(REG_ASQ, dma.iova + lay.admin_sq);
        bar.w64(REG_ACQ, dma.iova + lay.admin_cq);
        // EN, CSS=NVM, MPS=4K, AMS=RR, IOSQES=6, IOCQES=4
        bar.w32(REG_CC, 1 | (6 << 16) | (4 << 20));
        wait_rdy(bar, true, rdy)?;
        Ok(Ctrl { bar, dma, cap: cap.clone(), timeout, lay, tail: 0, head: 0, phase: true, cid: 0 })
    }

    /// CSTS when the controller reports a fatal status (CSTS.CFS).
    pub(crate) fn fatal(&self) -> Option<u32> {
        let csts = self.bar.r32(REG_CSTS);
        (csts & 2 != 0 || csts == u32::MAX).then_some(csts)
    }

    /// Submit one admin command and wait for its completion: (dword 0, status). Errors are
    /// a timeout, a fatal controller, or a completion for another command.
    pub(crate) fn admin(&mut self, mut e: nvme::Sqe, what: &str) -> Result<(u32, nvme::Status), String> {
        self.cid = self.cid.wrapping_add(1);
        let cid = self.cid;
        e[0] = (e[0] & 0xffff) | ((cid as u32) << 16);
        let (sq_db, cq_db) = nvme::doorbells(0, self.cap.dstrd);
        self.dma.write_sqe(self.lay.admin_sq + 64 * self.tail as u64, &e);
        self.tail = (self.tail + 1) % nvme::ADMIN_QSIZE;
        fence(Ordering::SeqCst);
        self.bar.w32(sq_db, self.tail);
        let cqe = self.lay.admin_cq + 16 * self.head as u64;
        let start = Instant::now();
        let dw3 = loop {
            let dw3 = self.dma.r32(cqe + 12);
            if (dw3 & (1 << 16) != 0) == self.phase {
                break dw3;
            }
            if let Some(csts) = self.fatal() {
                return Err(format!("{what}: controller fatal status (CSTS=0x{csts:x})"));
            }
            if start.elapsed() > self.timeout {
                return Err(format!("{what}: no completion within {:?}", self.timeout));
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        fence(Ordering::SeqCst);
        let dw0 = self.dma.r32(cqe);
        self.head = (self.head + 1) % nvme::ADMIN_QSIZE;
        if self.head == 0 {
            self.phase = !self.phase;
        }
        self.bar.w32(cq_db, self.head);
        if dw3 & 0xffff != cid as u32 {
            return Err(format!("{what}: completion for command {} while waiting for {cid}", dw3 & 0xffff));
        }
        Ok((dw0, nvme::Status::from_dw3(dw3)))
    }

    /// As [`Ctrl::admin`], and any status other than success is an error naming SCT and SC.
    pub(crate) fn admin_ok(&mut self, e: nvme::Sqe, what: &str) -> Result<u32, String> {
        match self.admin(e, what)? {
            (dw0, st) if st.ok() => Ok(dw0),
            (_, st) => Err(format!("{what} failed: {st}")),
        }
    }

    /// Run an Identify (CNS `cns`) and copy out its 4 KiB of data.
    pub(crate) fn identify(&mut self, cns: u32, nsid: u32, what: &str) -> Result<Vec<u8>, String> {
        let e = nvme::identify_cmd(0, cns, nsid, self.dma.iova + self.lay.identify);
        self.admin_ok(e, what)?;
        Ok(self.identify_data())
    }

    /// The identify page, as the last completed Identify left it.
    fn identify_data(&self) -> Vec<u8> {
        let mut d = vec![0u8; PAGE];
        self.dma.copy_out(self.lay.identify, &mut d);
        d
    }

    /// Clear CC.EN and wait for CSTS.RDY=0: the controller stops all DMA and drops its queues.
    pub(crate) fn disable(&self) -> Result<(), String> {
        self.bar.w32(REG_CC, 0);
        let rdy = Duration::from_millis(self.cap.timeout_ms.max(500));
        // A controller in fatal status still has to go not-ready after the reset.
        match wait_rdy(self.bar, false, rdy) {
            Err(e) if e.contains("fatal") => {
                let start = Instant::now();
                while self.bar.r32(REG_CSTS) & 1 == 1 {
                    if start.elapsed() > rdy {
                        return Err(format!("controller stays ready after disable: {e}"));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            }
            r => r,
        }
    }
}

/// Run the handshake. `r` supplies the /dev root (for /dev/vfio) and sysfs (for the group).
pub fn handshake(r: &Roots, b: &Bdf) -> Handshake {
    let mut h = Handshake { bdf: b.to_string(), ..Default::default() };
    match with_device(r, b, &mut h, identify_only) {
        Ok(()) => h.ok = true,
        Err(e) => h.error = Some(e),
    }
    h
}

fn identify_only(container: &File, bar: &Bar, h: &mut Handshake) -> Result<(), String> {
    // DMA: page 0 admin SQ, page 1 admin CQ, page 2 identify data.
    let dlen = 3 * PAGE;
    let mut dma = Dma::new(container, NonZeroUsize::new(dlen).unwrap(), IOVA)?;
    h.steps.push(format!("DMA buffer of {dlen} bytes mapped at IOVA 0x{IOVA:x}"));
    let res = Ctrl::enable(bar, &dma, &h.cap, Duration::from_secs(5)).and_then(|mut c| {
        h.steps.push("controller enabled".into());
        let e = nvme::identify_cmd(0, 1, 0, dma.iova + c.lay.identify);
        let (_, st) = c.admin(e, "Identify Controller")?;
        h.identify_status = ((st.sct as u16) << 8) | st.sc as u16;
        if !st.ok() {
            return Err(format!("Identify Controller failed: {st}"));
        }
        Ok(c.identify_data())
    });
    // Always disable the controller, then unmap: the device must be quiet before its memory goes.
    bar.w32(REG_CC, 0);
    let dis = wait_rdy(bar, false, Duration::from_millis(h.cap.timeout_ms.max(500)));
    let un = dma.unmap();
    let data = res?;
    dis?;
    un?;
    let id = parse_identify(&data, h.cap.mpsmin_bytes);
    h.steps.push(format!("Identify Controller: status 0, model '{}', serial '{}'", id.model, id.serial));
    h.identify = Some(id);
    h.steps.push("controller disabled, DMA unmapped".into());
    Ok(())
}

/// Open `b` through VFIO (container, group, device fd, BAR0 mapped, memory space and bus
/// mastering on), run `f` with the container and BAR0, then unmap BAR0 and detach the group on
/// every path. `h` collects the steps and what the device reports.
pub(crate) fn with_device<T>(
    r: &Roots,
    b: &Bdf,
    h: &mut Handshake,
    f: impl FnOnce(&File, &Bar, &mut Handshake) -> Result<T, String>,
) -> Result<T, String> {
    let drv = sys::driver_of(r, b);
    if drv.as_deref() != Some(VFIO_DRIVER) {
        return Err(format!(
            "{b} is on {} rather than vfio-pci; run 'aether-part bind {b}' first",
            drv.as_deref().unwrap_or("no driver")
        ));
    }
    let group = sys::iommu_group(r, b).ok_or_else(|| format!("{b} has no IOMMU group"))?;
    h.iommu_group = group;
    let open = |p: std::path::PathBuf| {
        OpenOptions::new().read(true).write(true).open(&p).map_err(|e| format!("open {}: {e}", p.display()))
    };
    let container = open(r.dev.join("vfio/vfio"))?;
    let cfd = container.as_raw_fd();
    // SAFETY: `cfd` is the fd of `container`, an open /dev/vfio/vfio File alive for this whole
    // function; VFIO_GET_API_VERSION takes no argument, so the kernel touches no user memory.
    h.api_version = unsafe { ioc::get_api_version(cfd) }.map_err(|e| format!("VFIO_GET_API_VERSION: {e}"))?;
    if h.api_version != VFIO_API_VERSION as i32 {
        return Err(format!("unexpected VFIO API version {}", h.api_version));
    }
    // SAFETY: `cfd` is the open container fd (see above); the extension id is passed by value
    // as an int, so no user memory is involved.
    h.type1v2 = unsafe { ioc::check_extension(cfd, VFIO_TYPE1v2_IOMMU as i32) }.map_err(|e| format!("VFIO_CHECK_EXTENSION: {e}"))? == 1;
    if !h.type1v2 {
        return Err("the VFIO container does not support TYPE1v2 (no IOMMU? noiommu mode cannot map DMA)".into());
    }
    h.steps.push(format!("container open, API {}, TYPE1v2 supported", h.api_version));
    let grp = open(r.dev.join(format!("vfio/{group}")))?;
    let gfd = grp.as_raw_fd();
    let mut st = vfio_group_status { argsz: std::mem::size_of::<vfio_group_status>() as u32, flags: 0 };
    // SAFETY: `gfd` is the fd of `grp`, an open /dev/vfio/<group> File alive for this function; `st` is
    // the bindgen vfio_group_status (8 bytes, layout asserted against <linux/vfio.h>) with argsz = its
    // size, and the kernel writes at most argsz bytes through the exclusive `&mut st`.
    unsafe { ioc::group_get_status(gfd, &mut st) }.map_err(|e| format!("VFIO_GROUP_GET_STATUS: {e}"))?;
    h.group_viable = st.flags & VFIO_GROUP_FLAGS_VIABLE != 0;
    if !h.group_viable {
        return Err(format!(
            "IOMMU group {group} is not viable: some member is still bound to a host driver"
        ));
    }
    // SAFETY: `gfd` is the open group fd; the kernel reads one int (a container fd) through the
    // pointer, and `&cfd` points to a live i32 holding `container`'s fd, open for this function.
    unsafe { ioc::group_set_container(gfd, &cfd) }.map_err(|e| format!("VFIO_GROUP_SET_CONTAINER: {e}"))?;
    let res = with_container(&container, &grp, b, h, f);
    // SAFETY: `gfd` is still owned by `grp`, which is alive; the ioctl takes no argument. Every
    // mapping made under the container (`Bar`, `Dma`) was dropped inside `with_container`.
    let _ = unsafe { ioc::group_unset_container(gfd) };
    h.steps.push("BAR0 unmapped, group detached from container, fds closed".into());
    res
}

fn with_container<T>(
    container: &File,
    grp: &File,
    b: &Bdf,
    h: &mut Handshake,
    f: impl FnOnce(&File, &Bar, &mut Handshake) -> Result<T, String>,
) -> Result<T, String> {
    // SAFETY: `container` is an open container File borrowed for this call; the IOMMU type is
    // passed by value as an int, so no user memory is involved.
    unsafe { ioc::set_iommu(container.as_raw_fd(), VFIO_TYPE1v2_IOMMU as i32) }.map_err(|e| format!("VFIO_SET_IOMMU(TYPE1v2): {e}"))?;
    h.steps.push(format!("group {} viable, attached, IOMMU type TYPE1v2 set", h.iommu_group));
    let name = CString::new(b.to_string()).unwrap();
    // SAFETY: `grp` is an open group File; the kernel reads a NUL-terminated device name through the
    // pointer, and `name` is a CString (NUL-terminated, no interior NUL) alive until the function ends.
    let dfd = unsafe { ioc::group_get_device_fd(grp.as_raw_fd(), name.as_ptr() as *const u8) }
        .map_err(|e| format!("VFIO_GROUP_GET_DEVICE_FD: {e}"))?;
    // SAFETY: `dfd` is a new fd the successful VFIO_GROUP_GET_DEVICE_FD just installed; nothing else
    // owns or closes it, so `dev` takes sole ownership. `dev` lives to the end of this function, past
    // every use of `dfd` below (and past `bar`, which is declared later and so dropped first).
    let dev = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(dfd) };
    let mut info = vfio_device_info { argsz: std::mem::size_of::<vfio_device_info>() as u32, ..Default::default() };
    // SAFETY: `dfd` is owned by the live `dev`; `info` is the bindgen vfio_device_info (24 bytes, layout
    // asserted) with argsz = its size; the kernel writes at most argsz bytes (a capability chain is only
    // copied when argsz is large enough for it; otherwise only the needed argsz is reported).
    unsafe { ioc::device_get_info(dfd, &mut info) }.map_err(|e| format!("VFIO_DEVICE_GET_INFO: {e}"))?;
    h.device_regions = info.num_regions;
    h.device_irqs = info.num_irqs;
    let region = |idx: u32| -> Result<vfio_region_info, String> {
        let mut ri = vfio_region_info { argsz: std::mem::size_of::<vfio_region_info>() as u32, index: idx, ..Default::default() };
        // SAFETY: `dfd` is owned by `dev`, which outlives this closure's uses; `ri` is the bindgen
        // vfio_region_info (32 bytes, layout asserted) with argsz = its size, so the kernel writes at
        // most argsz bytes (capabilities are only copied when argsz has room for them).
        unsafe { ioc::device_get_region_info(dfd, &mut ri) }.map_err(|e| format!("VFIO_DEVICE_GET_REGION_INFO({idx}): {e}"))?;
        Ok(ri)
    };
    // Enable memory space and bus mastering in the PCI command register.
    let cfg = region(VFIO_PCI_CONFIG_REGION_INDEX)?;
    let mut cmd = [0u8; 2];
    dev.read_exact_at(&mut cmd, cfg.offset + 4).map_err(|e| format!("config read: {e}"))?;
    let c = u16::from_le_bytes(cmd) | 0x6;
    dev.write_all_at(&c.to_le_bytes(), cfg.offset + 4).map_err(|e| format!("config write: {e}"))?;

    let bar0 = region(VFIO_PCI_BAR0_REGION_INDEX)?;
    h.bar0_size = bar0.size;
    if bar0.flags & VFIO_REGION_INFO_FLAG_MMAP == 0 || bar0.size < 0x2000 {
        return Err(format!("BAR0 cannot be mmapped (flags 0x{:x}, size {})", bar0.flags, bar0.size));
    }
    let len = bar0.size as usize;
    let bar = Bar::map(&dev, bar0.offset, NonZeroUsize::new(len).unwrap()).map_err(|e| format!("mmap BAR0: {e}"))?;
    let cap = bar.r64(0);
    let vs = bar.r32(8);
    h.cap = parse_cap(cap);
    h.version = version_string(vs);
    h.steps.push(format!("BAR0 mapped ({} bytes): CAP={} VS={}", len, h.cap.raw, h.version));
    let res = f(container, &bar, h);
    drop(bar);
    drop(dev);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_decoding_matches_qemu() {
        // The value QEMU's emulated NVMe reports (../shared/toolchain.md).
        let c = parse_cap(0x004018200f0107ff);
        assert_eq!(c.mqes, 2048);
        assert_eq!(c.timeout_ms, 0x0f * 500);
        assert_eq!(c.dstrd, 0);
        assert!(c.css_nvm);
        assert_eq!(c.mpsmin_bytes, 4096);
        assert_eq!(c.mpsmax_bytes, 4096 << 4);
        assert_eq!(version_string(0x00010400), "1.4.0");
    }

    #[test]
    fn identify_encoding_and_decoding() {
        let e = identify_sqe(7, 0x1_2000_3000);
        assert_eq!(e[0], 0x0007_0006);
        assert_eq!((e[6], e[7]), (0x2000_3000, 1));
        assert_eq!(e[10], 1);
        let mut d = vec![0u8; 4096];
        d[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        d[4..24].copy_from_slice(b"aether0             ");
        d[24..64].copy_from_slice(format!("{:<40}", "QEMU NVMe Ctrl").as_bytes());
        d[64..72].copy_from_slice(b"9.2.0   ");
        d[77] = 7;
        d[512] = 0x66;
        d[513] = 0x44;
        d[516..520].copy_from_slice(&256u32.to_le_bytes());
        let id = parse_identify(&d, 4096);
        assert_eq!(id.vid, 0x1b36);
        assert_eq!(id.serial, "aether0");
        assert_eq!(id.model, "QEMU NVMe Ctrl");
        assert_eq!(id.firmware, "9.2.0");
        assert_eq!(id.mdts_bytes, Some(4096 << 7));
        assert_eq!((id.sqes, id.cqes, id.nn), (0x66, 0x44, 256));
        d[77] = 0;
        assert_eq!(parse_identify(&d, 4096).mdts_bytes, None, "MDTS 0 means no limit");
    }

    #[test]
    fn ioctl_numbers_are_vfio_io() {
        // _IO(';', 100) = 0x3b64; the VFIO ioctls are all argument-less _IO numbers.
        assert_eq!(ioc::VFIO_GET_API_VERSION(), 0x3b64);
        assert_eq!(ioc::VFIO_GROUP_GET_DEVICE_FD(), 0x3b6a);
        assert_eq!(ioc::VFIO_IOMMU_MAP_DMA(), 0x3b71);
        assert_eq!(ioc::VFIO_IOMMU_UNMAP_DMA(), 0x3b72);
    }
}
