// SPDX-License-Identifier: GPL-2.0

//! One debugfs directory per mapped device, surviving table reloads and renames.
//!
//! device-mapper builds a reloaded table while the old one is still live and
//! destroys the old one only after `resume` swapped them, so a directory per
//! *table* would collide with itself. aether keeps one directory per *mapped
//! device*: created with its first table, removed with its last, and its files
//! always act on whichever table is live (switched in `resume`).
//!
//! The directory is named after the device's disk, `dm-N`, which is fixed for
//! the device's life: a `dmsetup rename` (which device-mapper does not report to
//! targets, and 6.12's debugfs has no `debugfs_change_name` for) cannot make it
//! stale or point it at another device. Next to it, a symbolic link with the
//! device's `dmsetup` name (`<name> -> dm-N`) is what users open. After a rename
//! the link keeps the old name, still leading to the same device, until the
//! next table load or resume of that device moves it; creating a device under
//! the old name takes the name over at once.

use crate::debugfs_files::DeviceFiles;
use crate::kernel_ext::debugfs::{Dir, Link};
use crate::kernel_ext::dm::{DeviceId, MappedDevice, DM_NAME_LEN};
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

/// Forwards the tuning interfaces to the device's live table.
#[pin_data]
pub(crate) struct LiveDevice {
    #[pin]
    current: SpinLock<Option<Arc<Shared>>>,
}

impl LiveDevice {
    /// The live table.
    fn current(&self) -> Result<Arc<Shared>, TuneError> {
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
    md: DeviceId,
    /// Tables of this device that exist (live or being loaded).
    tables: u32,
    live: Arc<LiveDevice>,
    /// The name link (before `files`: it goes first).
    link: Link,
    /// The name `link` has (empty if there is none).
    link_name: NameBuf,
    /// `dm-N/` and its files.
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
    pub(crate) fn attach(self: &Arc<Self>, md: MappedDevice<'_>, shared: &Arc<Shared>) -> Result<Attachment> {
        let mut devices = self.devices.lock();
        if let Some(e) = devices.iter_mut().flatten().find(|e| e.md == md.id()) {
            e.tables = e.tables.saturating_add(1);
            let mut cur = e.live.current.lock();
            if cur.is_none() {
                *cur = Some(shared.clone());
            }
        } else {
            let live = Arc::pin_init(pin_init!(LiveDevice { current <- new_spinlock!(Some(shared.clone()), "aether_live") }), GFP_KERNEL)?;
            let files = DeviceFiles::new(&self.root, md.disk_name(), live.clone())?;
            if !files.is_present() {
                pr_warn!("no debugfs directory for this device (debugfs off, or the name is taken)\n");
            }
            let entry = Entry { md: md.id(), tables: 1, live, link: Link::absent(), link_name: [0; DM_NAME_LEN], files };
            match devices.iter_mut().find(|slot| slot.is_none()) {
                Some(slot) => *slot = Some(entry),
                None => devices.push(Some(entry), GFP_KERNEL)?,
            }
        }
        self.follow_name(&mut devices, md);
        Ok(Attachment { registry: self.clone(), md: md.id(), shared: shared.clone() })
    }

    /// Points device `md`'s files at `shared`, its newly live table.
    fn make_live(&self, md: MappedDevice<'_>, shared: &Arc<Shared>) {
        let mut devices = self.devices.lock();
        if let Some(e) = devices.iter().flatten().find(|e| e.md == md.id()) {
            *e.live.current.lock() = Some(shared.clone());
        }
        self.follow_name(&mut devices, md);
    }

    /// Points the name link of `md` at its directory under its current name.
    /// device-mapper names are unique, so a link of that name left by another
    /// device (renamed since) is stale and goes.
    fn follow_name(&self, devices: &mut KVec<Option<Entry>>, md: MappedDevice<'_>) {
        let mut buf: NameBuf = [0; DM_NAME_LEN];
        let Some(name) = md.name(&mut buf) else { return };
        let want = name_buf(name);
        if devices.iter().flatten().any(|e| e.md == md.id() && e.link_name == want && e.link.is_present()) {
            return;
        }
        for e in devices.iter_mut().flatten().filter(|e| e.link_name == want) {
            e.link = Link::absent();
            e.link_name = [0; DM_NAME_LEN];
        }
        if let Some(e) = devices.iter_mut().flatten().find(|e| e.md == md.id()) {
            e.link = Link::absent();
            e.link = self.root.symlink(name, md.disk_name());
            e.link_name = if e.link.is_present() { want } else { [0; DM_NAME_LEN] };
            if !e.link.is_present() && e.files.is_present() {
                pr_warn!("cannot create the debugfs link '{}'\n", name.to_str().unwrap_or("?"));
            }
        }
    }

    fn detach(&self, md: DeviceId, shared: &Arc<Shared>) {
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
    md: DeviceId,
    shared: Arc<Shared>,
}

impl Attachment {
    /// This table became the live table of `md`, its device.
    pub(crate) fn make_live(&self, md: MappedDevice<'_>) {
        self.registry.make_live(md, &self.shared);
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.registry.detach(self.md, &self.shared);
    }
}
