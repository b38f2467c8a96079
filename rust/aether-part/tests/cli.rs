//! The binary against fixture trees: exit codes, messages and the JSON shape.

use aether_part::testkit::Fixture;
use serde_json::Value;
use std::process::{Command, Output};

fn run(root: &std::path::Path, args: &[&str], euid: u32) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aether-part"))
        .args(args)
        .env("AETHER_PART_ROOT", root)
        .env("AETHER_PART_EMULATE", "1")
        .env("AETHER_PART_EUID", euid.to_string())
        .output()
        .unwrap()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn status_json_shape() {
    let t = tempfile::tempdir().unwrap();
    Fixture::q35(t.path());
    let o = run(t.path(), &["status", "--json"], 1000);
    assert!(o.status.success(), "status needs no root: {}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["command"], "status");
    assert_eq!(v["ok"], true);
    assert_eq!(v["iommu"], true);
    let devs = v["devices"].as_array().unwrap();
    let n = devs.iter().find(|d| d["bdf"] == "0000:00:04.0").unwrap();
    for k in ["vendor_device", "driver", "iommu_group", "group_members", "numa_node", "disks", "in_use"] {
        assert!(n.get(k).is_some(), "device key {k} missing: {n}");
    }
    assert_eq!(n["driver"], "nvme");
    assert_eq!(n["disks"][0]["name"], "nvme0n1");
    assert!(v["hugepages"].is_array());
    for k in ["isolcpus", "nohz_full", "rcu_nocbs", "partitions"] {
        assert!(v["cpu_isolation"].get(k).is_some(), "{k}");
    }
    // Text mode shows the table too.
    let o = run(t.path(), &["status"], 0);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("0000:00:1f.2") && s.contains("group members"), "{s}");
}

#[test]
fn bad_input_exits_2_and_names_the_problem() {
    let t = tempfile::tempdir().unwrap();
    Fixture::q35(t.path());
    let cases: &[(&[&str], &str)] = &[
        (&["bind", "00:04"], "malformed PCI address '00:04'"),
        (&["plan", "0000:00:09.0"], "unknown PCI device 0000:00:09.0"),
        (&["handshake", "zz:00.0"], "malformed PCI address"),
        (&["cpus", "isolate", "7"], "CPU 7 out of range"),
        (&["cpus", "isolate", "0-1"], "would leave none"),
        (&["hugepages", "4", "--node", "2"], "unknown NUMA node 2"),
        (&["restore", "00:05.0"], "not recorded"),
    ];
    for (args, want) in cases {
        let o = run(t.path(), args, 0);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    // JSON mode carries the error too.
    let o = run(t.path(), &["bind", "--json", "00:04"], 0);
    let v = json(&o);
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("malformed"));
}

#[test]
fn not_root_is_refused_and_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::q35(t.path());
    for args in [&["bind", "00:05.0"][..], &["cpus", "isolate", "1"], &["cpus", "release"], &["hugepages", "2"], &["restore"], &["handshake", "00:05.0"]] {
        let o = run(t.path(), args, 1000);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains("must run as root"), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(aether_part::sys::driver_of(&f.roots, &"00:05.0".parse().unwrap()).as_deref(), Some("nvme"));
    assert!(!f.roots.state_file().exists());
    assert_eq!(std::fs::read_to_string(f.roots.sys.join("kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")).unwrap(), "0");
}

#[test]
fn plan_and_bind_refusals_exit_1_with_reasons() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::q35(t.path());
    f.mount("259:0", "/mnt/a", "ext2", "/dev/nvme0n1");
    let o = run(t.path(), &["plan", "--json", "00:04.0", "00:1f.2"], 0);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["ok"], false);
    assert_eq!(v["devices"][0]["refusals"][0]["code"], "mounted");
    assert_eq!(v["devices"][1]["refusals"][0]["code"], "group-shared");
    let o = run(t.path(), &["bind", "00:1f.2"], 0);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("IOMMU group 9 is shared with 0000:00:1f.0"), "{}", stderr(&o));
    assert!(!f.roots.state_file().exists());
}

