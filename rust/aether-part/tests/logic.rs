//! Plan, bind/rollback, restore, cpus and hugepages logic against fixture trees,
//! with the kernel emulator applying the side effects of sysfs writes.

use aether_part::bind::{self, Ctx, State};
use aether_part::cpus;
use aether_part::parse::{parse_cpulist, Bdf};
use aether_part::plan;
use aether_part::sys;
use aether_part::testkit::{Emu, Fixture};
use std::fs;
use std::time::Duration;

fn bdf(s: &str) -> Bdf {
    s.parse().unwrap()
}

fn ctx<'a>(f: &Fixture, emu: &'a Emu) -> Ctx<'a> {
    Ctx { roots: f.roots.clone(), euid: 0, ops: emu, timeout: Duration::from_millis(100), real: false }
}

fn codes(p: &plan::Plan, i: usize) -> Vec<&'static str> {
    p.devices[i].refusals.iter().map(|r| r.code).collect()
}

#[test]
fn sysfs_parsing_of_q35_fixture() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::q35(t.path());
    let r = &f.roots;
    assert_eq!(sys::list_pci(r).len(), 6);
    let i = sys::pci_info(r, &bdf("00:04.0"));
    assert_eq!(i.vendor_device, "1b36:0010");
    assert_eq!(i.class, "NVMe controller");
    assert_eq!(i.driver.as_deref(), Some("nvme"));
    assert_eq!(i.iommu_group, Some(3));
    assert_eq!(i.group_members.len(), 1);
    assert_eq!(i.driver_override, None, "(null) means no override");
    let g = sys::pci_info(r, &bdf("00:1f.2"));
    assert_eq!(g.iommu_group, Some(9));
    let m: Vec<&str> = g.group_members.iter().map(|m| m.bdf.as_str()).collect();
    assert_eq!(m, vec!["0000:00:1f.0", "0000:00:1f.2", "0000:00:1f.3"]);
    assert_eq!(sys::disks_of(r, &bdf("00:04.0")), vec!["nvme0n1"]);
    assert_eq!(sys::disks_of(r, &bdf("00:05.0")), vec!["nvme1n1"]);
    assert!(sys::disks_of(r, &bdf("00:1f.2")).is_empty());
    assert!(sys::iommu_present(r));
}

#[test]
fn multipath_hidden_path_maps_to_head() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::new(t.path(), 2);
    f.pci("0000:00:04.0", 0x1b36, 0x10, 0x010802, Some("nvme"), Some(1));
    // Head lives under the virtual subsystem, the hidden path under the controller.
    let head = f.roots.sys.join("devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1");
    fs::create_dir_all(head.join("holders")).unwrap();
    fs::write(head.join("dev"), "259:0\n").unwrap();
    std::os::unix::fs::symlink("../devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1", f.roots.sys.join("block/nvme0n1")).unwrap();
    fs::create_dir_all(f.pci_dir("0000:00:04.0").join("nvme/nvme0/nvme0c0n1")).unwrap();
    assert_eq!(sys::disks_of(&f.roots, &bdf("00:04.0")), vec!["nvme0n1"]);
}

#[test]
fn plan_clean_device_is_ok_and_lists_actions() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::q35(t.path());
    let p = plan::plan(&f.roots, &[bdf("00:05.0")], false);
    assert!(p.ok, "{:?}", p.all_refusals());
    let d = &p.devices[0];
    assert_eq!(d.disks.len(), 1);
    assert!(d.actions.iter().any(|a| a.contains("driver_override")));
    assert!(d.actions.iter().any(|a| a.contains("unbind from nvme")));
    assert!(d.actions.iter().any(|a| a.contains("drivers_probe")));
}

#[test]
fn plan_refuses_mounted_partition_swap_and_dm_holders() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::q35(t.path());
    f.partition("nvme0n1", "nvme0n1p1", "259:2").mount("259:2", "/mnt/data", "ext4", "/dev/nvme0n1p1");
    f.partition("nvme0n1", "nvme0n1p2", "259:3").swap("/dev/nvme0n1p2");
    f.dm_holder("nvme1n1", "dm-0", "x", "253:0").mount("253:0", "/srv", "xfs", "/dev/mapper/x");
    let p = plan::plan(&f.roots, &[bdf("00:04.0"), bdf("00:05.0")], false);
    assert!(!p.ok);
    let c0 = codes(&p, 0);
    assert!(c0.contains(&"mounted"), "{c0:?}");
    assert!(c0.contains(&"swap"), "{c0:?}");
    assert!(c0.contains(&"partition-table"), "{c0:?}");
    let mounted = p.devices[0].refusals.iter().find(|r| r.code == "mounted").unwrap();
    assert!(mounted.message.contains("/dev/nvme0n1p1 is mounted on /mnt/data"), "{}", mounted.message);
    let c1 = codes(&p, 1);
    assert_eq!(c1, vec!["holders"]);
    let h = &p.devices[1].refusals[0].message;
    assert!(h.contains("dm-0") && h.contains("device-mapper 'x'") && h.contains("/srv"), "{h}");

    // --force-data never overrides in-use checks.
    let p = plan::plan(&f.roots, &[bdf("00:04.0"), bdf("00:05.0")], true);
    assert!(!p.ok);
    assert!(!codes(&p, 0).contains(&"partition-table"));
    assert!(codes(&p, 0).contains(&"mounted"));
    assert_eq!(codes(&p, 1), vec!["holders"]);
}

