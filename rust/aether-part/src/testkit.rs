//! Test support: fixture trees that look like sysfs/procfs/dev/cgroupfs, and a small
//! kernel emulator that applies the side effects of the writes aether-part makes.
//! The binary uses the emulator only when `AETHER_PART_EMULATE=1` and the roots are
//! not the real ones.

use crate::sys::{Ops, Roots};
use std::cell::RefCell;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Fixture {
    pub root: PathBuf,
    pub roots: Roots,
}

fn put(p: &Path, s: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, s).unwrap();
}

impl Fixture {
    /// An empty machine: `cpus` online CPUs, one NUMA node, 2 MiB hugepages, cgroup v2.
    pub fn new(root: &Path, cpus: u32) -> Fixture {
        let roots = Roots::under(root);
        let f = Fixture { root: root.to_path_buf(), roots };
        let s = &f.roots.sys;
        for d in ["bus/pci/devices", "bus/pci/drivers/nvme", "bus/pci/drivers/vfio-pci", "kernel/iommu_groups", "block", "class/block", "devices/virtual/block"] {
            fs::create_dir_all(s.join(d)).unwrap();
        }
        put(&s.join("bus/pci/drivers_probe"), "");
        for d in ["bus/pci/drivers/nvme", "bus/pci/drivers/vfio-pci"] {
            put(&s.join(d).join("bind"), "");
            put(&s.join(d).join("unbind"), "");
        }
        let list = if cpus == 1 { "0".to_string() } else { format!("0-{}", cpus - 1) };
        put(&s.join("devices/system/cpu/online"), &list);
        put(&s.join("devices/system/cpu/possible"), &list);
        put(&s.join("devices/system/cpu/isolated"), "");
        put(&s.join("devices/system/cpu/nohz_full"), "(null)");
        put(&s.join("kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"), "0");
        put(&s.join("kernel/mm/hugepages/hugepages-2048kB/free_hugepages"), "0");
        put(&s.join("devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages"), "0");
        put(&s.join("devices/system/node/node0/hugepages/hugepages-2048kB/free_hugepages"), "0");
        put(&f.roots.cgroup.join("cgroup.controllers"), "cpuset cpu io memory pids");
        put(&f.roots.cgroup.join("cgroup.subtree_control"), "memory");
        put(&f.roots.cgroup.join("cgroup.procs"), "1\n");
        let p = &f.roots.proc_;
        put(&p.join("cmdline"), "console=ttyS0 intel_iommu=on");
        put(&p.join("self/mountinfo"), "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/root rw\n");
        put(&p.join("swaps"), "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n");
        put(&p.join("meminfo"), "MemTotal: 2048000 kB\nHugepagesize:       2048 kB\n");
        put(&p.join("irq/default_smp_affinity"), &crate::parse::format_cpumask(&(0..cpus).collect()));
        fs::create_dir_all(&f.roots.dev).unwrap();
        f
    }

    pub fn pci_dir(&self, bdf: &str) -> PathBuf {
        self.roots.sys.join("devices/pci0000:00").join(bdf)
    }

    /// Add a PCI function. `native` is the driver the kernel would pick (for the emulator).
    pub fn pci(&self, bdf: &str, vendor: u16, device: u16, class: u32, driver: Option<&str>, group: Option<u32>) -> &Self {
        let d = self.pci_dir(bdf);
        fs::create_dir_all(&d).unwrap();
        put(&d.join("vendor"), &format!("0x{vendor:04x}\n"));
        put(&d.join("device"), &format!("0x{device:04x}\n"));
        put(&d.join("class"), &format!("0x{class:06x}\n"));
        put(&d.join("numa_node"), "-1\n");
        put(&d.join("driver_override"), "(null)\n");
        put(&d.join(".native_driver"), driver.unwrap_or(""));
        symlink(format!("../../../devices/pci0000:00/{bdf}"), self.roots.sys.join("bus/pci/devices").join(bdf)).unwrap();
        if let Some(drv) = driver {
            let dd = self.roots.pci_driver(drv);
            if !dd.exists() {
                fs::create_dir_all(&dd).unwrap();
                put(&dd.join("bind"), "");
                put(&dd.join("unbind"), "");
            }
            symlink(format!("../../../bus/pci/drivers/{drv}"), d.join("driver")).unwrap();
        }
        if let Some(g) = group {
            let gd = self.roots.sys.join(format!("kernel/iommu_groups/{g}/devices"));
            fs::create_dir_all(&gd).unwrap();
            symlink(format!("../../../../devices/pci0000:00/{bdf}"), gd.join(bdf)).unwrap();
            symlink(format!("../../../kernel/iommu_groups/{g}"), d.join("iommu_group")).unwrap();
        }
        self
    }

