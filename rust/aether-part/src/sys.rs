//! Injectable filesystem roots, the write path, and sysfs/procfs readers.

use crate::parse::{self, Bdf, Mount};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every filesystem root the tool touches. Tests point these at fixture trees.
#[derive(Clone, Debug)]
pub struct Roots {
    pub sys: PathBuf,
    pub proc_: PathBuf,
    pub dev: PathBuf,
    pub cgroup: PathBuf,
    pub state_dir: PathBuf,
}

impl Roots {
    pub fn real() -> Roots {
        Roots {
            sys: "/sys".into(),
            proc_: "/proc".into(),
            dev: "/dev".into(),
            cgroup: "/sys/fs/cgroup".into(),
            state_dir: "/run/aether-part".into(),
        }
    }

    /// All roots under one prefix, the layout fixture trees use.
    pub fn under(prefix: &Path) -> Roots {
        Roots {
            sys: prefix.join("sys"),
            proc_: prefix.join("proc"),
            dev: prefix.join("dev"),
            cgroup: prefix.join("sys/fs/cgroup"),
            state_dir: prefix.join("run/aether-part"),
        }
    }

    /// Real roots, then `AETHER_PART_ROOT` (a prefix), then the per-root variables
    /// `AETHER_PART_SYSFS`, `_PROCFS`, `_DEVFS`, `_CGROUP`, `_STATE_DIR`.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Roots {
        let mut r = match get("AETHER_PART_ROOT") {
            Some(p) if !p.is_empty() => Roots::under(Path::new(&p)),
            _ => Roots::real(),
        };
        for (k, slot) in [
            ("AETHER_PART_SYSFS", &mut r.sys),
            ("AETHER_PART_PROCFS", &mut r.proc_),
            ("AETHER_PART_DEVFS", &mut r.dev),
            ("AETHER_PART_CGROUP", &mut r.cgroup),
            ("AETHER_PART_STATE_DIR", &mut r.state_dir),
        ] {
            if let Some(v) = get(k).filter(|v| !v.is_empty()) {
                *slot = v.into();
            }
        }
        r
    }

    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }
    pub fn pci_dev(&self, bdf: &Bdf) -> PathBuf {
        self.sys.join("bus/pci/devices").join(bdf.to_string())
    }
    pub fn pci_driver(&self, name: &str) -> PathBuf {
        self.sys.join("bus/pci/drivers").join(name)
    }
}

/// How the tool changes the system. The real implementation writes files; tests
/// substitute a kernel emulator that also applies the side effects of sysfs writes.
pub trait Ops {
    fn write(&self, path: &Path, data: &str) -> io::Result<()>;
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
}

pub struct RealOps;
impl Ops for RealOps {
    fn write(&self, path: &Path, data: &str) -> io::Result<()> {
        // sysfs wants a single write(2) of the whole value.
        use std::io::Write;
        let mut f = fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(data.as_bytes())
    }
}

/// Read a file trimmed, None when missing or unreadable.
pub fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