#[test]
fn plan_refuses_data_signature_unless_forced() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::q35(t.path());
    f.write_dev("nvme1n1", 1024 + 56, &[0x53, 0xef]);
    let p = plan::plan(&f.roots, &[bdf("00:05.0")], false);
    assert_eq!(codes(&p, 0), vec!["data-signature"]);
    assert!(p.devices[0].refusals[0].message.contains("ext2/3/4"));
    let p = plan::plan(&f.roots, &[bdf("00:05.0")], true);
    assert!(p.ok);
    assert!(p.devices[0].warnings[0].contains("--force-data"));
    // An unreadable device is refused too (cannot prove it is empty).
    fs::remove_file(f.roots.dev.join("nvme1n1")).unwrap();
    let p = plan::plan(&f.roots, &[bdf("00:05.0")], false);
    assert_eq!(codes(&p, 0), vec!["signature-unreadable"]);
}

#[test]
fn plan_refuses_shared_group_listing_members() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::q35(t.path());
    let p = plan::plan(&f.roots, &[bdf("00:1f.2")], false);
    assert!(!p.ok);
    let r = p.devices[0].refusals.iter().find(|r| r.code == "group-shared").unwrap();
    assert!(r.message.contains("IOMMU group 9"), "{}", r.message);
    assert!(r.message.contains("0000:00:1f.0 (ISA bridge, driver lpc_ich)"), "{}", r.message);
    assert!(r.message.contains("0000:00:1f.3 (SMBus controller, no driver)"), "{}", r.message);
    assert!(!r.message.contains("0000:00:1f.2 ("), "the device itself is not an offender");
    // Naming the whole group still refuses: the ISA bridge is not bindable.
    let p = plan::plan(&f.roots, &[bdf("00:1f.0"), bdf("00:1f.2"), bdf("00:1f.3")], false);
    assert!(codes(&p, 0).contains(&"not-bindable"));
    assert!(!codes(&p, 1).contains(&"group-shared"));
    // A member already on vfio-pci is fine.
    let t2 = tempfile::tempdir().unwrap();
    let g = Fixture::new(t2.path(), 2);
    g.pci("0000:01:00.0", 0x1b36, 0x10, 0x010802, Some("nvme"), Some(5))
        .pci("0000:01:00.1", 0x1b36, 0x10, 0x010802, Some("vfio-pci"), Some(5))
        .pci("0000:00:1c.0", 0x8086, 0x1, 0x060400, Some("pcieport"), Some(5));
    g.nvme_ns("0000:01:00.0", "nvme0", "nvme0n1", "259:0");
    let p = plan::plan(&g.roots, &[bdf("01:00.0")], false);
    assert!(p.ok, "{:?}", p.all_refusals());
}

#[test]
fn plan_refuses_without_iommu_with_hint() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::new(t.path(), 2);
    f.set("proc/cmdline", "console=ttyS0");
    f.pci("0000:00:04.0", 0x1b36, 0x10, 0x010802, Some("nvme"), None).nvme_ns("0000:00:04.0", "nvme0", "nvme0n1", "259:0");
    let p = plan::plan(&f.roots, &[bdf("00:04.0")], false);
    assert!(!p.ok);
    assert_eq!(p.refusals[0].code, "no-iommu");
    assert!(p.refusals[0].message.contains("intel_iommu=on"), "{}", p.refusals[0].message);
}