    /// An NVMe namespace block device below a controller, with a 128 KiB zeroed /dev node.
    pub fn nvme_ns(&self, bdf: &str, ctrl: &str, ns: &str, devno: &str) -> &Self {
        let d = self.pci_dir(bdf).join("nvme").join(ctrl).join(ns);
        fs::create_dir_all(d.join("holders")).unwrap();
        put(&d.join("dev"), &format!("{devno}\n"));
        put(&d.join("size"), "2097152\n");
        symlink(format!("../devices/pci0000:00/{bdf}/nvme/{ctrl}/{ns}"), self.roots.sys.join("block").join(ns)).unwrap();
        symlink(format!("../../devices/pci0000:00/{bdf}/nvme/{ctrl}/{ns}"), self.roots.sys.join("class/block").join(ns)).unwrap();
        fs::write(self.roots.dev.join(ns), vec![0u8; 128 * 1024]).unwrap();
        self
    }

    fn disk_dir(&self, disk: &str) -> PathBuf {
        fs::canonicalize(self.roots.sys.join("block").join(disk)).unwrap()
    }

    pub fn partition(&self, disk: &str, part: &str, devno: &str) -> &Self {
        let d = self.disk_dir(disk).join(part);
        fs::create_dir_all(d.join("holders")).unwrap();
        put(&d.join("dev"), &format!("{devno}\n"));
        put(&d.join("partition"), "1\n");
        let rel = self.disk_dir(disk).strip_prefix(&self.roots.sys).unwrap().join(part);
        symlink(Path::new("../..").join(&rel), self.roots.sys.join("class/block").join(part)).unwrap();
        fs::write(self.roots.dev.join(part), vec![0u8; 4096]).unwrap();
        self
    }

    /// A device-mapper device `holder` (e.g. dm-0) named `dm_name` on top of `under`
    /// (a disk or "disk/partition").
    pub fn dm_holder(&self, under: &str, holder: &str, dm_name: &str, devno: &str) -> &Self {
        let hd = self.roots.sys.join("devices/virtual/block").join(holder);
        fs::create_dir_all(hd.join("dm")).unwrap();
        fs::create_dir_all(hd.join("holders")).unwrap();
        put(&hd.join("dev"), &format!("{devno}\n"));
        put(&hd.join("dm/name"), dm_name);
        let _ = symlink(format!("../devices/virtual/block/{holder}"), self.roots.sys.join("block").join(holder));
        let (disk, part) = under.split_once('/').map(|(a, b)| (a, Some(b))).unwrap_or((under, None));
        let mut ud = self.disk_dir(disk);
        if let Some(p) = part {
            ud = ud.join(p);
        }
        symlink(format!("../../../../../../virtual/block/{holder}"), ud.join("holders").join(holder)).unwrap();
        self
    }

    pub fn mount(&self, devno: &str, mp: &str, fstype: &str, src: &str) -> &Self {
        let p = self.roots.proc_.join("self/mountinfo");
        let mut t = fs::read_to_string(&p).unwrap();
        t += &format!("40 22 {devno} / {mp} rw,relatime - {fstype} {src} rw\n");
        fs::write(p, t).unwrap();
        self
    }

    pub fn swap(&self, path: &str) -> &Self {
        let p = self.roots.proc_.join("swaps");
        let mut t = fs::read_to_string(&p).unwrap();
        t += &format!("{path}                               partition\t1048572\t\t0\t\t-2\n");
        fs::write(p, t).unwrap();
        self
    }

    pub fn write_dev(&self, name: &str, off: usize, bytes: &[u8]) -> &Self {
        let p = self.roots.dev.join(name);
        let mut v = fs::read(&p).unwrap();
        v[off..off + bytes.len()].copy_from_slice(bytes);
        fs::write(p, v).unwrap();
        self
    }

