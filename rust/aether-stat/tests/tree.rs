//! read_tree + compute against fixture trees written to a tempdir, as the module lays them out.

use aether_stat::{compute, read_tree, Fatal, Value};
use std::fs;
use std::path::Path;

fn dev(root: &Path, name: &str, stats: &str) {
    fs::create_dir_all(root.join(name)).unwrap();
    fs::write(root.join(name).join("stats"), stats).unwrap();
}

const FULL: &str = "reads: 1000\nread_bytes: 4096000\nwrites: 0\nwrite_bytes: 0\nflushes: 0\ndiscards: 0\n\
other_bios: 0\nread_errors: 0\nwrite_errors: 0\ngate_open: 900\ngate_closed: 100\ngate_sectors: 7200\n\
read_p50_us: 65\nread_p99_us: 262\nwrite_p50_us: 0\nwrite_p99_us: 0\nenabled: 1\nstreams_created: 3\n\
gate_epsilon_eff: 0.625\ngate_phi: 0\ndepth_cap: 8\nprefetch_issued: 800\nprefetch_bytes: 3276800\n\
prefetch_hits: 700\nprefetch_late: 20\nprefetch_wasted: 30\nprefetch_errors: 0\nprefetch_stale_dropped: 0\n\
prefetch_alloc_failures: 0\ncache_bytes: 204800\ncache_limit_bytes: 67108864\n";

#[test]
fn full_stats_file_parses_without_malformed_lines() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("aether");
    dev(&root, "fast", FULL);
    // Not devices: a plain file, and a directory without stats.
    fs::write(root.join("README"), "x").unwrap();
    fs::create_dir(root.join("nostats")).unwrap();
    let s = read_tree(&root).unwrap();
    assert_eq!(s.devices.keys().collect::<Vec<_>>(), vec!["fast"]);
    let st = &s.devices["fast"];
    assert!(st.malformed.is_empty());
    assert_eq!(st.values.len(), 31);
    assert_eq!(st.get("cache_limit_bytes"), Some(Value::Int(67108864)));
}

#[test]
fn devices_come_and_go_lines_break_and_counters_reset() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("aether");
    dev(&root, "steady", FULL);
    dev(&root, "leaving", "reads: 5\nread_bytes: 20480\n");
    dev(&root, "resetting", FULL);
    let a = read_tree(&root).unwrap();

    // One interval later: 1000 more reads (4000 KiB = 1000 blocks), 600 hits, 100 late, 100 wasted.
    dev(&root, "steady", &FULL
        .replace("reads: 1000", "reads: 2000")
        .replace("read_bytes: 4096000", "read_bytes: 8192000")
        .replace("prefetch_hits: 700", "prefetch_hits: 1300")
        .replace("prefetch_late: 20", "prefetch_late: 120")
        .replace("prefetch_wasted: 30", "prefetch_wasted: 130")
        .replace("prefetch_bytes: 3276800", "prefetch_bytes: 7471104")
        .replace("cache_bytes: 204800", "cache_bytes: 1048576")
        .replace("gate_phi: 0", "gate_phi: -1.25")
        // A torn or garbled line is skipped, not fatal.
        .replace("flushes: 0\n", "flushes: 0\nflushes 0 0\n\u{fffd}\u{0}garbage\n"));
    fs::remove_dir_all(root.join("leaving")).unwrap();
    dev(&root, "arriving", "reads: 50\nread_bytes: 204800\n");
    // reset_stats: counters back near zero, gauges unchanged.
    dev(&root, "resetting", &FULL.replace("reads: 1000", "reads: 4").replace("read_bytes: 4096000", "read_bytes: 16384")
        .replace("gate_open: 900", "gate_open: 4").replace("prefetch_hits: 700", "prefetch_hits: 2"));
    let b = read_tree(&root).unwrap();
    assert_eq!(b.devices["steady"].malformed.len(), 2);

    let (rows, ch) = compute(&a, &b, 2.0);
    assert_eq!(ch.appeared, vec!["arriving"]);
    assert_eq!(ch.disappeared, vec!["leaving"]);
    let row = |n: &str| rows.iter().find(|r| r.device == n).unwrap();
    assert!(rows.iter().all(|r| r.device != "leaving"));

    let s = row("steady");
    assert_eq!(s.reads_per_s, Some(500.0));
    assert_eq!(s.hit_pct, Some(60.0));
    assert_eq!(s.late_pct, Some(10.0));
    assert_eq!(s.waste_pct, Some(100.0 * 100.0 / 800.0));
    assert_eq!(s.prefetch_mib_per_s, Some(2.0));
    assert_eq!(s.cache_mib, Some(1.0));
    assert_eq!(s.cache_limit_mib, Some(64.0));
    assert_eq!(s.phi, Some(-1.25));
    assert_eq!(s.deltas["flushes"], 0, "the well-formed copy of a key is kept");
    assert_eq!(s.gate_open_pct, None, "the gate made no decision in the interval");
    assert_eq!(row("resetting").gate_open_pct, Some(100.0 * 4.0 / 104.0));

    let n = row("arriving");
    assert!(n.new_device);
    assert_eq!(n.reads_per_s, Some(25.0));

    let r = row("resetting");
    assert!(r.counter_reset);
    for row in &rows {
        for (k, v) in [("reads", row.reads_per_s), ("hit", row.hit_pct), ("pf", row.prefetch_mib_per_s)] {
            assert!(v.is_none_or(|v| v >= 0.0), "{} {k} negative: {v:?}", row.device);
        }
    }
    assert_eq!(r.reads_per_s, Some(2.0));
    assert_eq!(r.hit_pct, Some(50.0));
}

#[test]
fn missing_root_tells_debugfs_from_module() {
    let t = tempfile::tempdir().unwrap();
    // Empty "debugfs" mount point: not mounted.
    let e = read_tree(&t.path().join("aether")).unwrap_err();
    assert!(matches!(e, Fatal::NoDebugfs(_)), "{e:?}");
    assert_eq!(e.exit_code(), 3);
    // Something else in debugfs, but no aether: module not loaded.
    fs::create_dir(t.path().join("block")).unwrap();
    let e = read_tree(&t.path().join("aether")).unwrap_err();
    assert!(matches!(e, Fatal::NoModule(_)), "{e:?}");
    assert_eq!(e.exit_code(), 4);
    // Mount point missing altogether.
    let e = read_tree(&t.path().join("none/aether")).unwrap_err();
    assert_eq!(e.exit_code(), 3);
    // Module loaded, no device: not an error.
    fs::create_dir(t.path().join("aether")).unwrap();
    assert!(read_tree(&t.path().join("aether")).unwrap().devices.is_empty());
}