#[test]
fn input_validation_names_the_problem() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::q35(t.path());
    let e = plan::parse_bdfs(&f.roots, &["00:04".into()]).unwrap_err().0;
    assert!(e.contains("malformed PCI address '00:04'"), "{e}");
    let e = plan::parse_bdfs(&f.roots, &["0000:00:09.0".into()]).unwrap_err().0;
    assert!(e.contains("unknown PCI device 0000:00:09.0"), "{e}");
    let ok = plan::parse_bdfs(&f.roots, &["00:04.0".into(), "0000:00:04.0".into()]).unwrap();
    assert_eq!(ok.len(), 1, "duplicates collapse");
    assert!(plan::require_root(1000, "bind").unwrap_err().0.contains("must run as root"));
    assert!(plan::require_root(0, "bind").is_ok());
}

#[test]
fn bind_and_restore_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::q35(t.path());
    let emu = Emu::new(&f.roots);
    let c = ctx(&f, &emu);
    let rep = bind::bind(&c, &[bdf("00:04.0"), bdf("00:05.0")], false);
    assert!(rep.ok, "{:?}", rep.error);
    for b in ["00:04.0", "00:05.0"] {
        assert_eq!(sys::driver_of(&f.roots, &bdf(b)).as_deref(), Some("vfio-pci"));
    }
    assert!(!f.roots.sys.join("block/nvme0n1").exists(), "namespace gone while on vfio");
    let st = State::load(&f.roots).unwrap();
    assert_eq!(st.devices.len(), 2);
    assert_eq!(st.devices[0].previous_driver.as_deref(), Some("nvme"));
    assert_eq!(st.devices[0].disks, vec!["nvme0n1"]);
    // The writes follow the documented sequence.
    let w: Vec<String> = emu.writes.borrow().iter().map(|(p, d)| format!("{}={}", p.rsplit('/').next().unwrap(), d)).collect();
    assert_eq!(&w[..3], &["driver_override=vfio-pci", "unbind=0000:00:04.0", "drivers_probe=0000:00:04.0"]);

    // Binding again is a no-op.
    let again = bind::bind(&c, &[bdf("00:04.0")], false);
    assert!(again.ok && again.plan.devices[0].already_bound);

    // Restore one, then the rest.
    let recs = bind::restore_targets(&f.roots, &st, &[bdf("00:05.0")]).unwrap();
    let r = bind::restore(&c, &recs);
    assert!(r.ok, "{:?}", r.devices);
    assert_eq!(r.devices[0].disks, vec!["nvme1n1"]);
    assert_eq!(sys::driver_of(&f.roots, &bdf("00:05.0")).as_deref(), Some("nvme"));
    assert!(f.roots.dev.join("nvme1n1").exists());
    let st = State::load(&f.roots).unwrap();
    assert_eq!(st.devices.len(), 1);
    let r = bind::restore(&c, &bind::restore_targets(&f.roots, &st, &[]).unwrap());
    assert!(r.ok);
    assert!(State::load(&f.roots).unwrap().devices.is_empty());
    assert_eq!(fs::read_to_string(f.pci_dir("0000:00:04.0").join("driver_override")).unwrap().trim(), "(null)");
    // Restoring something never bound is bad input.
    let e = bind::restore_targets(&f.roots, &State::default(), &[bdf("00:04.0")]).unwrap_err();
    assert!(e.0.contains("not recorded"));
}

#[test]
fn bind_rolls_back_earlier_devices_when_a_later_one_fails() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::q35(t.path());
    let emu = Emu::new(&f.roots);
    // Second device's drivers_probe fails (first device's succeeds).
    emu.fail_on("drivers_probe", 2);
    let c = ctx(&f, &emu);
    let rep = bind::bind(&c, &[bdf("00:04.0"), bdf("00:05.0")], false);
    assert!(!rep.ok);
    assert!(rep.rolled_back);
    assert!(rep.error.as_ref().unwrap().contains("0000:00:05.0"), "{:?}", rep.error);
    assert_eq!(rep.rollback.len(), 2, "{:?}", rep.rollback);
    for b in ["00:04.0", "00:05.0"] {
        assert_eq!(sys::driver_of(&f.roots, &bdf(b)).as_deref(), Some("nvme"), "{b} back on nvme");
        assert_eq!(fs::read_to_string(f.roots.pci_dev(&bdf(b)).join("driver_override")).unwrap().trim(), "(null)");
    }
    assert!(f.roots.sys.join("block/nvme0n1").exists());
    assert!(State::load(&f.roots).unwrap().devices.is_empty(), "no stale records after a clean rollback");
}

#[test]
fn bind_rolls_back_when_vfio_does_not_take_the_device() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::q35(t.path());
    let emu = Emu::new(&f.roots);
    emu.broken.borrow_mut().push("vfio-pci".into());
    let c = ctx(&f, &emu);
    let rep = bind::bind(&c, &[bdf("00:04.0")], false);
    assert!(!rep.ok);
    assert!(rep.error.as_ref().unwrap().contains("did not bind to vfio-pci"), "{:?}", rep.error);
    assert_eq!(sys::driver_of(&f.roots, &bdf("00:04.0")).as_deref(), Some("nvme"));
}