    /// An IRQ with an affinity list; `managed` IRQs refuse writes with EIO like the kernel's.
    pub fn irq(&self, n: u32, affinity: &str, managed: bool) -> &Self {
        let d = self.roots.proc_.join(format!("irq/{n}"));
        put(&d.join("smp_affinity_list"), affinity);
        if managed {
            put(&d.join(".managed"), "");
        }
        self
    }

    pub fn set(&self, rel: &str, content: &str) -> &Self {
        put(&self.root.join(rel), content);
        self
    }

    /// A standard q35-like machine: two NVMe controllers in their own groups, the ICH9
    /// functions sharing group 9.
    pub fn q35(root: &Path) -> Fixture {
        let f = Fixture::new(root, 2);
        f.pci("0000:00:00.0", 0x8086, 0x29c0, 0x060000, None, Some(0))
            .pci("0000:00:04.0", 0x1b36, 0x0010, 0x010802, Some("nvme"), Some(3))
            .nvme_ns("0000:00:04.0", "nvme0", "nvme0n1", "259:0")
            .pci("0000:00:05.0", 0x1b36, 0x0010, 0x010802, Some("nvme"), Some(4))
            .nvme_ns("0000:00:05.0", "nvme1", "nvme1n1", "259:1")
            .pci("0000:00:1f.0", 0x8086, 0x2918, 0x060100, Some("lpc_ich"), Some(9))
            .pci("0000:00:1f.2", 0x8086, 0x2922, 0x010601, Some("ahci"), Some(9))
            .pci("0000:00:1f.3", 0x8086, 0x2930, 0x0c0500, None, Some(9));
        f
    }
}

/// Kernel emulator for fixture trees.
pub struct Emu {
    pub roots: Roots,
    /// Fail the write whose path ends with `.0` the `.1`-th time (1-based).
    pub fail: RefCell<Option<(String, usize)>>,
    pub writes: RefCell<Vec<(String, String)>>,
    /// Drivers that silently refuse to bind (probe fails).
    pub broken: RefCell<Vec<String>>,
    /// Max hugepages the "memory" allows.
    pub huge_capacity: u64,
}

fn err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl Emu {
    pub fn new(roots: &Roots) -> Emu {
        Emu { roots: roots.clone(), fail: RefCell::new(None), writes: RefCell::new(vec![]), broken: RefCell::new(vec![]), huge_capacity: u64::MAX }
    }

    pub fn fail_on(&self, suffix: &str, nth: usize) {
        *self.fail.borrow_mut() = Some((suffix.to_string(), nth));
    }

    fn dev(&self, bdf: &str) -> PathBuf {
        self.roots.sys.join("bus/pci/devices").join(bdf)
    }

    fn stash(&self, bdf: &str) -> PathBuf {
        self.roots.sys.join(".stash").join(bdf)
    }

    fn attach(&self, bdf: &str, drv: &str) -> io::Result<()> {
        if self.broken.borrow().iter().any(|b| b == drv) {
            return Ok(()); // probe failed: stays unbound
        }
        symlink(format!("../../../bus/pci/drivers/{drv}"), self.dev(bdf).join("driver"))?;
        let native = fs::read_to_string(self.dev(bdf).join(".native_driver")).unwrap_or_default();
        let st = self.stash(bdf);
        if drv == native && st.exists() {
            for (sub, dst) in [("block", self.roots.sys.join("block")), ("dev", self.roots.dev.clone())] {
                if let Ok(rd) = fs::read_dir(st.join(sub)) {
                    for e in rd.flatten() {
                        fs::rename(e.path(), dst.join(e.file_name()))?;
                    }
                }
            }
        }
        Ok(())
    }

    fn detach(&self, bdf: &str) -> io::Result<()> {
        fs::remove_file(self.dev(bdf).join("driver"))?;
        // Namespaces vanish with the nvme driver.
        let st = self.stash(bdf);
        let needle = format!("/{bdf}/");
        if let Ok(rd) = fs::read_dir(self.roots.sys.join("block")) {
            for e in rd.flatten() {
                if fs::read_link(e.path()).map(|t| t.to_string_lossy().contains(&needle)).unwrap_or(false) {
                    fs::create_dir_all(st.join("block"))?;
                    fs::create_dir_all(st.join("dev"))?;
                    fs::rename(e.path(), st.join("block").join(e.file_name()))?;
                    let dn = self.roots.dev.join(e.file_name());
                    if dn.exists() {
                        fs::rename(dn, st.join("dev").join(e.file_name()))?;
                    }
                }
            }
        }
        Ok(())
    }

    fn driver(&self, bdf: &str) -> Option<String> {
        crate::sys::link_name(&self.dev(bdf).join("driver"))
    }

    fn override_of(&self, bdf: &str) -> Option<String> {
        let o = fs::read_to_string(self.dev(bdf).join("driver_override")).ok()?;
        let o = o.trim();
        (!o.is_empty() && o != "(null)").then(|| o.to_string())
    }
}

