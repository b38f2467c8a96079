//! aether-part CLI. Exit status: 0 done, 1 refused or failed, 2 bad input (nothing changed),
//! 3 hugepages shortfall.

use aether_part::bind::{self, Ctx, State};
use aether_part::cpus;
use aether_part::plan::{self, UsageError};
use aether_part::sys::{Ops, RealOps, Roots};
use aether_part::testkit::Emu;
use aether_part::{bench, nvme, parse, status, vfio};
use clap::{Parser, Subcommand};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "aether-part", version, about = "Hand NVMe devices and CPUs to a user-space partition, safely and reversibly")]
struct Cli {
    /// Print one JSON object on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Directory of the state file (default /run/aether-part; env AETHER_PART_STATE_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Seconds to wait for drivers and block devices to settle.
    #[arg(long, global = true, default_value_t = 10)]
    timeout: u64,
    /// Prefix for sys/, proc/, dev/, sys/fs/cgroup and run/aether-part (testing).
    #[arg(long, global = true, hide = true)]
    root: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// PCI devices, IOMMU groups, block devices in use, hugepages and CPU isolation.
    Status,
    /// Show what `bind` would do and every reason it would refuse; changes nothing.
    Plan {
        #[arg(required = true, value_name = "BDF")]
        bdfs: Vec<String>,
        /// Do not refuse because of partition tables or filesystem signatures.
        #[arg(long)]
        force_data: bool,
    },
    /// Move devices to vfio-pci after the safety checks; records the previous driver.
    Bind {
        #[arg(required = true, value_name = "BDF")]
        bdfs: Vec<String>,
        /// Hand over devices that carry a partition table or filesystem signature.
        #[arg(long)]
        force_data: bool,
    },
    /// Open the device through VFIO and run an NVMe admin Identify over DMA.
    Handshake {
        #[arg(value_name = "BDF")]
        bdf: String,
    },
    /// Polled NVMe reads from user space over VFIO: one I/O queue pair, IOPS, MB/s, latency.
    ///
    /// Exit 0 done, 1 failed (device error status, verify mismatch, not on vfio-pci), 2 bad
    /// input, 130 interrupted. Queues are deleted and DMA unmapped on every path.
    Bench {
        #[arg(value_name = "BDF")]
        bdf: String,
        /// seq, random or stride:N (each read starts N transfers after the previous one).
        #[arg(long, default_value = "random")]
        pattern: String,
        /// Reads in flight (1..=1024).
        #[arg(long, default_value_t = 1)]
        qd: u32,
        /// Bytes per read, a multiple of 4096 (e.g. 4k, 128k; up to 2M).
        #[arg(long, default_value = "4k")]
        bs: String,
        /// How long to measure.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Stop after this many reads (whichever of --seconds and --ios comes first).
        #[arg(long)]
        ios: Option<u64>,
        /// First byte of the region read.
        #[arg(long, default_value = "0")]
        offset: String,
        /// Bytes of the region read (default: to the namespace end, or the --verify file end).
        #[arg(long)]
        span: Option<String>,
        /// Compare every read with FILE, which holds the device's bytes from offset 0.
        #[arg(long, value_name = "FILE", conflicts_with = "verify_crc")]
        verify: Option<PathBuf>,
        /// Check every 4 KiB block read against the self-checking pattern of `aether-part pattern`.
        #[arg(long)]
        verify_crc: bool,
        /// Namespace to read.
        #[arg(long, default_value_t = 1)]
        nsid: u32,
        /// Seed of the random pattern.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Let reads beyond the namespace reach the device (tests status reporting).
        #[arg(long, hide = true)]
        unchecked_span: bool,
        /// Drive aether-core's prefetch engine (as in the kernel target) into a user-space
        /// cache of 32 extents; needs --qd 1 (one synchronous reader).
        #[arg(long)]
        prefetch: bool,
        /// Microseconds of busy work after each read before the next (as fio's thinktime).
        #[arg(long, default_value_t = 0, value_name = "US")]
        think_us: u64,
    },
    /// Write SIZE bytes of the self-checking pattern that `bench --verify-crc` checks to stdout
    /// (for writing to a device with dd before `bind`).
    Pattern {
        #[arg(value_name = "SIZE")]
        size: String,
        /// Device byte offset the first block will live at.
        #[arg(long, default_value = "0")]
        offset: String,
    },
    /// Return devices to their recorded driver and wait for the block devices (all if none given).
    Restore {
        #[arg(value_name = "BDF")]
        bdfs: Vec<String>,
    },
    /// CPU isolation with a cgroup v2 isolated cpuset partition.
    Cpus {
        #[command(subcommand)]
        cmd: CpusCmd,
    },
    /// Reserve N hugepages (system-wide or on one NUMA node) and report any shortfall.
    Hugepages {
        n: u64,
        #[arg(long, value_name = "K")]
        node: Option<u32>,
        /// Page size, e.g. 2M or 1G (default: the system default size).
        #[arg(long)]
        size: Option<String>,
    },
}

