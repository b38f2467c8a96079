//! Input validation and the bind plan: what would happen and every reason to refuse.

use crate::parse::Bdf;
use crate::sys::{self, Disk, GroupMember, Roots};
use serde::Serialize;

pub const VFIO_DRIVER: &str = "vfio-pci";

/// The caller asked for something that cannot be done; nothing was changed.
#[derive(Debug)]
pub struct UsageError(pub String);

pub fn require_root(euid: u32, what: &str) -> Result<(), UsageError> {
    if euid != 0 {
        return Err(UsageError(format!(
            "'{what}' must run as root (effective uid is {euid}); nothing was changed"
        )));
    }
    Ok(())
}

/// Parse and check BDFs: well-formed, known to sysfs, no duplicates.
pub fn parse_bdfs(r: &Roots, args: &[String]) -> Result<Vec<Bdf>, UsageError> {
    if args.is_empty() {
        return Err(UsageError("no PCI address given".into()));
    }
    let mut out: Vec<Bdf> = Vec::new();
    for a in args {
        let b: Bdf = a.parse().map_err(UsageError)?;
        if !sys::pci_exists(r, &b) {
            return Err(UsageError(format!(
                "unknown PCI device {b}: no {} (see 'aether-part status' for the list)",
                r.pci_dev(&b).display()
            )));
        }
        if !out.contains(&b) {
            out.push(b);
        }
    }
    Ok(out)
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

fn refusal(code: &'static str, message: String) -> Refusal {
    Refusal { code, message }
}

#[derive(Clone, Debug, Serialize)]
pub struct DevicePlan {
    pub bdf: String,
    pub vendor_device: String,
    pub class: String,
    pub current_driver: Option<String>,
    pub iommu_group: Option<u32>,
    pub group_members: Vec<GroupMember>,
    pub numa_node: Option<i32>,
    pub disks: Vec<Disk>,
    pub already_bound: bool,
    pub actions: Vec<String>,
    pub refusals: Vec<Refusal>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub ok: bool,
    pub force_data: bool,
    pub refusals: Vec<Refusal>,
    pub devices: Vec<DevicePlan>,
}

impl Plan {
    /// Every refusal, global and per device, prefixed with the device.
    pub fn all_refusals(&self) -> Vec<String> {
        let mut v: Vec<String> = self.refusals.iter().map(|r| r.message.clone()).collect();
        for d in &self.devices {
            v.extend(d.refusals.iter().map(|r| format!("{}: {}", d.bdf, r.message)));
        }
        v
    }
}

fn is_bridge(class: u32) -> bool {
    class >> 16 == 0x06
}

pub fn no_iommu_message(r: &Roots) -> String {
    let cmd = sys::cmdline(r);
    let hint = if cmd.contains("intel_iommu=on") || cmd.contains("amd_iommu=on") {
        "the command line asks for an IOMMU but none is active: check the firmware (VT-d/AMD-Vi) \
         and, in QEMU, '-device intel-iommu'"
            .to_string()
    } else {
        "boot with intel_iommu=on (Intel) or make sure AMD-Vi is enabled, and in QEMU add \
         '-device intel-iommu,intremap=on,caching-mode=on'"
            .to_string()
    };
    format!("no IOMMU is active (no groups under {}): {hint}", r.sys.join("kernel/iommu_groups").display())
}

/// Compute the plan. Reads only.
pub fn plan(r: &Roots, bdfs: &[Bdf], force_data: bool) -> Plan {
    let mut global = Vec::new();
    if !sys::iommu_present(r) {
        global.push(refusal("no-iommu", no_iommu_message(r)));
    }
    let vfio_present = r.pci_driver(VFIO_DRIVER).exists();
    let mut devices = Vec::new();
    for b in bdfs {
        let info = sys::pci_info(r, b);
        let mut refusals = Vec::new();
        let mut warnings = Vec::new();
        let mut actions = Vec::new();
        let already = info.driver.as_deref() == Some(VFIO_DRIVER);

        if info.iommu_group.is_none() && global.is_empty() {
            refusals.push(refusal(
                "no-iommu-group",
                "the device has no IOMMU group, so VFIO cannot use it (is it behind an IOMMU?)".into(),
            ));
        }
        if is_bridge(info.class_code) {
            refusals.push(refusal(
                "not-bindable",
                format!("{} ({}) is a bridge and cannot be handed to vfio-pci", b, info.class),
            ));
        }

        // Storage below the device.
        let disks = if already { Vec::new() } else { sys::disks_info(r, b) };
        for d in &disks {
            for u in &d.uses {
                for m in &u.mounts {
                    refusals.push(refusal(
                        "mounted",
                        format!("/dev/{} is mounted on {} ({})", u.name, m.mount_point, m.fstype),
                    ));
                }
                if u.swap {
                    refusals.push(refusal("swap", format!("/dev/{} is an active swap area", u.name)));
                }
                for h in &u.holders {
                    let mut msg = format!("/dev/{} is held by {}", u.name, h.name);
                    if let Some(dt) = &h.detail {
                        msg += &format!(" ({dt})");
                    }
                    if !h.mounts.is_empty() {
                        msg += &format!(", mounted on {}", h.mounts.join(", "));
                    }
                    msg += "; remove the dm/md/LVM device first";
                    refusals.push(refusal("holders", msg));
                }
            }
            let mut data = Vec::new();
            if !d.partitions.is_empty() {
                data.push(("partition-table", format!("/dev/{} has partitions ({})", d.name, d.partitions.join(", "))));
            }
            if let Some(s) = &d.signature {
                data.push(("data-signature", format!("/dev/{} carries a {s}", d.name)));
            }
            if let Some(e) = &d.signature_error {
                data.push(("signature-unreadable", format!("could not check /dev/{} for data: {e}", d.name)));
            }
            for (code, msg) in data {
                if force_data {
                    warnings.push(format!("{msg} (ignored: --force-data)"));
                } else {
                    refusals.push(refusal(code, format!("{msg}; pass --force-data to hand it over anyway")));
                }
            }
        }

        // The IOMMU group must go over as a whole.
        let mut offenders = Vec::new();
        for m in &info.group_members {
            if m.bdf == info.bdf || bdfs.iter().any(|x| x.to_string() == m.bdf) {
                continue;
            }
            if m.driver.as_deref() == Some(VFIO_DRIVER) {
                continue;
            }
            let mb: Option<Bdf> = m.bdf.parse().ok();
            let mclass = mb.map(|x| sys::pci_class(r, &x)).unwrap_or(0);
            // PCI-to-PCI bridges (root ports) are tolerated by VFIO when unbound or on pcieport.
            if mclass >> 8 == 0x0604 && matches!(m.driver.as_deref(), None | Some("pcieport")) {
                continue;
            }
            offenders.push(format!(
                "{} ({}, {})",
                m.bdf,
                m.class,
                m.driver.as_deref().map(|d| format!("driver {d}")).unwrap_or_else(|| "no driver".into())
            ));
        }
        if !offenders.is_empty() {
            refusals.push(refusal(
                "group-shared",
                format!(
                    "IOMMU group {} is shared with {}: every member must already be on vfio-pci or be \
                     named in the same bind",
                    info.iommu_group.unwrap_or(0),
                    offenders.join(", ")
                ),
            ));
        }

        if already {
            actions.push("already bound to vfio-pci: nothing to do".into());
        } else {
            if !vfio_present {
                actions.push("load the vfio-pci module (modprobe vfio-pci)".into());
            }
            actions.push(format!("record previous driver {} in the state file", info.driver.as_deref().unwrap_or("(none)")));
            actions.push(format!("write 'vfio-pci' to {}", r.pci_dev(b).join("driver_override").display()));
            if let Some(d) = &info.driver {
                actions.push(format!("unbind from {d} ({})", r.pci_driver(d).join("unbind").display()));
            }
            actions.push(format!("write {b} to {}", r.sys.join("bus/pci/drivers_probe").display()));
            actions.push("check that the device is on vfio-pci".into());
        }

        devices.push(DevicePlan {
            bdf: info.bdf.clone(),
            vendor_device: info.vendor_device.clone(),
            class: info.class.clone(),
            current_driver: info.driver.clone(),
            iommu_group: info.iommu_group,
            group_members: info.group_members.clone(),
            numa_node: info.numa_node,
            disks,
            already_bound: already,
            actions,
            refusals,
            warnings,
        });
    }
    let ok = global.is_empty() && devices.iter().all(|d| d.refusals.is_empty());
    Plan { ok, force_data, refusals: global, devices }
}
