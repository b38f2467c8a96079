//! aether-stat: reads aether's debugfs `stats` files and turns two snapshots into per-device rates.
//!
//! The kernel module writes `/sys/kernel/debug/aether/<dev>/stats` as one `key: value` line per
//! field (Documentation/ABI/testing/debugfs-aether). Integer fields are counters (deltas between
//! snapshots) unless listed in [`GAUGES`]; decimal fields (`gate_phi`, `gate_epsilon_eff`) are
//! always gauges. Counters that the running module does not print are absent, not zero.
//!
//! Units: the prefetch outcome counters (`prefetch_issued`, `prefetch_hits`, `prefetch_late`,
//! `prefetch_wasted`) count 4 KiB blocks; `*_bytes` count bytes; MiB = 2^20 bytes.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

/// Where the module creates its per-device directories.
pub const DEFAULT_ROOT: &str = "/sys/kernel/debug/aether";
/// Cache and prefetch block size: the unit of the prefetch outcome counters.
pub const BLOCK_BYTES: u64 = 4096;
const MIB: f64 = 1_048_576.0;

/// Integer fields that are levels, not running totals: printed as read, never differenced.
/// `gate_phi` and `gate_epsilon_eff` are decimals, but print without a fraction when integral.
/// The ABI file's "Levels:" line names the same set (a test holds them together): a level
/// missing here would, on going down, be taken for a reset_stats and recount every counter.
pub const GAUGES: &[&str] = &[
    "cache_bytes",
    "cache_consumed_blocks",
    "cache_in_flight_blocks",
    "cache_limit_bytes",
    "cache_unused_blocks",
    "depth_cap",
    "device_p99_us",
    "enabled",
    "gate_epsilon_eff",
    "gate_phi",
    "read_p50_us",
    "read_p99_us",
    "reads_parked",
    "write_p50_us",
    "write_p99_us",
    "writes_in_flight",
];

/// Running totals that reset_stats leaves alone (the ABI file's "Kept by reset_stats:" line):
/// across a reset they are still differenced, not counted whole.
pub const KEPT_BY_RESET: &[&str] = &["cache_wait_fallbacks", "streams_created"];

/// One field of a `stats` file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// A non-negative integer (counter, or gauge when in [`GAUGES`]).
    Int(u64),
    /// A decimal such as `gate_phi: -0.5` (always a gauge).
    Dec(f64),
}

impl Value {
    fn as_f64(self) -> f64 {
        match self {
            Value::Int(v) => v as f64,
            Value::Dec(v) => v,
        }
    }
}

/// A parsed `stats` file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub values: BTreeMap<String, Value>,
    /// Lines that were not `key: value` (1-based line number, text); they are skipped.
    pub malformed: Vec<(usize, String)>,
}

impl Stats {
    pub fn get(&self, key: &str) -> Option<Value> {
        self.values.get(key).copied()
    }
    fn gauge(&self, key: &str) -> Option<f64> {
        self.get(key).map(Value::as_f64)
    }
    fn counters(&self) -> impl Iterator<Item = (&String, u64)> {
        self.values.iter().filter_map(|(k, v)| match v {
            Value::Int(n) if !GAUGES.contains(&k.as_str()) => Some((k, *n)),
            _ => None,
        })
    }
}

fn valid_key(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn parse_value(v: &str) -> Option<Value> {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse().ok().map(Value::Int);
    }
    // Decimals as the module prints them: optional sign, digits, optional fraction. No exponent, inf or nan.
    let body = v.strip_prefix(['-', '+']).unwrap_or(v);
    let ok = !body.is_empty()
        && body.bytes().any(|b| b.is_ascii_digit())
        && body.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && body.bytes().filter(|&b| b == b'.').count() <= 1;
    if ok {
        v.parse::<f64>().ok().filter(|x| x.is_finite()).map(Value::Dec)
    } else {
        None
    }
}

