// SPDX-License-Identifier: GPL-2.0

//! One debugfs directory per mapped device, surviving table reloads.
//!
//! device-mapper builds a reloaded table while the old one is still live and
//! destroys the old one only after `resume` swapped them, so a directory per
//! *table* would collide with itself. aether keeps one directory per *mapped
//! device*: created with its first table, removed with its last, and its files
//! always act on whichever table is live (switched in `resume`).
//!
//! A `dmsetup rename` is not reported to targets. So that a stale directory
//! never tunes the wrong device, every file operation checks the device's
//! current name and refuses (`ESTALE`, one log line naming the new name) when
//! it changed. The directory moves to the new name on the next table load or
//! resume of any aether device.

use crate::debugfs_files::DeviceFiles;
use crate::kernel_ext::debugfs::Dir;
use crate::kernel_ext::dm::{MappedDevice, DM_NAME_LEN};
use crate::kernel_ext::print::ratelimit;
use crate::target::Shared;
use crate::tuning::{DeviceTuning, TuneError, Tunable};
use core::fmt::Write;
use kernel::{new_mutex, new_spinlock, prelude::*, str::CStr, sync::{Arc, Mutex, SpinLock}};

/// A device name as `dm_copy_name_and_uuid` writes it.
type NameBuf = [u8; DM_NAME_LEN];

/// `name` as a NUL-padded buffer (names longer than the buffer cannot occur:
/// device-mapper limits them to `DM_NAME_LEN` with the NUL).
fn name_buf(name: &CStr) -> NameBuf {
    let mut buf: NameBuf = [0; DM_NAME_LEN];
    if let Some(dst) = buf.get_mut(..name.len()) {
        dst.copy_from_slice(name.as_bytes());
    }
    buf
}

/// Whether `buf` holds exactly `name`.
fn holds_name(buf: &NameBuf, name: &CStr) -> bool {
    buf.get(..name.len()) == Some(name.as_bytes()) && buf.get(name.len()) == Some(&0)
}

/// Forwards the tuning interfaces to the device's live table.
#[pin_data]
pub(crate) struct LiveDevice {
    md: MappedDevice,
    /// The name the debugfs directory has (empty if there is none).
    #[pin]
    dir_name: SpinLock<NameBuf>,
    #[pin]
    current: SpinLock<Option<Arc<Shared>>>,
}

impl LiveDevice {
    /// The live table, unless the device was renamed away from this directory.
    fn current(&self) -> Result<Arc<Shared>, TuneError> {
        let mut now: NameBuf = [0; DM_NAME_LEN];
        let dir = *self.dir_name.lock();
        if let Some(name) = self.md.name(&mut now) {
            if !holds_name(&dir, name) {
                if ratelimit() {
                    pr_err!("debugfs directory is stale: the device was renamed to '{}'\n", name.to_str().unwrap_or("?"));
                }
                return Err(TuneError::Renamed);
            }
        }
        self.current.lock().clone().ok_or(TuneError::Gone)
    }
}

impl DeviceTuning for LiveDevice {
    fn set(&self, name: &str, value: &str) -> Result<(), TuneError> {
        self.current()?.set(name, value)
    }
    fn get(&self, t: Tunable, w: &mut dyn Write) -> core::fmt::Result {
        self.current().map_err(|_| core::fmt::Error)?.get(t, w)
    }
    fn write_stats(&self, w: &mut dyn Write, sep: &str, end: &str) -> core::fmt::Result {
        self.current().map_err(|_| core::fmt::Error)?.write_stats(w, sep, end)
    }
    fn write_histograms(&self, w: &mut dyn Write) -> core::fmt::Result {
        self.current().map_err(|_| core::fmt::Error)?.write_histograms(w)
    }
    fn reset_stats(&self) {
        if let Ok(s) = self.current() {
            s.reset_stats();
        }
    }
}

/// A mapped device with at least one aether table.
struct Entry {
    /// `MappedDevice::id()` of the mapped device.
    md: usize,
    /// Tables of this device that exist (live or being loaded).
    tables: u32,
    live: Arc<LiveDevice>,
    files: DeviceFiles,
}

/// Every mapped device that has aether tables, with its debugfs files.
/// Slots are emptied rather than removed, so leaving never allocates.
#[pin_data]
pub(crate) struct Registry {
    root: Dir,
    #[pin]
    devices: Mutex<KVec<Option<Entry>>>,
}