#[test]
fn refused_bind_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::q35(t.path());
    f.mount("259:0", "/mnt", "ext2", "/dev/nvme0n1");
    let emu = Emu::new(&f.roots);
    let c = ctx(&f, &emu);
    let rep = bind::bind(&c, &[bdf("00:05.0"), bdf("00:04.0")], false);
    assert!(!rep.ok);
    assert!(rep.error.as_ref().unwrap().contains("mounted on /mnt"));
    assert!(emu.writes.borrow().is_empty(), "no writes: {:?}", emu.writes.borrow());
    assert!(!f.roots.state_file().exists());
}

#[test]
fn restore_reports_missing_block_device() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::q35(t.path());
    let emu = Emu::new(&f.roots);
    let c = ctx(&f, &emu);
    assert!(bind::bind(&c, &[bdf("00:04.0")], false).ok);
    // Lose the stashed namespace: the controller comes back without its disk.
    fs::remove_dir_all(f.roots.sys.join(".stash")).unwrap();
    let st = State::load(&f.roots).unwrap();
    let r = bind::restore(&c, &st.devices);
    assert!(!r.ok);
    assert!(r.devices[0].error.as_ref().unwrap().contains("did not reappear"), "{:?}", r.devices[0].error);
    assert_eq!(State::load(&f.roots).unwrap().devices.len(), 1, "record kept for another try");
}

#[test]
fn cpus_validation() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::new(t.path(), 4);
    f.set("sys/devices/system/cpu/online", "0-2");
    let r = &f.roots;
    assert!(cpus::validate_cpus(r, "1-2").is_ok());
    assert!(cpus::validate_cpus(r, "9").unwrap_err().0.contains("CPU 9 out of range"));
    assert!(cpus::validate_cpus(r, "3").unwrap_err().0.contains("CPU 3 offline"));
    assert!(cpus::validate_cpus(r, "0-2").unwrap_err().0.contains("would leave none"));
    assert!(cpus::validate_cpus(r, "x").unwrap_err().0.contains("malformed CPU list"));
}

#[test]
fn cpus_isolate_and_release() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::new(t.path(), 4);
    f.irq(10, "0-3", false).irq(11, "2", false).irq(12, "0", false).irq(24, "2", true);
    f.set("proc/cmdline", "console=ttyS0 nohz_full=3");
    let emu = Emu::new(&f.roots);
    let c = ctx(&f, &emu);
    let set = parse_cpulist("2-3").unwrap();
    let rep = cpus::isolate(&c, &set).unwrap();
    assert!(rep.ok, "{:?}", rep.error);
    let cg = f.roots.cgroup.join(cpus::CGROUP_NAME);
    assert_eq!(fs::read_to_string(cg.join("cpuset.cpus")).unwrap(), "2-3");
    assert_eq!(rep.partition, "isolated");
    assert!(fs::read_to_string(f.roots.cgroup.join("cgroup.subtree_control")).unwrap().contains("cpuset"));
    let irq = |n: u32| fs::read_to_string(f.roots.proc_.join(format!("irq/{n}/smp_affinity_list"))).unwrap();
    assert_eq!(irq(10), "0-1");
    assert_eq!(irq(11), "0-1", "IRQ only on isolated CPUs moves to housekeeping");
    assert_eq!(irq(12), "0", "untouched");
    assert_eq!(rep.irqs_not_moved.len(), 1);
    assert_eq!(rep.irqs_not_moved[0].irq, 24);
    assert!(rep.irqs_not_moved[0].reason.contains("kernel-managed"));
    assert_eq!(fs::read_to_string(f.roots.proc_.join("irq/default_smp_affinity")).unwrap(), "3");
    // nohz_full covers 3 only; rcu_nocbs (implied by nohz_full) misses 2.
    assert!(rep.warnings.iter().any(|w| w.contains("nohz_full does not cover CPU 2")), "{:?}", rep.warnings);
    assert!(rep.warnings.iter().any(|w| w.contains("rcu_nocbs does not cover CPU 2")), "{:?}", rep.warnings);
    // Isolating twice is refused.
    assert!(cpus::isolate(&c, &set).unwrap_err().0.contains("already isolated"));

    let rel = cpus::release(&c).unwrap();
    assert!(rel.ok, "{:?}", rel.error);
    assert!(!cg.exists());
    assert_eq!(irq(10), "0-3");
    assert_eq!(irq(11), "2");
    assert_eq!(fs::read_to_string(f.roots.proc_.join("irq/default_smp_affinity")).unwrap(), "f");
    assert!(!fs::read_to_string(f.roots.cgroup.join("cgroup.subtree_control")).unwrap().contains("cpuset"));
    assert!(State::load(&f.roots).unwrap().cpus.is_none());
    // Nothing left: release is a harmless no-op.
    assert!(cpus::release(&c).unwrap().ok);
}