/// Parses a `stats` file. Accepts `key: value` (the module's format) and, for robustness,
/// `key value` and `key=value` (the `dmsetup status` form). Empty lines are ignored; anything
/// else that does not parse is listed in [`Stats::malformed`]. A repeated key keeps its last value.
pub fn parse_stats(text: &str) -> Stats {
    let mut st = Stats::default();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        let split = l.split_once(':').or_else(|| l.split_once('=')).or_else(|| l.split_once(char::is_whitespace));
        let parsed = split.and_then(|(k, v)| {
            let (k, v) = (k.trim(), v.trim());
            if valid_key(k) {
                parse_value(v).map(|v| (k.to_string(), v))
            } else {
                None
            }
        });
        match parsed {
            Some((k, v)) => {
                st.values.insert(k, v);
            }
            None => st.malformed.push((i + 1, line.to_string())),
        }
    }
    st
}

/// What makes aether-stat give up, each with its own exit status.
#[derive(Debug)]
pub enum Fatal {
    /// The directory above the root is missing or empty: debugfs is not mounted there.
    NoDebugfs(PathBuf),
    /// debugfs is mounted but has no aether directory: the module is not loaded.
    NoModule(PathBuf),
    /// Reading debugfs needs root.
    Permission(PathBuf),
    /// Anything else (root is a file, I/O error).
    Io(PathBuf, io::Error),
}

impl Fatal {
    pub const EXIT_IO: u8 = 1;
    pub const EXIT_NO_DEBUGFS: u8 = 3;
    pub const EXIT_NO_MODULE: u8 = 4;
    pub const EXIT_PERMISSION: u8 = 5;

    pub fn exit_code(&self) -> u8 {
        match self {
            Fatal::Io(..) => Self::EXIT_IO,
            Fatal::NoDebugfs(_) => Self::EXIT_NO_DEBUGFS,
            Fatal::NoModule(_) => Self::EXIT_NO_MODULE,
            Fatal::Permission(_) => Self::EXIT_PERMISSION,
        }
    }

    /// The one-line message printed before exiting.
    pub fn message(&self) -> String {
        match self {
            Fatal::NoDebugfs(p) => {
                format!("debugfs is not mounted at {} (try: mount -t debugfs none {})", p.display(), p.display())
            }
            Fatal::NoModule(p) => format!("aether module not loaded: no {} (try: modprobe aether)", p.display()),
            Fatal::Permission(p) => format!("permission denied reading {} (debugfs needs root)", p.display()),
            Fatal::Io(p, e) => format!("cannot read {}: {}", p.display(), e),
        }
    }
}

fn is_empty_dir(p: &Path) -> io::Result<bool> {
    Ok(std::fs::read_dir(p)?.next().is_none())
}

/// Tells a missing debugfs mount from a missing module when `root` does not exist.
fn diagnose_missing(root: &Path) -> Fatal {
    let parent = match root.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => return Fatal::NoModule(root.to_path_buf()),
    };
    match is_empty_dir(parent) {
        Ok(false) => Fatal::NoModule(root.to_path_buf()),
        Ok(true) => Fatal::NoDebugfs(parent.to_path_buf()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Fatal::Permission(parent.to_path_buf()),
        Err(_) => Fatal::NoDebugfs(parent.to_path_buf()),
    }
}

/// Every device's stats at one moment. A device whose file vanished mid-read is simply absent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub devices: BTreeMap<String, Stats>,
}