#[derive(Subcommand)]
enum CpusCmd {
    /// Isolate CPUS (a cpulist such as 1 or 2-3).
    Isolate { cpus: String },
    /// Undo `cpus isolate`.
    Release,
}

struct Out {
    json: bool,
    command: &'static str,
}

impl Out {
    fn emit<T: Serialize>(&self, ok: bool, body: &T, text: impl FnOnce() -> String) {
        if self.json {
            let mut v = serde_json::to_value(body).unwrap();
            if let Value::Object(m) = &mut v {
                m.insert("command".into(), json!(self.command));
                m.insert("ok".into(), json!(ok));
            } else {
                v = json!({"command": self.command, "ok": ok, "result": v});
            }
            println!("{}", serde_json::to_string_pretty(&v).unwrap());
        } else {
            print!("{}", text());
        }
    }
    fn fail(&self, code: u8, msg: &str) -> ExitCode {
        if self.json {
            println!("{}", serde_json::to_string_pretty(&json!({"command": self.command, "ok": false, "error": msg})).unwrap());
        }
        eprintln!("aether-part {}: {msg}", self.command);
        ExitCode::from(code)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut roots = match &cli.root {
        Some(p) => Roots::under(p),
        None => Roots::from_env(|k| std::env::var(k).ok()),
    };
    if let Some(s) = &cli.state_dir {
        roots.state_dir = s.clone();
    }
    let real = Roots::real();
    let is_real = roots.sys == real.sys && roots.proc_ == real.proc_ && roots.dev == real.dev && roots.cgroup == real.cgroup;
    let emu;
    let ops: &dyn Ops = if !is_real && std::env::var("AETHER_PART_EMULATE").as_deref() == Ok("1") {
        emu = Emu::new(&roots);
        &emu
    } else {
        &RealOps
    };
    let euid = match std::env::var("AETHER_PART_EUID").ok().and_then(|v| v.parse().ok()) {
        Some(u) if !is_real => u,
        _ => nix::unistd::geteuid().as_raw(),
    };
    let ctx = Ctx { roots, euid, ops, timeout: Duration::from_secs(cli.timeout), real: is_real };
    run(cli.cmd, cli.json, &ctx)
}

fn usage(out: &Out, r: Result<(), UsageError>) -> Option<ExitCode> {
    r.err().map(|e| out.fail(2, &e.0))
}

fn run(cmd: Cmd, json: bool, ctx: &Ctx) -> ExitCode {
    let r = &ctx.roots;
    match cmd {
        Cmd::Status => {
            let out = Out { json, command: "status" };
            let s = status(r);
            out.emit(true, &s, || text_status(&s));
            ExitCode::SUCCESS
        }
        Cmd::Plan { bdfs, force_data } => {
            let out = Out { json, command: "plan" };
            let b = match plan::parse_bdfs(r, &bdfs) {
                Ok(b) => b,
                Err(e) => return out.fail(2, &e.0),
            };
            let p = plan::plan(r, &b, force_data);
            out.emit(p.ok, &p, || text_plan(&p));
            if p.ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Cmd::Bind { bdfs, force_data } => {
            let out = Out { json, command: "bind" };
            let b = match plan::parse_bdfs(r, &bdfs) {
                Ok(b) => b,
                Err(e) => return out.fail(2, &e.0),
            };
            if let Some(c) = usage(&out, plan::require_root(ctx.euid, "bind")) {
                return c;
            }
            let rep = bind::bind(ctx, &b, force_data);
            out.emit(rep.ok, &rep, || {
                let mut t = String::new();
                if !rep.plan.ok {
                    t += &text_plan(&rep.plan);
                }
                for d in &rep.devices {
                    t += &format!("{}: {} -> {}{}\n", d.bdf, d.previous_driver.as_deref().unwrap_or("-"), d.driver.as_deref().unwrap_or("no driver"), if d.ok { "" } else { " (FAILED)" });
                }
                for l in &rep.rollback {
                    t += &format!("rollback: {l}\n");
                }
                if rep.ok {
                    t += &format!("bound; previous drivers recorded in {}\n", rep.state_file);
                }
                t
            });
            if let Some(e) = &rep.error {
                eprintln!("aether-part bind: {e}");
            }
            if rep.ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Cmd::Handshake { bdf } => {
            let out = Out { json, command: "handshake" };
            let b = match plan::parse_bdfs(r, &[bdf]) {
                Ok(b) => b[0],
                Err(e) => return out.fail(2, &e.0),
            };
            if let Some(c) = usage(&out, plan::require_root(ctx.euid, "handshake")) {
                return c;
            }
            let h = vfio::handshake(r, &b);
            out.emit(h.ok, &h, || {
                let mut t = String::new();
                for s in &h.steps {
                    t += &format!("  {s}\n");
                }
                if let Some(id) = &h.identify {
                    t += &format!(
                        "{}: model '{}' serial '{}' firmware '{}'\n  MDTS {} ({}), MQES {}, SQES 0x{:02x} CQES 0x{:02x}, MAXCMD {}, NN {}, doorbell stride {}\n",
                        h.bdf, id.model, id.serial, id.firmware, id.mdts,
                        id.mdts_bytes.map(|b| format!("{} KiB per command", b / 1024)).unwrap_or_else(|| "no limit".into()),
                        h.cap.mqes, id.sqes, id.cqes, id.maxcmd, id.nn, 4u32 << h.cap.dstrd
                    );
                }
                t
            });
            if let Some(e) = &h.error {
                eprintln!("aether-part handshake: {e}");
            }
            if h.ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Cmd::Bench { bdf, pattern, qd, bs, seconds, ios, offset, span, verify, verify_crc, nsid, seed, unchecked_span, prefetch, think_us } => {
            let out = Out { json, command: "bench" };
            let b = match plan::parse_bdfs(r, &[bdf]) {
                Ok(b) => b[0],
                Err(e) => return out.fail(2, &e.0),
            };
            let opts = (|| -> Result<bench::Opts, String> {
                Ok(bench::Opts {
                    pattern: pattern.parse()?,
                    qd,
                    bs: parse::parse_bytes(&bs)?,
                    seconds,
                    ios,
                    offset: parse::parse_bytes(&offset)?,
                    span: span.as_deref().map(parse::parse_bytes).transpose()?,
                    verify: match (verify, verify_crc) {
                        (Some(f), _) => bench::Verify::File(f),
                        (None, true) => bench::Verify::Crc,
                        (None, false) => bench::Verify::None,
                    },
                    nsid,
                    seed,
                    timeout: ctx.timeout,
                    unchecked: unchecked_span,
                    prefetch,
                    think: Duration::from_micros(think_us),
                })
            })();
            let opts = match opts {
                Ok(o) => o,
                Err(e) => return out.fail(2, &e),
            };
            if let Some(c) = usage(&out, opts.validate()) {
                return c;
            }
            if let Some(c) = usage(&out, plan::require_root(ctx.euid, "bench")) {
                return c;
            }
            let rep = bench::bench(r, &b, &opts);
            out.emit(rep.ok, &rep, || bench::text(&rep));
            if let Some(e) = &rep.io_error {
                eprintln!("aether-part bench: {}", e.message);
            }
            if let Some(m) = &rep.first_mismatch {
                eprintln!("aether-part bench: verify failed on {} of {} reads; first: {m}", rep.mismatches, rep.verified_ios);
            }
            if let Some(e) = &rep.error {
                eprintln!("aether-part bench: {e}");
            }
            if rep.interrupted {
                eprintln!("aether-part bench: interrupted; queues deleted, DMA unmapped");
                ExitCode::from(130)
            } else if rep.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Cmd::Pattern { size, offset } => {
            let out = Out { json: false, command: "pattern" };
            let (size, offset) = match (parse::parse_bytes(&size), parse::parse_bytes(&offset)) {
                (Ok(s), Ok(o)) if s % 4096 == 0 && o % 4096 == 0 && s > 0 => (s, o),
                (Err(e), _) | (_, Err(e)) => return out.fail(2, &e),
                _ => return out.fail(2, "SIZE and --offset must be multiples of 4096 bytes, SIZE at least 4096"),
            };
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                return out.fail(2, "refusing to write binary data to a terminal; redirect stdout");
            }
            let mut w = std::io::BufWriter::new(std::io::stdout().lock());
            let mut buf = vec![0u8; 1 << 20];
            let mut done = 0;
            while done < size {
                let n = (size - done).min(buf.len() as u64) as usize;
                nvme::fill_pattern(&mut buf[..n], offset + done);
                if let Err(e) = std::io::Write::write_all(&mut w, &buf[..n]) {
                    return out.fail(1, &format!("write: {e}"));
                }
                done += n as u64;
            }
            if let Err(e) = std::io::Write::flush(&mut w) {
                return out.fail(1, &format!("write: {e}"));
            }
            ExitCode::SUCCESS
        }
        Cmd::Restore { bdfs } => {
            let out = Out { json, command: "restore" };
            let b = if bdfs.is_empty() {
                vec![]
            } else {
                // Devices must still be valid addresses; they may be absent only if recorded.
                let mut v = Vec::new();
                for s in &bdfs {
                    match s.parse::<aether_part::parse::Bdf>() {
                        Ok(x) => v.push(x),
                        Err(e) => return out.fail(2, &e),
                    }
                }
                v
            };
            if let Some(c) = usage(&out, plan::require_root(ctx.euid, "restore")) {
                return c;
            }
            let st = match State::load(r) {
                Ok(s) => s,
                Err(e) => return out.fail(1, &e),
            };
            let recs = match bind::restore_targets(r, &st, &b) {
                Ok(x) => x,
                Err(e) => return out.fail(2, &e.0),
            };
            let rep = bind::restore(ctx, &recs);
            out.emit(rep.ok, &rep, || {
                let mut t = String::new();
                if rep.devices.is_empty() {
                    t += "nothing recorded to restore\n";
                }
                for d in &rep.devices {
                    t += &format!(
                        "{}: {} {}{}\n",
                        d.bdf,
                        d.driver.as_deref().unwrap_or("no driver"),
                        if d.disks.is_empty() { String::new() } else { format!("(block: {}) ", d.disks.join(", ")) },
                        d.error.as_deref().map(|e| format!("FAILED: {e}")).unwrap_or_else(|| "restored".into())
                    );
                }
                t
            });
            for d in rep.devices.iter().filter(|d| !d.ok) {
                eprintln!("aether-part restore: {}: {}", d.bdf, d.error.as_deref().unwrap_or("failed"));
            }
            if rep.ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Cmd::Cpus { cmd: CpusCmd::Isolate { cpus: list } } => {
            let out = Out { json, command: "cpus isolate" };
            let set = match cpus::validate_cpus(r, &list) {
                Ok(s) => s,
                Err(e) => return out.fail(2, &e.0),
            };
            if let Some(c) = usage(&out, plan::require_root(ctx.euid, "cpus isolate")) {
                return c;
            }
            let rep = match cpus::isolate(ctx, &set) {
                Ok(r) => r,
                Err(e) => return out.fail(2, &e.0),
            };
            out.emit(rep.ok, &rep, || {
                let mut t = format!("isolated CPUs {} in {} (partition: {}); housekeeping CPUs {}\n", rep.cpus, rep.cgroup, rep.partition, rep.housekeeping);
                for m in &rep.irqs_moved {
                    t += &format!("  IRQ {}: {} -> {}\n", m.irq, m.from, m.to);
                }
                for s in &rep.irqs_not_moved {
                    t += &format!("  IRQ {} stays on {}: {}\n", s.irq, s.affinity, s.reason);
                }
                t
            });
            for w in &rep.warnings {
                eprintln!("warning: {w}");
            }
            if let Some(e) = &rep.error {
                eprintln!("aether-part cpus isolate: {e}");
            }
            if rep.ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Cmd::Cpus { cmd: CpusCmd::Release } => {
            let out = Out { json, command: "cpus release" };
            if let Some(c) = usage(&out, plan::require_root(ctx.euid, "cpus release")) {
                return c;
            }
            let rep = match cpus::release(ctx) {
                Ok(r) => r,
                Err(e) => return out.fail(2, &e.0),
            };
            out.emit(rep.ok, &rep, || {
                let mut t = match &rep.released {
                    Some(c) => format!("released CPUs {c}\n"),
                    None => "nothing recorded; cleaned up\n".into(),
                };
                for m in &rep.irqs_restored {
                    t += &format!("  IRQ {}: {} -> {}\n", m.irq, m.from, m.to);
                }
                t
            });
            for w in &rep.warnings {
                eprintln!("warning: {w}");
            }
            if let Some(e) = &rep.error {
                eprintln!("aether-part cpus release: {e}");
            }
            if rep.ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Cmd::Hugepages { n, node, size } => {
            let out = Out { json, command: "hugepages" };
            if let Err(e) = cpus::hugepages_target(r, node, size.as_deref()) {
                return out.fail(2, &e.0);
            }
            if let Some(c) = usage(&out, plan::require_root(ctx.euid, "hugepages")) {
                return c;
            }
            let rep = match cpus::hugepages(ctx, n, node, size.as_deref()) {
                Ok(r) => r,
                Err(e) => return out.fail(2, &e.0),
            };
            out.emit(rep.ok, &rep, || {
                format!(
                    "{} x {}kB hugepages{}: requested {}, reserved {} (was {}){}\n",
                    rep.reserved, rep.size_kb,
                    rep.node.map(|k| format!(" on node {k}")).unwrap_or_default(),
                    rep.requested, rep.reserved, rep.previous,
                    if rep.shortfall > 0 { format!(", SHORTFALL {}", rep.shortfall) } else { String::new() }
                )
            });
            for w in &rep.warnings {
                eprintln!("warning: {w}");
            }
            if rep.shortfall > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS }
        }
    }
}

fn text_plan(p: &plan::Plan) -> String {
    let mut t = String::new();
    for g in &p.refusals {
        t += &format!("REFUSED: {}\n", g.message);
    }
    for d in &p.devices {
        t += &format!(
            "{} {} {} driver={} group={} node={}\n",
            d.bdf, d.vendor_device, d.class,
            d.current_driver.as_deref().unwrap_or("-"),
            d.iommu_group.map(|g| g.to_string()).unwrap_or("-".into()),
            d.numa_node.map(|n| n.to_string()).unwrap_or("-".into())
        );
        for disk in &d.disks {
            t += &format!("  block {} ({} MiB)\n", disk.name, disk.size_bytes >> 20);
        }
        if d.refusals.is_empty() {
            for a in &d.actions {
                t += &format!("  would: {a}\n");
            }
        }
        for w in &d.warnings {
            t += &format!("  warning: {w}\n");
        }
        for r in &d.refusals {
            t += &format!("  REFUSED [{}]: {}\n", r.code, r.message);
        }
    }
    t += if p.ok { "plan: ok\n" } else { "plan: refused\n" };
    t
}

fn text_status(s: &aether_part::Status) -> String {
    let mut t = String::new();
    t += &format!(
        "IOMMU: {}   vfio-pci driver: {}\n",
        if s.iommu { "active" } else { "none" },
        if s.vfio_pci_driver { "present" } else { "absent" }
    );
    if let Some(h) = &s.iommu_hint {
        t += &format!("  hint: {h}\n");
    }
    t += "BDF           VEN:DEV    DRIVER       GROUP NODE  CLASS\n";
    for d in &s.devices {
        let p = &d.pci;
        t += &format!(
            "{}  {}  {:<12} {:<5} {:<5} {}\n",
            p.bdf, p.vendor_device, p.driver.as_deref().unwrap_or("-"),
            p.iommu_group.map(|g| g.to_string()).unwrap_or("-".into()),
            p.numa_node.map(|n| n.to_string()).unwrap_or("-".into()),
            p.class
        );
        if p.group_members.len() > 1 {
            let m: Vec<String> = p.group_members.iter().map(|m| format!("{}({})", m.bdf, m.driver.as_deref().unwrap_or("-"))).collect();
            t += &format!("    group members: {}\n", m.join(" "));
        }
        for k in &d.disks {
            t += &format!(
                "    block {} {} MiB{}{}\n", k.name, k.size_bytes >> 20,
                if k.partitions.is_empty() { String::new() } else { format!(" partitions {}", k.partitions.join(",")) },
                k.signature.as_deref().map(|s| format!(" [{s}]")).unwrap_or_default()
            );
        }
        for u in &d.in_use {
            t += &format!("    in use: {u}\n");
        }
        if let Some(p) = &d.recorded_previous_driver {
            t += &format!("    bound by aether-part; previous driver {p}\n");
        }
    }
    t += "hugepages:\n";
    for h in &s.hugepages {
        t += &format!(
            "  {}kB {}: total {} free {}\n", h.size_kb,
            h.node.map(|n| format!("node{n}")).unwrap_or_else(|| "all".into()), h.total, h.free
        );
    }
    let c = &s.cpu_isolation;
    t += &format!(
        "CPUs online {}; isolcpus='{}' nohz_full='{}' rcu_nocbs='{}' (sysfs isolated='{}' nohz_full='{}')\n",
        s.cpus_online, c.isolcpus, c.nohz_full, c.rcu_nocbs,
        c.sysfs_isolated.as_deref().unwrap_or("?"), c.sysfs_nohz_full.as_deref().unwrap_or("?")
    );
    for p in &c.partitions {
        t += &format!("  cpuset partition {} cpus {} ({})\n", p.cgroup, p.cpus, p.partition);
    }
    t += &format!("state file: {}\n", s.state_file);
    t
}