pub fn link_name(p: &Path) -> Option<String> {
    fs::read_link(p).ok().and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn list_dir(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(p)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn hex_u32(s: Option<String>) -> Option<u32> {
    s.and_then(|s| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok())
}

/// A human name for a PCI class code.
pub fn class_name(class: u32) -> &'static str {
    match class >> 8 {
        0x0108 => "NVMe controller",
        0x0106 => "SATA controller",
        0x0101 => "IDE controller",
        0x0100 | 0x0107 | 0x0104 => "storage controller",
        0x0200 => "Ethernet controller",
        0x0300 => "VGA controller",
        0x0600 => "host bridge",
        0x0601 => "ISA bridge",
        0x0604 => "PCI bridge",
        0x0c05 => "SMBus controller",
        0x0c03 => "USB controller",
        0x0403 => "audio device",
        _ => match class >> 16 {
            0x01 => "storage controller",
            0x02 => "network controller",
            0x03 => "display controller",
            0x06 => "bridge",
            _ => "device",
        },
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct GroupMember {
    pub bdf: String,
    pub class: String,
    pub driver: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PciDev {
    pub bdf: String,
    pub vendor_device: String,
    pub class: String,
    pub class_code: u32,
    pub driver: Option<String>,
    pub driver_override: Option<String>,
    pub iommu_group: Option<u32>,
    pub group_members: Vec<GroupMember>,
    pub numa_node: Option<i32>,
}

pub fn pci_exists(r: &Roots, bdf: &Bdf) -> bool {
    r.pci_dev(bdf).exists()
}

pub fn list_pci(r: &Roots) -> Vec<Bdf> {
    list_dir(&r.sys.join("bus/pci/devices")).iter().filter_map(|s| s.parse().ok()).collect()
}

pub fn driver_of(r: &Roots, bdf: &Bdf) -> Option<String> {
    link_name(&r.pci_dev(bdf).join("driver"))
}

pub fn pci_class(r: &Roots, bdf: &Bdf) -> u32 {
    hex_u32(read_trim(&r.pci_dev(bdf).join("class"))).unwrap_or(0)
}

pub fn iommu_group(r: &Roots, bdf: &Bdf) -> Option<u32> {
    link_name(&r.pci_dev(bdf).join("iommu_group")).and_then(|n| n.parse().ok())
}

pub fn group_devices(r: &Roots, group: u32) -> Vec<Bdf> {
    list_dir(&r.sys.join("kernel/iommu_groups").join(group.to_string()).join("devices"))
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

pub fn pci_info(r: &Roots, bdf: &Bdf) -> PciDev {
    let d = r.pci_dev(bdf);
    let vendor = hex_u32(read_trim(&d.join("vendor"))).unwrap_or(0);
    let device = hex_u32(read_trim(&d.join("device"))).unwrap_or(0);
    let class_code = pci_class(r, bdf);
    let group = iommu_group(r, bdf);
    let members = group
        .map(|g| group_devices(r, g))
        .unwrap_or_default()
        .into_iter()
        .map(|m| GroupMember {
            bdf: m.to_string(),
            class: class_name(pci_class(r, &m)).to_string(),
            driver: driver_of(r, &m),
        })
        .collect();
    PciDev {
        bdf: bdf.to_string(),
        vendor_device: format!("{vendor:04x}:{device:04x}"),
        class: class_name(class_code).to_string(),
        class_code,
        driver: driver_of(r, bdf),
        driver_override: read_trim(&d.join("driver_override")).filter(|s| s != "(null)" && !s.is_empty()),
        iommu_group: group,
        group_members: members,
        numa_node: read_trim(&d.join("numa_node")).and_then(|s| s.parse().ok()),
    }
}

/// True when the machine has an active IOMMU (any IOMMU group exists).
pub fn iommu_present(r: &Roots) -> bool {
    !list_dir(&r.sys.join("kernel/iommu_groups")).is_empty()
}

// ---------------------------------------------------------------- block devices

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Holder {
    pub name: String,
    /// dm name, md level, ... when known
    pub detail: Option<String>,
    pub mounts: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BlockUse {
    /// The disk or partition name (nvme0n1, nvme0n1p1).
    pub name: String,
    pub dev: Option<String>,
    pub mounts: Vec<Mount>,
    pub swap: bool,
    pub holders: Vec<Holder>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Disk {
    pub name: String,
    pub dev: Option<String>,
    pub size_bytes: u64,
    pub partitions: Vec<String>,
    /// Per disk and per partition use.
    pub uses: Vec<BlockUse>,
    /// Partition table / filesystem signature found on the disk (or error reading).
    pub signature: Option<String>,
    pub signature_error: Option<String>,
}

/// Block disks that sit below the PCI device (namespaces, SATA disks, ...).
/// NVMe multipath hides per-path disks (nvme0c0n1) under the controller and shows the
/// head (nvme0n1) in /sys/block; both spellings are mapped to the /sys/block name.
pub fn disks_of(r: &Roots, bdf: &Bdf) -> Vec<String> {
    let needle = format!("/{bdf}/");
    let mut out = BTreeSet::new();
    let block = r.sys.join("block");
    for name in list_dir(&block) {
        if let Ok(t) = fs::read_link(block.join(&name)) {
            if t.to_string_lossy().contains(&needle) {
                out.insert(name);
            }
        }
    }
    // Multipath: <pci>/nvme/nvmeX/nvmeYcZnW -> head nvmeYnW
    let nvme = r.pci_dev(bdf).join("nvme");
    for ctrl in list_dir(&nvme) {
        for ent in list_dir(&nvme.join(&ctrl)) {
            if let Some(head) = mpath_head(&ent) {
                if block.join(&head).exists() {
                    out.insert(head);
                }
            } else if ent.starts_with("nvme") && ent.contains('n') && block.join(&ent).exists() && ent != ctrl {
                out.insert(ent);
            }
        }
    }
    out.into_iter().collect()
}

/// "nvme0c1n2" -> "nvme0n2"
pub fn mpath_head(name: &str) -> Option<String> {
    let rest = name.strip_prefix("nvme")?;
    let c = rest.find('c')?;
    let n = rest[c..].find('n')? + c;
    let (a, b, d) = (&rest[..c], &rest[c + 1..n], &rest[n + 1..]);
    let digits = |s: &str| !s.is_empty() && s.chars().all(|x| x.is_ascii_digit());
    (digits(a) && digits(b) && digits(d)).then(|| format!("nvme{a}n{d}"))
}

fn block_dir(r: &Roots, name: &str) -> PathBuf {
    r.sys.join("class/block").join(name)
}

fn dev_of(r: &Roots, name: &str) -> Option<String> {
    read_trim(&block_dir(r, name).join("dev")).or_else(|| read_trim(&r.sys.join("block").join(name).join("dev")))
}

fn disk_sysdir(r: &Roots, name: &str) -> PathBuf {
    let p = r.sys.join("block").join(name);
    if p.exists() { p } else { block_dir(r, name) }
}

pub fn partitions_of(r: &Roots, disk: &str) -> Vec<String> {
    let d = disk_sysdir(r, disk);
    list_dir(&d).into_iter().filter(|e| e.starts_with(disk) && d.join(e).join("partition").exists()).collect()
}

fn holders_of(r: &Roots, dir: &Path, mounts: &[Mount], depth: u32) -> Vec<Holder> {
    let mut out = Vec::new();
    for h in list_dir(&dir.join("holders")) {
        let hdir = disk_sysdir(r, &h);
        let detail = read_trim(&hdir.join("dm/name"))
            .map(|n| format!("device-mapper '{n}'"))
            .or_else(|| read_trim(&hdir.join("md/level")).map(|l| format!("md {l}")));
        let dev = read_trim(&hdir.join("dev"));
        let mut hm: Vec<String> = mounts_for(mounts, dev.as_deref()).iter().map(|m| m.mount_point.clone()).collect();
        if depth < 8 {
            for sub in holders_of(r, &hdir, mounts, depth + 1) {
                hm.extend(sub.mounts.iter().map(|m| format!("{m} (via {})", sub.name)));
            }
        }
        out.push(Holder { name: h, detail, mounts: hm });
    }
    out
}

fn mounts_for(mounts: &[Mount], dev: Option<&str>) -> Vec<Mount> {
    let Some((a, b)) = dev.and_then(|d| d.split_once(':')) else { return vec![] };
    let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) else { return vec![] };
    mounts.iter().filter(|m| m.major == a && m.minor == b).cloned().collect()
}

pub fn read_mounts(r: &Roots) -> Vec<Mount> {
    parse::parse_mountinfo(&fs::read_to_string(r.proc_.join("self/mountinfo")).unwrap_or_default())
}

pub fn read_swaps(r: &Roots) -> Vec<String> {
    parse::parse_swaps(&fs::read_to_string(r.proc_.join("swaps")).unwrap_or_default())
}

fn swap_matches(r: &Roots, swaps: &[String], name: &str) -> bool {
    swaps.iter().any(|s| {
        let base = Path::new(s).file_name().map(|b| b.to_string_lossy().into_owned()).unwrap_or_default();
        if base == name {
            return true;
        }
        // /dev/mapper/foo or /dev/disk/... symlinks: resolve inside the /dev root.
        if let Some(rel) = s.strip_prefix("/dev/") {
            if let Ok(t) = fs::canonicalize(r.dev.join(rel)) {
                return t.file_name().is_some_and(|b| b.to_string_lossy() == name);
            }
        }
        false
    })
}

fn use_of(r: &Roots, name: &str, dir: &Path, mounts: &[Mount], swaps: &[String]) -> BlockUse {
    let dev = dev_of(r, name);
    BlockUse {
        name: name.to_string(),
        mounts: mounts_for(mounts, dev.as_deref()),
        dev,
        swap: swap_matches(r, swaps, name),
        holders: holders_of(r, dir, mounts, 0),
    }
}

impl BlockUse {
    pub fn in_use(&self) -> bool {
        !self.mounts.is_empty() || self.swap || !self.holders.is_empty()
    }
}

/// Read enough of the device to recognise common signatures.
pub fn detect_signature(buf: &[u8]) -> Option<String> {
    let at = |off: usize, pat: &[u8]| buf.len() >= off + pat.len() && &buf[off..off + pat.len()] == pat;
    if at(512, b"EFI PART") || at(4096, b"EFI PART") {
        return Some("GPT partition table".into());
    }
    if at(0, b"LUKS\xba\xbe") {
        return Some("LUKS header".into());
    }
    if at(0, b"XFSB") {
        return Some("xfs filesystem".into());
    }
    if at(1024 + 56, &[0x53, 0xef]) {
        return Some("ext2/3/4 filesystem".into());
    }
    if at(0x10040, b"_BHRfS_M") {
        return Some("btrfs filesystem".into());
    }
    for off in [0usize, 512, 1024, 1536] {
        if at(off, b"LABELONE") {
            return Some("LVM2 physical volume".into());
        }
    }
    if at(4096, &[0xfc, 0x4e, 0x2b, 0xa9]) || at(0, &[0xfc, 0x4e, 0x2b, 0xa9]) {
        return Some("md RAID superblock".into());
    }
    if at(4086, b"SWAPSPACE2") || at(4086, b"SWAP-SPACE") {
        return Some("swap area".into());
    }
    if at(0x36, b"FAT") || at(0x52, b"FAT32") {
        return Some("FAT filesystem".into());
    }
    if at(510, &[0x55, 0xaa]) {
        // An MBR with at least one partition entry.
        let used = (0..4).any(|i| buf.get(446 + i * 16 + 4).is_some_and(|t| *t != 0));
        if used {
            return Some("MBR partition table".into());
        }
    }
    None
}

pub const SIGNATURE_PROBE_BYTES: usize = 0x10048;

fn read_signature(r: &Roots, name: &str) -> Result<Option<String>, String> {
    use std::io::Read;
    let p = r.dev.join(name);
    let mut f = fs::File::open(&p).map_err(|e| format!("cannot open {}: {e}", p.display()))?;
    let mut buf = Vec::with_capacity(SIGNATURE_PROBE_BYTES);
    (&mut f)
        .take(SIGNATURE_PROBE_BYTES as u64)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    Ok(detect_signature(&buf))
}

pub fn disk_info(r: &Roots, name: &str, mounts: &[Mount], swaps: &[String]) -> Disk {
    let dir = disk_sysdir(r, name);
    let parts = partitions_of(r, name);
    let mut uses = vec![use_of(r, name, &dir, mounts, swaps)];
    for p in &parts {
        uses.push(use_of(r, p, &dir.join(p), mounts, swaps));
    }
    let (signature, signature_error) = match read_signature(r, name) {
        Ok(s) => (s, None),
        Err(e) => (None, Some(e)),
    };
    Disk {
        name: name.to_string(),
        dev: dev_of(r, name),
        size_bytes: read_trim(&dir.join("size")).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) * 512,
        partitions: parts,
        uses,
        signature,
        signature_error,
    }
}

pub fn disks_info(r: &Roots, bdf: &Bdf) -> Vec<Disk> {
    let mounts = read_mounts(r);
    let swaps = read_swaps(r);
    disks_of(r, bdf).iter().map(|d| disk_info(r, d, &mounts, &swaps)).collect()
}

// ---------------------------------------------------------------- CPUs and memory

pub fn cpus_online(r: &Roots) -> BTreeSet<u32> {
    parse::parse_cpulist(&read_trim(&r.sys.join("devices/system/cpu/online")).unwrap_or_default()).unwrap_or_default()
}
pub fn cpus_possible(r: &Roots) -> BTreeSet<u32> {
    parse::parse_cpulist(&read_trim(&r.sys.join("devices/system/cpu/possible")).unwrap_or_default())
        .unwrap_or_default()
}
pub fn cmdline(r: &Roots) -> String {
    read_trim(&r.proc_.join("cmdline")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_from_env() {
        let r = Roots::from_env(|_| None);
        assert_eq!(r.sys, PathBuf::from("/sys"));
        assert_eq!(r.state_file(), PathBuf::from("/run/aether-part/state.json"));
        let r = Roots::from_env(|k| match k {
            "AETHER_PART_ROOT" => Some("/tmp/fx".into()),
            "AETHER_PART_STATE_DIR" => Some("/tmp/st".into()),
            _ => None,
        });
        assert_eq!(r.sys, PathBuf::from("/tmp/fx/sys"));
        assert_eq!(r.proc_, PathBuf::from("/tmp/fx/proc"));
        assert_eq!(r.cgroup, PathBuf::from("/tmp/fx/sys/fs/cgroup"));
        assert_eq!(r.state_dir, PathBuf::from("/tmp/st"));
    }

    #[test]
    fn mpath_names() {
        assert_eq!(mpath_head("nvme0c0n1").as_deref(), Some("nvme0n1"));
        assert_eq!(mpath_head("nvme12c3n45").as_deref(), Some("nvme12n45"));
        assert_eq!(mpath_head("nvme0n1"), None);
        assert_eq!(mpath_head("nvme0"), None);
    }

    #[test]
    fn signatures() {
        let mut b = vec![0u8; SIGNATURE_PROBE_BYTES];
        assert_eq!(detect_signature(&b), None);
        b[1024 + 56] = 0x53;
        b[1024 + 57] = 0xef;
        assert_eq!(detect_signature(&b).as_deref(), Some("ext2/3/4 filesystem"));
        let mut b = vec![0u8; 4096];
        b[512..520].copy_from_slice(b"EFI PART");
        assert_eq!(detect_signature(&b).as_deref(), Some("GPT partition table"));
        let mut b = vec![0u8; 4096];
        b[510] = 0x55;
        b[511] = 0xaa;
        assert_eq!(detect_signature(&b), None, "boot signature without partitions is not a table");
        b[446 + 4] = 0x83;
        assert_eq!(detect_signature(&b).as_deref(), Some("MBR partition table"));
        let mut b = vec![0u8; 4096];
        b[512..520].copy_from_slice(b"LABELONE");
        assert_eq!(detect_signature(&b).as_deref(), Some("LVM2 physical volume"));
        let b = b"short".to_vec();
        assert_eq!(detect_signature(&b), None);
    }
}