/// Reads `<root>/*/stats`. Subdirectories without a `stats` file are not devices and are skipped.
///
/// The module names each directory `dm-N` and adds a symbolic link with the device-mapper name
/// next to it. A device is read once, through its directory, and reported under its name when
/// it has a link (the `dm-N` otherwise).
pub fn read_tree(root: &Path) -> Result<Snapshot, Fatal> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(diagnose_missing(root)),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Err(Fatal::Permission(root.to_path_buf())),
        Err(e) => return Err(Fatal::Io(root.to_path_buf(), e)),
    };
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut dirs: Vec<(String, std::path::PathBuf)> = Vec::new();
    for entry in entries {
        // The directory can change under us (devices removed): a failed entry is a vanished one.
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_symlink() {
            if let Ok(target) = std::fs::read_link(entry.path()) {
                if let Some(dir) = target.file_name() {
                    names.insert(dir.to_string_lossy().into_owned(), name);
                }
            }
        } else {
            dirs.push((name, entry.path()));
        }
    }
    let mut snap = Snapshot::default();
    for (dir, path) in dirs {
        let path = path.join("stats");
        match std::fs::read(&path) {
            Ok(bytes) => {
                let name = names.remove(&dir).unwrap_or(dir);
                snap.devices.insert(name, parse_stats(&String::from_utf8_lossy(&bytes)));
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Err(Fatal::Permission(path)),
            // ENOENT (not a device, or removed), ENOTDIR (a plain file), ENODEV/EIO (removal race).
            Err(_) => {}
        }
    }
    Ok(snap)
}

/// One device over one interval. `None` means "not known": a counter the module does not
/// print, or a ratio with a zero denominator. Printed as `-` (text) or `null` (JSON).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub device: String,
    /// Seconds between the two snapshots.
    pub interval_s: f64,
    /// Demand read bios per second.
    pub reads_per_s: Option<f64>,
    /// Demand read MiB per second.
    pub read_mib_per_s: Option<f64>,
    /// Demand 4 KiB blocks served from the cache, % of demand blocks read.
    pub hit_pct: Option<f64>,
    /// Demand 4 KiB blocks that found their prefetch still in flight, % of demand blocks read.
    pub late_pct: Option<f64>,
    /// Prefetched blocks evicted or invalidated unused, % of prefetched blocks resolved.
    pub waste_pct: Option<f64>,
    /// Reads the gate decided to prefetch for, % of its decisions: gate_open / (gate_open + gate_closed).
    pub gate_open_pct: Option<f64>,
    /// Prefetched 4 KiB blocks issued per second.
    pub prefetch_blocks_per_s: Option<f64>,
    /// Prefetch bios' MiB per second read from the lower device.
    pub prefetch_mib_per_s: Option<f64>,
    pub cache_mib: Option<f64>,
    pub cache_limit_mib: Option<f64>,
    /// gate_phi, radians.
    pub phi: Option<f64>,
    /// gate_epsilon_eff.
    pub eps: Option<f64>,
    /// depth_cap, extents.
    pub depth: Option<f64>,
    /// A counter went down (reset_stats, table reload): deltas are the values since the reset.
    pub counter_reset: bool,
    /// The device was not in the previous snapshot: deltas count from zero (its table was loaded).
    pub new_device: bool,
    /// Every counter's increase over the interval.
    pub deltas: BTreeMap<String, u64>,
}

/// Devices that appeared or disappeared between two snapshots.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    pub appeared: Vec<String>,
    pub disappeared: Vec<String>,
}

fn pct(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => Some(n * 100.0 / d),
        _ => None,
    }
}

/// Deltas of every counter of `cur` against `prev`. A counter that went down means the device's
/// counters were zeroed (reset_stats zeroes them together): then every delta is the current value,
/// so no rate is ever negative, except for the counters reset_stats keeps, which are still
/// differenced unless they went down too (a table reload). A counter absent before counts from zero.
fn deltas(prev: Option<&Stats>, cur: &Stats) -> (BTreeMap<String, u64>, bool) {
    let before = |k: &str| match prev.and_then(|p| p.get(k)) {
        Some(Value::Int(v)) => v,
        _ => 0,
    };
    let reset = cur.counters().any(|(k, v)| v < before(k));
    let delta = |k: &str, v: u64| {
        let b = before(k);
        if v < b || (reset && !KEPT_BY_RESET.contains(&k)) {
            v
        } else {
            v - b
        }
    };
    let d = cur.counters().map(|(k, v)| (k.clone(), delta(k, v))).collect();
    (d, reset)
}