#[test]
fn cpus_isolate_refuses_without_cgroup2_and_rolls_back_invalid_partition() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::new(t.path(), 2);
    fs::remove_file(f.roots.cgroup.join("cgroup.controllers")).unwrap();
    let emu = Emu::new(&f.roots);
    let c = ctx(&f, &emu);
    let e = cpus::isolate(&c, &parse_cpulist("1").unwrap()).unwrap_err();
    assert!(e.0.contains("cgroup v2 is not mounted"), "{}", e.0);
    assert!(emu.writes.borrow().is_empty());

    // The kernel reports "isolated invalid (...)": undo everything.
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::new(t.path(), 2);
    struct Invalid<'a>(&'a Emu);
    impl aether_part::sys::Ops for Invalid<'_> {
        fn write(&self, p: &std::path::Path, d: &str) -> std::io::Result<()> {
            let d = if d == "isolated" { "isolated invalid (Cpu list in cpuset.cpus not exclusive)" } else { d };
            self.0.write(p, d)
        }
        fn create_dir(&self, p: &std::path::Path) -> std::io::Result<()> { self.0.create_dir(p) }
        fn remove_dir(&self, p: &std::path::Path) -> std::io::Result<()> { self.0.remove_dir(p) }
    }
    let emu = Emu::new(&f.roots);
    let inv = Invalid(&emu);
    let c = Ctx { roots: f.roots.clone(), euid: 0, ops: &inv, timeout: Duration::from_millis(10), real: false };
    let rep = cpus::isolate(&c, &parse_cpulist("1").unwrap()).unwrap();
    assert!(!rep.ok);
    assert!(rep.error.unwrap().contains("not exclusive"));
    assert!(!f.roots.cgroup.join(cpus::CGROUP_NAME).exists());
    assert!(!fs::read_to_string(f.roots.cgroup.join("cgroup.subtree_control")).unwrap().contains("cpuset"));
    assert!(State::load(&f.roots).unwrap().cpus.is_none());
}

#[test]
fn hugepages_reserve_and_shortfall() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::new(t.path(), 2);
    let mut emu = Emu::new(&f.roots);
    emu.huge_capacity = 40;
    let c = ctx(&f, &emu);
    let rep = cpus::hugepages(&c, 16, None, None).unwrap();
    assert!(rep.ok);
    assert_eq!((rep.size_kb, rep.reserved, rep.shortfall), (2048, 16, 0));
    let rep = cpus::hugepages(&c, 64, Some(0), Some("2M")).unwrap();
    assert!(!rep.ok);
    assert_eq!((rep.reserved, rep.shortfall), (40, 24));
    assert!(rep.warnings[0].contains("24 short"), "{:?}", rep.warnings);
    assert!(cpus::hugepages_target(&f.roots, Some(3), None).unwrap_err().0.contains("unknown NUMA node 3"));
    assert!(cpus::hugepages_target(&f.roots, None, Some("1G")).unwrap_err().0.contains("1048576kB is not supported"));
    fs::remove_dir_all(f.roots.sys.join("kernel/mm/hugepages")).unwrap();
    assert!(cpus::hugepages_target(&f.roots, None, None).unwrap_err().0.contains("no hugetlb support"));
}

#[test]
fn status_reports_devices_in_use_and_isolation() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::q35(t.path());
    f.mount("259:0", "/mnt/x", "ext2", "/dev/nvme0n1");
    f.set("proc/cmdline", "console=ttyS0 isolcpus=nohz,domain,1 nohz_full=1 intel_iommu=on");
    let s = aether_part::status(&f.roots);
    assert!(s.iommu);
    assert!(s.vfio_pci_driver);
    let d = s.devices.iter().find(|d| d.pci.bdf == "0000:00:04.0").unwrap();
    assert_eq!(d.disks[0].name, "nvme0n1");
    assert_eq!(d.in_use, vec!["/dev/nvme0n1 mounted on /mnt/x"]);
    assert_eq!(s.cpu_isolation.isolcpus, "nohz,domain,1");
    assert_eq!(s.cpu_isolation.nohz_full, "1");
    assert_eq!(s.hugepages.len(), 2, "global and node0");
}
