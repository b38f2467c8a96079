// SPDX-License-Identifier: GPL-2.0

//! One debugfs directory per mapped device, surviving table reloads.
//!
//! device-mapper builds a reloaded table while the old one is still live and
//! destroys the old one only after `resume` swapped them, so a directory per
//! *table* would collide with itself. aether keeps one directory per *mapped
//! device*: created with its first table, removed with its last, and its files
//! always act on whichever table is live (switched in `resume`).
//!
//! A `dmsetup rename` is not reported to targets, so the directory keeps the
//! name the device had when its first aether table was loaded.

use crate::debugfs_files::DeviceFiles;
use crate::kernel_ext::debugfs::Dir;
use crate::target::Shared;
use crate::tuning::{DeviceTuning, TuneError, Tunable};
use core::fmt::Write;
use kernel::{new_mutex, new_spinlock, prelude::*, str::CStr, sync::{Arc, Mutex, SpinLock}};

/// Forwards the tuning interfaces to the device's live table.
#[pin_data]
pub(crate) struct LiveDevice {
    #[pin]
    current: SpinLock<Option<Arc<Shared>>>,
}

impl LiveDevice {
    fn current(&self) -> Option<Arc<Shared>> {
        self.current.lock().clone()
    }
}

impl DeviceTuning for LiveDevice {
    fn set(&self, name: &str, value: &str) -> Result<(), TuneError> {
        self.current().ok_or(TuneError::Gone)?.set(name, value)
    }
    fn get(&self, t: Tunable, w: &mut dyn Write) -> core::fmt::Result {
        self.current().ok_or(core::fmt::Error)?.get(t, w)
    }
    fn write_stats(&self, w: &mut dyn Write, sep: &str, end: &str) -> core::fmt::Result {
        self.current().ok_or(core::fmt::Error)?.write_stats(w, sep, end)
    }
    fn write_histograms(&self, w: &mut dyn Write) -> core::fmt::Result {
        self.current().ok_or(core::fmt::Error)?.write_histograms(w)
    }
    fn reset_stats(&self) {
        if let Some(s) = self.current() {
            s.reset_stats();
        }
    }
}

/// A mapped device with at least one aether table.
struct Entry {
    /// `Target::device_id()` of the mapped device.
    md: usize,
    /// Tables of this device that exist (live or being loaded).
    tables: u32,
    live: Arc<LiveDevice>,
    _files: DeviceFiles,
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

    /// Records a new table of device `md` (named `name`, if known). The
    /// device's files act on `shared` until another table is resumed.
    pub(crate) fn attach(self: &Arc<Self>, md: usize, name: Option<&CStr>, shared: &Arc<Shared>) -> Result<Attachment> {
        let mut devices = self.devices.lock();
        if let Some(e) = devices.iter_mut().flatten().find(|e| e.md == md) {
            e.tables = e.tables.saturating_add(1);
            let mut cur = e.live.current.lock();
            if cur.is_none() {
                *cur = Some(shared.clone());
            }
        } else {
            let live = Arc::pin_init(pin_init!(LiveDevice { current <- new_spinlock!(Some(shared.clone()), "aether_live") }), GFP_KERNEL)?;
            let files = match name {
                Some(name) => DeviceFiles::new(&self.root, name, live.clone())?,
                None => DeviceFiles::absent(),
            };
            if !files.is_present() {
                pr_warn!("no debugfs directory for this device (name taken, e.g. by a renamed device, or debugfs off)\n");
            }
            let entry = Entry { md, tables: 1, live, _files: files };
            match devices.iter_mut().find(|slot| slot.is_none()) {
                Some(slot) => *slot = Some(entry),
                None => devices.push(Some(entry), GFP_KERNEL)?,
            }
        }
        Ok(Attachment { registry: self.clone(), md, shared: shared.clone() })
    }

    /// Points device `md`'s files at `shared`, its newly live table.
    pub(crate) fn make_live(&self, md: usize, shared: &Arc<Shared>) {
        let devices = self.devices.lock();
        if let Some(e) = devices.iter().flatten().find(|e| e.md == md) {
            *e.live.current.lock() = Some(shared.clone());
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