/// Computes one row per device of `cur` over `dt` seconds, plus the devices that came and went.
pub fn compute(prev: &Snapshot, cur: &Snapshot, dt: f64) -> (Vec<Row>, Changes) {
    let dt = if dt.is_finite() && dt > 1e-6 { dt } else { 1e-6 };
    let mut rows = Vec::new();
    for (name, st) in &cur.devices {
        let before = prev.devices.get(name);
        let (d, reset) = deltas(before, st);
        let get = |k: &str| d.get(k).copied();
        let rate = |k: &str| get(k).map(|v| v as f64 / dt);
        let getf = |k: &str| get(k).map(|v| v as f64);
        let demand_blocks = getf("read_bytes").map(|b| b / BLOCK_BYTES as f64);
        let resolved = match (getf("prefetch_hits"), getf("prefetch_late"), getf("prefetch_wasted")) {
            (Some(h), Some(l), Some(w)) => Some(h + l + w),
            _ => None,
        };
        rows.push(Row {
            device: name.clone(),
            interval_s: dt,
            reads_per_s: rate("reads"),
            read_mib_per_s: rate("read_bytes").map(|v| v / MIB),
            hit_pct: pct(getf("prefetch_hits"), demand_blocks),
            late_pct: pct(getf("prefetch_late"), demand_blocks),
            waste_pct: pct(getf("prefetch_wasted"), resolved),
            gate_open_pct: pct(getf("gate_open"), getf("gate_open").zip(getf("gate_closed")).map(|(o, c)| o + c)),
            prefetch_blocks_per_s: rate("prefetch_issued"),
            prefetch_mib_per_s: rate("prefetch_bytes").map(|v| v / MIB),
            cache_mib: st.gauge("cache_bytes").map(|v| v / MIB),
            cache_limit_mib: st.gauge("cache_limit_bytes").map(|v| v / MIB),
            phi: st.gauge("gate_phi"),
            eps: st.gauge("gate_epsilon_eff"),
            depth: st.gauge("depth_cap"),
            counter_reset: reset,
            new_device: before.is_none(),
            deltas: d,
        });
    }
    let was: BTreeSet<&String> = prev.devices.keys().collect();
    let is: BTreeSet<&String> = cur.devices.keys().collect();
    let changes = Changes {
        appeared: is.difference(&was).map(|s| s.to_string()).collect(),
        disappeared: was.difference(&is).map(|s| s.to_string()).collect(),
    };
    (rows, changes)
}

fn cell(out: &mut String, v: Option<f64>, width: usize, prec: usize) {
    match v {
        Some(x) => {
            let _ = write!(out, " {:>width$.prec$}", x);
        }
        None => {
            let _ = write!(out, " {:>width$}", "-");
        }
    }
}

/// Column header of the text output for device names up to `name_w` characters.
pub fn header(name_w: usize) -> String {
    format!(
        "{:>7} {:<name_w$} {:>9} {:>5} {:>5} {:>6} {:>8} {:>9} {:>7} {:>6} {:>5}",
        "time", "device", "reads/s", "hit%", "late%", "waste%", "pfMiB/s", "cacheMiB", "phi", "eps", "depth"
    )
}

/// One text line: `t` is seconds since aether-stat started.
pub fn format_row(row: &Row, t: f64, name_w: usize) -> String {
    let mut s = format!("{:>7.1} {:<name_w$}", t, row.device);
    cell(&mut s, row.reads_per_s, 9, 1);
    cell(&mut s, row.hit_pct, 5, 1);
    cell(&mut s, row.late_pct, 5, 1);
    cell(&mut s, row.waste_pct, 6, 1);
    cell(&mut s, row.prefetch_mib_per_s, 8, 2);
    cell(&mut s, row.cache_mib, 9, 1);
    cell(&mut s, row.phi, 7, 4);
    cell(&mut s, row.eps, 6, 3);
    cell(&mut s, row.depth, 5, 0);
    s
}

