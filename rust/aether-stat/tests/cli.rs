//! The aether-stat binary against fixture trees: output shape, exit codes and live changes.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_aether-stat");

fn dev(root: &Path, name: &str, stats: &str) {
    fs::create_dir_all(root.join(name)).unwrap();
    fs::write(root.join(name).join("stats"), stats).unwrap();
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const STATS: &str = "reads: 100\nread_bytes: 409600\ngate_epsilon_eff: 0.625\ngate_phi: 0.7854\ndepth_cap: 8\n\
prefetch_issued: 10\nprefetch_bytes: 40960\nprefetch_hits: 5\nprefetch_late: 1\nprefetch_wasted: 2\n\
cache_bytes: 8192\n";

#[test]
fn fatal_cases_have_one_line_and_distinct_exit_codes() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("aether");
    let root_s = root.to_str().unwrap();
    let cases: [(&dyn Fn(), i32, &str); 3] = [
        (&|| {}, 3, "debugfs is not mounted"),
        (&|| fs::create_dir(t.path().join("block")).unwrap(), 4, "aether module not loaded"),
        (&|| fs::write(&root, "not a dir").unwrap(), 1, "cannot read"),
    ];
    for (prepare, code, msg) in cases {
        prepare();
        let o = run(&["--root", root_s, "--count", "1", "--interval", "0.05"]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("aether-stat: ") && err.contains(msg), "{err}");
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn bad_command_lines_exit_2() {
    for args in [&["--interval", "0"][..], &["--interval", "x"], &["--count", "0"], &["--bogus"]] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
    }
    let o = run(&["--help"]);
    assert!(o.status.success());
    let help = text(&o.stdout);
    for word in ["hit%", "prefetch_hits / (read_bytes / 4096)", "waste%", "Exit status", "--json", "--root"] {
        assert!(help.contains(word), "--help lacks {word}");
    }
}

#[test]
fn text_output_is_a_header_and_a_line_per_device_per_interval() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("aether");
    dev(&root, "fast", STATS);
    dev(&root, "a_much_longer_name", STATS);
    let o = run(&["--root", root.to_str().unwrap(), "--count", "3", "--interval", "0.05"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(o.stderr.is_empty(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1 + 3 * 2, "{out}");
    assert!(lines[0].split_whitespace().eq(
        ["time", "device", "reads/s", "hit%", "late%", "waste%", "pfMiB/s", "cacheMiB", "phi", "eps", "depth"]));
    for l in &lines[1..] {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(f.len(), 11, "{l}");
        assert_eq!(l.len(), lines[0].len(), "columns line up:\n{}\n{l}", lines[0]);
        // Nothing moved: zero rates, no demand block or prefetch outcome to divide by, gauges as read.
        assert_eq!(&f[2..], ["0.0", "-", "-", "-", "0.00", "0.0", "0.7854", "0.625", "8"], "{l}");
    }
}

#[test]
fn json_lines_carry_every_field() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("aether");
    dev(&root, "fast", "reads: 1\ngate_phi: 0\n");
    let o = run(&["--root", root.to_str().unwrap(), "--count", "2", "--interval", "0.05", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let objs: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objs.len(), 2);
    let keys: Vec<&str> = objs[0].as_object().unwrap().keys().map(String::as_str).collect();
    for k in ["t", "unix_time", "device", "interval_s", "reads_per_s", "read_mib_per_s", "hit_pct", "late_pct",
        "waste_pct", "gate_open_pct", "prefetch_blocks_per_s", "prefetch_mib_per_s", "cache_mib", "cache_limit_mib",
        "phi", "eps", "depth", "counter_reset", "new_device", "deltas"]
    {
        assert!(keys.contains(&k), "no {k} in {keys:?}");
    }
    assert!(objs[1]["t"].as_f64().unwrap() > objs[0]["t"].as_f64().unwrap());
    assert!(objs[0]["hit_pct"].is_null() && objs[0]["depth"].is_null());
    assert_eq!(objs[0]["phi"], 0.0);
}

/// Starts aether-stat, waits for its header (first snapshot taken), changes the tree, and
/// returns (stdout lines after the header, stderr, exit code).
fn live(root: &Path, args: &[&str], change: impl FnOnce()) -> (Vec<String>, String, Option<i32>) {
    let mut child = Command::new(BIN)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut header = String::new();
    out.read_line(&mut header).unwrap();
    assert!(header.contains("reads/s"), "{header}");
    change();
    let lines: Vec<String> = out.lines().map(Result::unwrap).collect();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (lines, err, child.wait().unwrap().code())
}

#[test]
fn live_changes_devices_malformed_lines_and_reset() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("aether");
    dev(&root, "steady", "reads: 100\nread_bytes: 409600\n");
    dev(&root, "leaving", "reads: 5\n");
    dev(&root, "resetting", "reads: 1000\nread_bytes: 4096000\n");
    let (lines, err, code) = live(&root, &["--count", "1", "--interval", "1.5"], || {
        dev(&root, "steady", "reads: 250\nread_bytes: 1024000\nbroken line here\n");
        fs::remove_dir_all(root.join("leaving")).unwrap();
        dev(&root, "arriving", "reads: 30\n");
        dev(&root, "resetting", "reads: 15\nread_bytes: 61440\n");
    });
    assert_eq!(code, Some(0), "{err}");
    let reads = |dev: &str| -> f64 {
        let l = lines.iter().find(|l| l.split_whitespace().nth(1) == Some(dev)).unwrap_or_else(|| panic!("{lines:?}"));
        l.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    // Rates over the ~1.5 s interval (the exact interval is measured, so allow for scheduling).
    assert!((85.0..=101.0).contains(&reads("steady")), "{lines:?}");
    assert!((17.0..=20.5).contains(&reads("arriving")), "{lines:?}");
    assert!((8.5..=10.3).contains(&reads("resetting")), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("leaving")));
    let mut e: Vec<&str> = err.lines().collect();
    e.sort();
    assert_eq!(e.len(), 3, "{err}");
    assert_eq!(e[0], "aether-stat: device arriving appeared");
    assert_eq!(e[1], "aether-stat: device leaving disappeared");
    assert!(e[2].starts_with("aether-stat: steady: ignoring 1 malformed stats line(s), first at line 3"), "{err}");
}

#[test]
fn module_unloaded_while_running_exits_4() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir(t.path().join("block")).unwrap();
    let root = t.path().join("aether");
    dev(&root, "d", "reads: 1\n");
    let (lines, err, code) =
        live(&root, &["--count", "5", "--interval", "1"], || fs::remove_dir_all(&root).unwrap());
    assert_eq!(code, Some(4), "{err}");
    assert!(lines.is_empty(), "{lines:?}");
    let want = format!("aether-stat: aether module not loaded: no {} (try: modprobe aether)", root.display());
    assert_eq!(err.trim_end(), want);
}

#[test]
fn waits_for_devices_when_none_exist() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("aether");
    fs::create_dir(&root).unwrap();
    let o = run(&["--root", root.to_str().unwrap(), "--count", "1", "--interval", "0.05"]);
    assert!(o.status.success());
    assert!(o.stdout.is_empty());
    assert!(text(&o.stderr).contains("no aether devices under"), "{}", text(&o.stderr));
}
