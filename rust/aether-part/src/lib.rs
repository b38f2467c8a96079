//! aether-part: hand NVMe devices and CPUs to a user-space partition, safely and reversibly.
//!
//! Every filesystem root (sysfs, procfs, /dev, the cgroup v2 mount and the state
//! directory) comes from [`sys::Roots`], so the logic runs against fixture trees in tests.

pub mod bench;
pub mod bind;
pub mod cpus;
pub mod nvme;
pub mod parse;
pub mod plan;
pub mod prefetch;
pub mod sys;
#[doc(hidden)]
pub mod testkit;
pub mod vfio;

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct DeviceStatus {
    #[serde(flatten)]
    pub pci: sys::PciDev,
    pub disks: Vec<sys::Disk>,
    pub in_use: Vec<String>,
    pub recorded_previous_driver: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub iommu: bool,
    pub iommu_hint: Option<String>,
    pub vfio_pci_driver: bool,
    pub devices: Vec<DeviceStatus>,
    pub hugepages: Vec<cpus::HugeCount>,
    pub cpus_online: String,
    pub cpu_isolation: cpus::CpuIsolationInfo,
    pub state_file: String,
    pub state: Option<bind::State>,
}

/// Gather everything `status` shows. `all` includes non-storage devices' details too.
pub fn status(r: &sys::Roots) -> Status {
    let mounts = sys::read_mounts(r);
    let swaps = sys::read_swaps(r);
    let state = bind::State::load(r).ok();
    let mut devices = Vec::new();
    for b in sys::list_pci(r) {
        let pci = sys::pci_info(r, &b);
        let disks: Vec<sys::Disk> =
            sys::disks_of(r, &b).iter().map(|d| sys::disk_info(r, d, &mounts, &swaps)).collect();
        let mut in_use = Vec::new();
        for d in &disks {
            for u in &d.uses {
                for m in &u.mounts {
                    in_use.push(format!("/dev/{} mounted on {}", u.name, m.mount_point));
                }
                if u.swap {
                    in_use.push(format!("/dev/{} is swap", u.name));
                }
                for h in &u.holders {
                    in_use.push(format!(
                        "/dev/{} held by {}{}",
                        u.name,
                        h.name,
                        h.detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
                    ));
                }
            }
            if let Some(s) = &d.signature {
                in_use.push(format!("/dev/{} carries a {s}", d.name));
            }
        }
        let recorded_previous_driver = state
            .as_ref()
            .and_then(|s| s.device(&pci.bdf))
            .map(|d| d.previous_driver.clone().unwrap_or_else(|| "(none)".into()));
        devices.push(DeviceStatus { pci, disks, in_use, recorded_previous_driver });
    }
    let iommu = sys::iommu_present(r);
    Status {
        iommu,
        iommu_hint: (!iommu).then(|| plan::no_iommu_message(r)),
        vfio_pci_driver: r.pci_driver(plan::VFIO_DRIVER).exists(),
        devices,
        hugepages: cpus::hugepages_status(r),
        cpus_online: parse::format_cpulist(&sys::cpus_online(r)),
        cpu_isolation: cpus::isolation_info(r),
        state_file: r.state_file().display().to_string(),
        state: state.filter(|s| !s.devices.is_empty() || s.cpus.is_some()),
    }
}