/// Width of the device column: the longest name, at least 6.
pub fn name_width<'a>(names: impl IntoIterator<Item = &'a str>) -> usize {
    names.into_iter().map(|n| n.chars().count()).max().unwrap_or(0).max(6)
}

/// One JSON line (the `--json` output): the row's fields plus `t` (seconds since aether-stat
/// started) and `unix_time`.
pub fn json_line(row: &Row, t: f64, unix_time: f64) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        t: f64,
        unix_time: f64,
        #[serde(flatten)]
        row: &'a Row,
    }
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let row = &Row { interval_s: (row.interval_s * 1e6).round() / 1e6, ..row.clone() };
    // Serializing plain data with string keys cannot fail; fall back to an empty object anyway.
    serde_json::to_string(&Line { t: round(t), unix_time: round(unix_time), row }).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_module_format_and_tolerates_variants() {
        let st = parse_stats("reads: 12\nread_bytes: 49152\ngate_phi: -0.5\ngate_epsilon_eff: 0.625\ndepth_cap=8\nx 3");
        assert_eq!(st.get("reads"), Some(Value::Int(12)));
        assert_eq!(st.get("gate_phi"), Some(Value::Dec(-0.5)));
        assert_eq!(st.get("depth_cap"), Some(Value::Int(8)));
        assert_eq!(st.get("x"), Some(Value::Int(3)));
        assert!(st.malformed.is_empty());
    }

    #[test]
    fn malformed_lines_are_listed_not_fatal() {
        let st = parse_stats("reads: 5\ngarbage\nwrites: 3x\nphi: 1e5\nbad key: 1\nreads_x: 12abc\n: 4\nflushes: 2");
        assert_eq!(st.values.len(), 2);
        assert_eq!(st.get("flushes"), Some(Value::Int(2)));
        let lines: Vec<usize> = st.malformed.iter().map(|m| m.0).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn huge_counter_is_malformed_not_wrapped() {
        let st = parse_stats("reads: 99999999999999999999999\n");
        assert_eq!(st.get("reads"), None);
        assert_eq!(st.malformed.len(), 1);
    }

    fn snap(devs: &[(&str, &str)]) -> Snapshot {
        Snapshot { devices: devs.iter().map(|(n, t)| (n.to_string(), parse_stats(t))).collect() }
    }

    #[test]
    fn rates_and_percentages() {
        let a = snap(&[(
            "d",
            "reads: 100\nread_bytes: 409600\nprefetch_hits: 0\nprefetch_late: 0\nprefetch_wasted: 0\n\
             prefetch_issued: 0\nprefetch_bytes: 0\ncache_bytes: 0\ngate_phi: 0\ngate_epsilon_eff: 0.625\ndepth_cap: 4",
        )]);
        // 200 more reads of 4 KiB = 200 blocks; 150 hits, 10 late, 40 wasted; 240 blocks prefetched.
        let b = snap(&[(
            "d",
            "reads: 300\nread_bytes: 1228800\nprefetch_hits: 150\nprefetch_late: 10\nprefetch_wasted: 40\n\
             prefetch_issued: 240\nprefetch_bytes: 983040\ncache_bytes: 2097152\ngate_phi: 0.5\n\
             gate_epsilon_eff: 0.5\ndepth_cap: 16",
        )]);
        let (rows, ch) = compute(&a, &b, 2.0);
        assert_eq!(ch, Changes::default());
        let r = &rows[0];
        assert_eq!(r.reads_per_s, Some(100.0));
        assert_eq!(r.hit_pct, Some(75.0));
        assert_eq!(r.late_pct, Some(5.0));
        assert_eq!(r.waste_pct, Some(20.0));
        assert_eq!(r.prefetch_blocks_per_s, Some(120.0));
        assert_eq!(r.prefetch_mib_per_s, Some(983040.0 / 2.0 / 1_048_576.0));
        assert_eq!(r.cache_mib, Some(2.0));
        assert_eq!((r.phi, r.eps, r.depth), (Some(0.5), Some(0.5), Some(16.0)));
        assert!(!r.counter_reset && !r.new_device);
        assert_eq!(r.gate_open_pct, None, "no gate counters in this file");
    }

    #[test]
    fn missing_counters_are_none_and_zero_denominators_too() {
        let a = snap(&[("d", "reads: 1\nread_bytes: 4096")]);
        let b = snap(&[("d", "reads: 1\nread_bytes: 4096\nprefetch_hits: 0\nprefetch_late: 0\nprefetch_wasted: 0")]);
        let (rows, _) = compute(&a, &b, 1.0);
        let r = &rows[0];
        assert_eq!(r.reads_per_s, Some(0.0));
        assert_eq!((r.hit_pct, r.late_pct, r.waste_pct), (None, None, None));
        assert_eq!((r.prefetch_mib_per_s, r.cache_mib, r.phi, r.eps, r.depth), (None, None, None, None, None));
        let line = format_row(r, 1.0, 6);
        assert_eq!(line.split_whitespace().filter(|c| *c == "-").count(), 8, "{line}");
    }

    #[test]
    fn integral_phi_is_a_gauge_not_a_counter() {
        let a = snap(&[("d", "reads: 5\ngate_phi: 1\ngate_epsilon_eff: 1\ndepth_cap: 64")]);
        let b = snap(&[("d", "reads: 6\ngate_phi: 0\ngate_epsilon_eff: 0.5\ndepth_cap: 1")]);
        let (rows, _) = compute(&a, &b, 1.0);
        assert!(!rows[0].counter_reset);
        assert_eq!(rows[0].deltas.keys().collect::<Vec<_>>(), vec!["reads"]);
        assert_eq!((rows[0].phi, rows[0].eps, rows[0].depth), (Some(0.0), Some(0.5), Some(1.0)));
    }

    #[test]
    fn reset_gives_counts_since_reset_never_negative() {
        let a = snap(&[("d", "reads: 1000\nread_bytes: 4096000\ngate_open: 900\ncache_bytes: 8192")]);
        let b = snap(&[("d", "reads: 10\nread_bytes: 40960\ngate_open: 950\ncache_bytes: 4096")]);
        let (rows, _) = compute(&a, &b, 1.0);
        let r = &rows[0];
        assert!(r.counter_reset);
        assert_eq!(r.reads_per_s, Some(10.0));
        assert_eq!(r.deltas["gate_open"], 950);
        assert!(!r.deltas.contains_key("cache_bytes"), "gauges are not differenced");
    }

    #[test]
    fn levels_going_down_are_not_a_reset() {
        // Prefetches completing between two snapshots: the cache levels fall, the counters grow.
        let a = snap(&[(
            "d",
            "reads: 1000\nread_bytes: 4096000\ncache_in_flight_blocks: 32\ncache_unused_blocks: 40\n\
             cache_consumed_blocks: 9\nwrites_in_flight: 2\nreads_parked: 3\ndevice_p99_us: 900",
        )]);
        let b = snap(&[(
            "d",
            "reads: 1100\nread_bytes: 4505600\ncache_in_flight_blocks: 0\ncache_unused_blocks: 8\n\
             cache_consumed_blocks: 1\nwrites_in_flight: 0\nreads_parked: 0\ndevice_p99_us: 80",
        )]);
        let (rows, _) = compute(&a, &b, 1.0);
        assert!(!rows[0].counter_reset);
        assert_eq!(rows[0].deltas.keys().collect::<Vec<_>>(), vec!["read_bytes", "reads"]);
        assert_eq!(rows[0].deltas["reads"], 100);
    }

    #[test]
    fn counters_kept_by_reset_are_still_differenced() {
        let a = snap(&[("d", "reads: 1000\nstreams_created: 70\ncache_wait_fallbacks: 5")]);
        let b = snap(&[("d", "reads: 10\nstreams_created: 72\ncache_wait_fallbacks: 5")]);
        let (rows, _) = compute(&a, &b, 1.0);
        assert!(rows[0].counter_reset);
        let d = &rows[0].deltas;
        assert_eq!((d["reads"], d["streams_created"], d["cache_wait_fallbacks"]), (10, 2, 0));
        // A table reload zeroes them too: then they count whole.
        let c = snap(&[("d", "reads: 3\nstreams_created: 1\ncache_wait_fallbacks: 0")]);
        let (rows, _) = compute(&b, &c, 1.0);
        assert_eq!((rows[0].deltas["reads"], rows[0].deltas["streams_created"]), (3, 1));
    }

    /// The names after `label` in the ABI file, up to the full stop.
    fn abi_list(label: &str) -> Vec<String> {
        let abi = include_str!("../../../Documentation/ABI/testing/debugfs-aether");
        let start = abi.find(label).map(|i| i + label.len()).expect("label in the ABI file");
        let end = start + abi[start..].find('.').expect("a full stop");
        let mut names: Vec<String> = abi[start..end].split(',').map(|n| n.trim().to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn gauges_and_kept_counters_are_the_abi_files() {
        assert_eq!(abi_list("Levels:"), GAUGES);
        assert_eq!(abi_list("Kept by reset_stats:"), KEPT_BY_RESET);
    }

    #[test]
    fn appearing_and_disappearing_devices() {
        let a = snap(&[("old", "reads: 5"), ("stay", "reads: 1")]);
        let b = snap(&[("new", "reads: 7"), ("stay", "reads: 3")]);
        let (rows, ch) = compute(&a, &b, 1.0);
        assert_eq!(ch.appeared, vec!["new"]);
        assert_eq!(ch.disappeared, vec!["old"]);
        let names: Vec<&str> = rows.iter().map(|r| r.device.as_str()).collect();
        assert_eq!(names, vec!["new", "stay"]);
        assert!(rows[0].new_device);
        assert_eq!(rows[0].reads_per_s, Some(7.0));
        assert_eq!(rows[1].reads_per_s, Some(2.0));
    }

    #[test]
    fn header_and_rows_line_up() {
        let r = Row {
            device: "fast".into(),
            interval_s: 1.0,
            reads_per_s: Some(12345.6),
            read_mib_per_s: None,
            hit_pct: Some(99.9),
            late_pct: Some(0.1),
            waste_pct: Some(100.0),
            gate_open_pct: None,
            prefetch_blocks_per_s: None,
            prefetch_mib_per_s: Some(48.25),
            cache_mib: Some(64.0),
            phi: Some(-1.25),
            cache_limit_mib: None,
            eps: Some(0.625),
            depth: Some(64.0),
            counter_reset: false,
            new_device: false,
            deltas: BTreeMap::new(),
        };
        let h = header(6);
        let l = format_row(&r, 3.0, 6);
        assert_eq!(h.len(), l.len(), "\n{h}\n{l}");
        assert!(l.len() <= 100);
        // Every header column ends where its value ends.
        let ends = |s: &str| -> Vec<usize> {
            let b = s.as_bytes();
            (0..b.len()).filter(|&i| b[i] != b' ' && (i + 1 == b.len() || b[i + 1] == b' ')).collect()
        };
        assert_eq!(ends(&h)[2..], ends(&l)[2..]);
    }

    #[test]
    fn json_line_has_nulls_for_unknowns() {
        let (rows, _) = compute(&snap(&[("d", "reads: 1")]), &snap(&[("d", "reads: 3")]), 1.0);
        let v: serde_json::Value = serde_json::from_str(&json_line(&rows[0], 1.23456, 1e9)).unwrap();
        assert_eq!(v["device"], "d");
        assert_eq!(v["t"], 1.235);
        assert_eq!(v["reads_per_s"], 2.0);
        assert!(v["hit_pct"].is_null());
        assert_eq!(v["deltas"]["reads"], 2);
    }
}