impl Registry {
    /// A registry whose device directories go below `root`.
    pub(crate) fn new(root: Dir) -> Result<Arc<Self>> {
        Arc::pin_init(try_pin_init!(Self { root, devices <- new_mutex!(KVec::new(), "aether_devices") }? Error), GFP_KERNEL)
    }

    /// Records a new table of device `md`. The device's files act on
    /// `shared` until another table is resumed.
    pub(crate) fn attach(self: &Arc<Self>, md: MappedDevice, shared: &Arc<Shared>) -> Result<Attachment> {
        let mut devices = self.devices.lock();
        Self::follow_renames(&mut devices);
        if let Some(e) = devices.iter_mut().flatten().find(|e| e.md == md.id()) {
            e.tables = e.tables.saturating_add(1);
            let mut cur = e.live.current.lock();
            if cur.is_none() {
                *cur = Some(shared.clone());
            }
        } else {
            let mut current: NameBuf = [0; DM_NAME_LEN];
            let name = md.name(&mut current);
            let dir_name = name.map_or([0; DM_NAME_LEN], name_buf);
            let live = Arc::pin_init(
                pin_init!(LiveDevice {
                    md,
                    dir_name <- new_spinlock!(dir_name, "aether_dir_name"),
                    current <- new_spinlock!(Some(shared.clone()), "aether_live"),
                }),
                GFP_KERNEL,
            )?;
            let files = match name {
                Some(name) => DeviceFiles::new(&self.root, name, live.clone())?,
                None => DeviceFiles::absent(),
            };
            if !files.is_present() {
                pr_warn!("no debugfs directory for this device (debugfs off, or the name is taken)\n");
                *live.dir_name.lock() = [0; DM_NAME_LEN];
            }
            let entry = Entry { md: md.id(), tables: 1, live, files };
            match devices.iter_mut().find(|slot| slot.is_none()) {
                Some(slot) => *slot = Some(entry),
                None => devices.push(Some(entry), GFP_KERNEL)?,
            }
        }
        Ok(Attachment { registry: self.clone(), md: md.id(), shared: shared.clone() })
    }

    /// Points device `md`'s files at `shared`, its newly live table.
    pub(crate) fn make_live(&self, md: usize, shared: &Arc<Shared>) {
        let mut devices = self.devices.lock();
        Self::follow_renames(&mut devices);
        if let Some(e) = devices.iter().flatten().find(|e| e.md == md) {
            *e.live.current.lock() = Some(shared.clone());
        }
    }

    /// Moves the directory of every renamed device to its current name.
    fn follow_renames(devices: &mut KVec<Option<Entry>>) {
        for e in devices.iter_mut().flatten() {
            let mut now: NameBuf = [0; DM_NAME_LEN];
            let Some(name) = e.live.md.name(&mut now) else { continue };
            let dir = *e.live.dir_name.lock();
            if holds_name(&dir, name) || !e.files.is_present() {
                continue;
            }
            if e.files.rename(name).is_ok() {
                *e.live.dir_name.lock() = name_buf(name);
            } else {
                pr_warn!("cannot move the debugfs directory of renamed device '{}'\n", name.to_str().unwrap_or("?"));
            }
        }
    }

    fn detach(&self, md: usize, shared: &Arc<Shared>) {
        let mut devices = self.devices.lock();
        let Some(slot) = devices.iter_mut().find(|slot| slot.as_ref().is_some_and(|e| e.md == md)) else {
            return;
        };
        let last = match slot {
            Some(e) => {
                e.tables = e.tables.saturating_sub(1);
                let mut cur = e.live.current.lock();
                if cur.as_ref().is_some_and(|c| Arc::ptr_eq(c, shared)) {
                    *cur = None;
                }
                e.tables == 0
            }
            None => false,
        };
        if last {
            // Removing the files waits for their in-flight reads and writes.
            *slot = None;
        }
    }
}

/// A table's membership in the [`Registry`]; leaving on drop.
pub(crate) struct Attachment {
    registry: Arc<Registry>,
    md: usize,
    shared: Arc<Shared>,
}

impl Attachment {
    /// This table became the device's live table.
    pub(crate) fn make_live(&self) {
        self.registry.make_live(self.md, &self.shared);
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.registry.detach(self.md, &self.shared);
    }
}