impl Ops for Emu {
    fn write(&self, path: &Path, data: &str) -> io::Result<()> {
        let ps = path.to_string_lossy().into_owned();
        self.writes.borrow_mut().push((ps.clone(), data.to_string()));
        {
            let mut f = self.fail.borrow_mut();
            if let Some((suf, n)) = f.as_mut() {
                if ps.ends_with(suf.as_str()) {
                    *n -= 1;
                    if *n == 0 {
                        *f = None;
                        return Err(err(libc_eio()));
                    }
                }
            }
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let parent = path.parent().unwrap();
        let val = data.trim();
        if ps.ends_with("bus/pci/drivers_probe") {
            if self.driver(val).is_some() {
                return Ok(());
            }
            let target = self.override_of(val).unwrap_or_else(|| {
                fs::read_to_string(self.dev(val).join(".native_driver")).unwrap_or_default()
            });
            if !target.is_empty() && self.roots.pci_driver(&target).exists() {
                self.attach(val, &target)?;
            }
            return Ok(());
        }
        if parent.parent().is_some_and(|pp| pp.ends_with("bus/pci/drivers")) && (name == "bind" || name == "unbind") {
            let drv = parent.file_name().unwrap().to_string_lossy().into_owned();
            if !self.dev(val).exists() {
                return Err(err(19));
            }
            if name == "unbind" {
                if self.driver(val).as_deref() != Some(drv.as_str()) {
                    return Err(err(19));
                }
                return self.detach(val);
            }
            if self.driver(val).is_some() {
                return Err(err(16));
            }
            let native = fs::read_to_string(self.dev(val).join(".native_driver")).unwrap_or_default();
            let ok = match self.override_of(val) {
                Some(o) => o == drv,
                None => native == drv,
            };
            if !ok {
                return Err(err(19));
            }
            return self.attach(val, &drv);
        }
        if name == "driver_override" {
            return fs::write(path, if val.is_empty() { "(null)\n".to_string() } else { format!("{val}\n") });
        }
        if name == "smp_affinity_list" && parent.join(".managed").exists() {
            return Err(err(5));
        }
        if name == "cgroup.subtree_control" {
            let mut set: Vec<String> = fs::read_to_string(path)?.split_whitespace().map(String::from).collect();
            for tok in val.split_whitespace() {
                if let Some(c) = tok.strip_prefix('+') {
                    if !set.iter().any(|x| x == c) {
                        set.push(c.into());
                    }
                } else if let Some(c) = tok.strip_prefix('-') {
                    set.retain(|x| x != c);
                }
            }
            return fs::write(path, set.join(" "));
        }
        if name == "cgroup.procs" {
            return Ok(());
        }
        if name == "nr_hugepages" {
            let n: u64 = val.parse().map_err(|_| err(22))?;
            return fs::write(path, n.min(self.huge_capacity).to_string());
        }
        if !path.exists() && !parent.starts_with(&self.roots.cgroup) {
            return Err(err(2));
        }
        fs::write(path, data)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir(path)?;
        if path.starts_with(&self.roots.cgroup) {
            for (f, v) in [("cpuset.cpus", ""), ("cpuset.cpus.partition", "member"), ("cgroup.procs", "")] {
                fs::write(path.join(f), v)?;
            }
        }
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d.min(Duration::from_millis(1)))
    }
}

fn libc_eio() -> i32 {
    5
}
