//! aether-stat CLI: one line per aether device per interval, like `iostat -x`.

use aether_stat::{compute, format_row, header, json_line, name_width, read_tree, Fatal, Snapshot, DEFAULT_ROOT};
use clap::Parser;
use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const AFTER_HELP: &str = "\
Columns (each over one interval, from the difference of two reads of <root>/<dev>/stats):
  time      seconds since aether-stat started
  reads/s   demand read bios per second (reads)
  hit%      demand 4 KiB blocks served from the cache, % of demand blocks read:
            prefetch_hits / (read_bytes / 4096)
  late%     demand blocks whose prefetch was still in flight, same denominator:
            prefetch_late / (read_bytes / 4096)
  waste%    prefetched blocks that ended unused (evicted or invalidated), % of the
            prefetched blocks whose outcome was decided in the interval:
            prefetch_wasted / (prefetch_hits + prefetch_late + prefetch_wasted)
  pfMiB/s   MiB per second read by prefetch bios (prefetch_bytes)
  cacheMiB  cache size now (cache_bytes)
  phi eps   the gate's phi (gate_phi, radians) and effective threshold (gate_epsilon_eff)
  depth     prefetch depth cap of the P99 guard (depth_cap)
A '-' (null in JSON) is a counter the module does not print, or a zero denominator.
MiB = 2^20 bytes. A counter that goes down (reset_stats, table reload) makes the
interval count from zero: rates are never negative. Devices that appear or
disappear are announced on stderr.

--json prints one object per device per interval (JSON lines) with the fields
t, unix_time, device, interval_s, reads_per_s, read_mib_per_s, hit_pct, late_pct,
waste_pct, gate_open_pct (gate_open / (gate_open + gate_closed), %), prefetch_blocks_per_s,
prefetch_mib_per_s, cache_mib, cache_limit_mib, phi, eps, depth, counter_reset, new_device
and deltas (every counter's increase).

Exit status: 0 done (--count reached); 1 I/O error; 2 bad command line;
3 debugfs not mounted; 4 aether module not loaded (or unloaded while running);
5 permission denied (debugfs needs root).";

#[derive(Parser)]
#[command(
    name = "aether-stat",
    version,
    about = "Live per-device view of aether's prefetch counters, like iostat -x",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Print JSON lines instead of the text table.
    #[arg(long)]
    json: bool,
    /// Seconds between reports (fractions allowed).
    #[arg(long, short = 'i', value_name = "SECS", default_value_t = 1.0, value_parser = parse_interval)]
    interval: f64,
    /// Stop after N reports (default: run until interrupted).
    #[arg(long, short = 'c', value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Directory holding one subdirectory per device (for testing).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_ROOT)]
    root: PathBuf,
}

/// One line on stderr; a closed stderr is ignored rather than a panic (as `eprintln!` would).
macro_rules! note {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stderr(), $($arg)*);
    }};
}

fn parse_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if v.is_finite() && (0.01..=86400.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("'{s}' is out of range 0.01 .. 86400 seconds"))
    }
}

fn fatal(f: &Fatal) -> ExitCode {
    note!("aether-stat: {}", f.message());
    ExitCode::from(f.exit_code())
}

/// A failed write to stdout: a closed pipe (`aether-stat | head`) ends quietly.
fn write_failed(e: &io::Error) -> ExitCode {
    if e.kind() == io::ErrorKind::BrokenPipe {
        ExitCode::SUCCESS
    } else {
        note!("aether-stat: cannot write output: {e}");
        ExitCode::from(Fatal::EXIT_IO)
    }
}

fn warn_malformed(snap: &Snapshot, warned: &mut BTreeSet<String>) {
    for (dev, st) in &snap.devices {
        if let Some((line, text)) = st.malformed.first() {
            if warned.insert(dev.clone()) {
                note!(
                    "aether-stat: {dev}: ignoring {} malformed stats line(s), first at line {line}: {:?}",
                    st.malformed.len(),
                    text
                );
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let start = Instant::now();
    let mut prev = match read_tree(&cli.root) {
        Ok(s) => s,
        Err(f) => return fatal(&f),
    };
    let mut prev_at = Instant::now();
    let mut warned = BTreeSet::new();
    warn_malformed(&prev, &mut warned);
    if prev.devices.is_empty() {
        note!("aether-stat: no aether devices under {} yet; waiting for one", cli.root.display());
    }
    let out = io::stdout();
    let mut out = out.lock();
    let mut width = 0;
    let mut lines_since_header = 0;
    // The header comes at once (it also tells a script the first snapshot is taken).
    if !cli.json && !prev.devices.is_empty() {
        width = name_width(prev.devices.keys().map(String::as_str));
        if let Err(e) = writeln!(out, "{}", header(width)).and_then(|()| out.flush()) {
            return write_failed(&e);
        }
    }
    let interval = Duration::from_secs_f64(cli.interval);
    let mut n = 0u64;
    while cli.count.is_none_or(|c| n < c) {
        n += 1;
        // Fixed schedule from the start, so reports do not drift by the time reading takes.
        let due = start + interval.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let cur = match read_tree(&cli.root) {
            Ok(s) => s,
            Err(f) => return fatal(&f),
        };
        let now = Instant::now();
        let (rows, changes) = compute(&prev, &cur, now.duration_since(prev_at).as_secs_f64());
        for d in &changes.disappeared {
            note!("aether-stat: device {d} disappeared");
            warned.remove(d);
        }
        for d in &changes.appeared {
            note!("aether-stat: device {d} appeared");
        }
        warn_malformed(&cur, &mut warned);
        let t = now.duration_since(start).as_secs_f64();
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let mut text = String::new();
        if cli.json {
            for r in &rows {
                text.push_str(&json_line(r, t, unix));
                text.push('\n');
            }
        } else if !rows.is_empty() {
            let w = name_width(rows.iter().map(|r| r.device.as_str()));
            if w != width || lines_since_header >= 20 {
                width = w;
                lines_since_header = 0;
                text.push_str(&header(w));
                text.push('\n');
            }
            for r in &rows {
                text.push_str(&format_row(r, t, width));
                text.push('\n');
                lines_since_header += 1;
            }
        }
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            return write_failed(&e);
        }
        prev = cur;
        prev_at = now;
    }
    ExitCode::SUCCESS
}