#[test]
fn bind_restore_round_trip_through_the_binary() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::q35(t.path());
    let o = run(t.path(), &["bind", "--json", "00:05.0"], 0);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["ok"], true);
    assert_eq!(v["devices"][0]["driver"], "vfio-pci");
    assert_eq!(v["devices"][0]["previous_driver"], "nvme");
    let st: Value = serde_json::from_str(&std::fs::read_to_string(f.roots.state_file()).unwrap()).unwrap();
    assert_eq!(st["devices"][0]["bdf"], "0000:00:05.0");
    assert_eq!(st["devices"][0]["previous_driver"], "nvme");
    let s = json(&run(t.path(), &["status", "--json"], 0));
    let d = s["devices"].as_array().unwrap().iter().find(|d| d["bdf"] == "0000:00:05.0").unwrap().clone();
    assert_eq!(d["recorded_previous_driver"], "nvme");
    let o = run(t.path(), &["restore", "--json"], 0);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["devices"][0]["driver"], "nvme");
    assert_eq!(v["devices"][0]["disks"][0], "nvme1n1");
}

#[test]
fn cpus_and_hugepages_through_the_binary() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::new(t.path(), 2);
    f.irq(5, "0-1", false);
    let o = run(t.path(), &["cpus", "isolate", "--json", "1"], 0);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["partition"], "isolated");
    assert_eq!(v["irqs_moved"][0]["to"], "0");
    assert!(stderr(&o).contains("warning: nohz_full does not cover CPU 1"));
    let o = run(t.path(), &["cpus", "release", "--json"], 0);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["released"], "1");
    let o = run(t.path(), &["hugepages", "--json", "8"], 0);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!((v["requested"].as_u64(), v["reserved"].as_u64(), v["shortfall"].as_u64()), (Some(8), Some(8), Some(0)));
}

#[test]
fn bench_refuses_bad_options_before_touching_the_device() {
    let t = tempfile::tempdir().unwrap();
    let f = Fixture::q35(t.path());
    let cases: &[(&[&str], &str)] = &[
        (&["bench", "00:05.0", "--qd", "0"], "--qd 0 is out of range"),
        (&["bench", "00:05.0", "--qd", "5000"], "--qd 5000 is out of range"),
        (&["bench", "00:05.0", "--bs", "3000"], "--bs 3000 must be a multiple of 4096"),
        (&["bench", "00:05.0", "--bs", "4M"], "at most 2048 KiB"),
        (&["bench", "00:05.0", "--bs", "4q"], "malformed size '4q'"),
        (&["bench", "00:05.0", "--pattern", "zigzag"], "unknown pattern 'zigzag'"),
        (&["bench", "00:05.0", "--pattern", "stride:0"], "stride:N with N >= 1"),
        (&["bench", "00:05.0", "--seconds", "0"], "--seconds 0 is out of range"),
        (&["bench", "00:05.0", "--offset", "100"], "--offset 100 must be a multiple of 4096"),
        (&["bench", "00:05.0", "--span", "4k", "--bs", "8k"], "smaller than --bs"),
        (&["bench", "00:05.0", "--verify", "/nonexistent/ref"], "--verify /nonexistent/ref"),
        (&["bench", "00:05.0", "--prefetch", "--qd", "4"], "--prefetch models one synchronous reader"),
        (&["bench", "00:09.0"], "unknown PCI device 0000:00:09.0"),
        (&["pattern", "100"], "multiples of 4096"),
    ];
    for (args, want) in cases {
        let o = run(t.path(), args, 0);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    let o = run(t.path(), &["bench", "00:05.0"], 1000);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("must run as root"), "{}", stderr(&o));
    // A device still on nvme is refused (exit 1) with the way out, and nothing changes.
    let o = run(t.path(), &["bench", "--json", "00:05.0"], 0);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("is on nvme rather than vfio-pci; run 'aether-part bind 0000:00:05.0' first"), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!((v["command"].as_str(), v["ok"].as_bool(), v["ios"].as_u64()), (Some("bench"), Some(false), Some(0)));
    assert_eq!(aether_part::sys::driver_of(&f.roots, &"00:05.0".parse().unwrap()).as_deref(), Some("nvme"));
}

#[test]
fn pattern_writes_self_checking_blocks() {
    let t = tempfile::tempdir().unwrap();
    Fixture::q35(t.path());
    let o = run(t.path(), &["pattern", "12k", "--offset", "8k"], 1000);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout.len(), 12288);
    for (i, b) in o.stdout.chunks(4096).enumerate() {
        aether_part::nvme::check_block(b, 8192 + 4096 * i as u64).unwrap();
    }
    assert!(aether_part::nvme::check_block(&o.stdout[..4096], 0).is_err(), "blocks carry their offset");
}
