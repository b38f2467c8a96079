//! cpus isolate / release (cgroup v2 isolated partition, IRQ affinity) and hugepages.

use crate::bind::{CpuRecord, Ctx, IrqRecord, State};
use crate::parse::{self, format_cpulist, parse_cpulist};
use crate::plan::UsageError;
use crate::sys::{self, read_trim, Roots};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

pub const CGROUP_NAME: &str = "aether-part.isolated";

/// Parse and check a CPU list against the machine. Nothing changes on error.
pub fn validate_cpus(r: &Roots, s: &str) -> Result<BTreeSet<u32>, UsageError> {
    let cpus = parse_cpulist(s).map_err(UsageError)?;
    if cpus.is_empty() {
        return Err(UsageError(format!("empty CPU list '{s}'")));
    }
    let possible = sys::cpus_possible(r);
    let online = sys::cpus_online(r);
    let max = possible.iter().next_back().copied();
    let out: Vec<u32> = cpus.iter().copied().filter(|c| !possible.contains(c)).collect();
    if !out.is_empty() {
        return Err(UsageError(format!(
            "CPU {} out of range: this machine has CPUs {}",
            format_cpulist(&out.into_iter().collect()),
            max.map(|_| format_cpulist(&possible)).unwrap_or_else(|| "(unknown)".into())
        )));
    }
    let off: BTreeSet<u32> = cpus.difference(&online).copied().collect();
    if !off.is_empty() {
        return Err(UsageError(format!(
            "CPU {} offline (online CPUs: {})",
            format_cpulist(&off),
            format_cpulist(&online)
        )));
    }
    if online.difference(&cpus).next().is_none() {
        return Err(UsageError(format!(
            "isolating every online CPU ({}) would leave none for the kernel and other tasks",
            format_cpulist(&online)
        )));
    }
    Ok(cpus)
}

#[derive(Debug, Serialize, Clone)]
pub struct IrqMove {
    pub irq: u32,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Serialize, Clone)]
pub struct IrqStuck {
    pub irq: u32,
    pub affinity: String,
    pub reason: String,
}

#[derive(Debug, Serialize, Default)]
pub struct IsolateReport {
    pub ok: bool,
    pub cpus: String,
    pub housekeeping: String,
    pub cgroup: String,
    pub partition: String,
    pub irqs_moved: Vec<IrqMove>,
    pub irqs_not_moved: Vec<IrqStuck>,
    pub warnings: Vec<String>,
    pub error: Option<String>,
}

/// Effective nohz_full / rcu_nocbs / isolcpus: sysfs where the kernel reports it, else cmdline.
#[derive(Debug, Serialize, Clone, Default)]
pub struct CpuIsolationInfo {
    pub isolcpus: String,
    pub nohz_full: String,
    pub rcu_nocbs: String,
    pub sysfs_isolated: Option<String>,
    pub sysfs_nohz_full: Option<String>,
    pub partitions: Vec<Partition>,
}

#[derive(Debug, Serialize, Clone)]
pub struct Partition {
    pub cgroup: String,
    pub cpus: String,
    pub partition: String,
}

pub fn isolation_info(r: &Roots) -> CpuIsolationInfo {
    let cmd = sys::cmdline(r);
    let sysfs_nohz = read_trim(&r.sys.join("devices/system/cpu/nohz_full"));
    let mut parts = Vec::new();
    scan_partitions(&r.cgroup, &r.cgroup, 0, &mut parts);
    CpuIsolationInfo {
        isolcpus: parse::cmdline_param(&cmd, "isolcpus").unwrap_or_default(),
        nohz_full: parse::cmdline_param(&cmd, "nohz_full").unwrap_or_default(),
        rcu_nocbs: parse::cmdline_param(&cmd, "rcu_nocbs").unwrap_or_default(),
        sysfs_isolated: read_trim(&r.sys.join("devices/system/cpu/isolated")),
        sysfs_nohz_full: sysfs_nohz,
        partitions: parts,
    }
}

fn scan_partitions(root: &PathBuf, dir: &PathBuf, depth: u32, out: &mut Vec<Partition>) {
    if depth > 3 {
        return;
    }
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut dirs: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    for d in dirs {
        if let Some(p) = read_trim(&d.join("cpuset.cpus.partition")) {
            if p != "member" {
                out.push(Partition {
                    cgroup: d.strip_prefix(root).map(|x| format!("/{}", x.display())).unwrap_or_default(),
                    cpus: read_trim(&d.join("cpuset.cpus.effective")).or_else(|| read_trim(&d.join("cpuset.cpus"))).unwrap_or_default(),
                    partition: p,
                });
            }
        }
        scan_partitions(root, &d, depth + 1, out);
    }
}

/// Warnings about boot parameters that do not cover the isolated CPUs.
pub fn boot_warnings(r: &Roots, cpus: &BTreeSet<u32>) -> Vec<String> {
    let cmd = sys::cmdline(r);
    let list = format_cpulist(cpus);
    let nohz: BTreeSet<u32> = read_trim(&r.sys.join("devices/system/cpu/nohz_full"))
        .and_then(|s| parse_cpulist(&s).ok())
        .filter(|s| !s.is_empty())
        .or_else(|| parse::cmdline_param(&cmd, "nohz_full").and_then(|v| parse_cpulist(&v).ok()))
        .unwrap_or_default();
    let mut nocb: BTreeSet<u32> =
        parse::cmdline_param(&cmd, "rcu_nocbs").and_then(|v| parse_cpulist(&v).ok()).unwrap_or_default();
    nocb.extend(nohz.iter().copied()); // nohz_full CPUs are also RCU no-callback CPUs
    let mut w = Vec::new();
    let miss: BTreeSet<u32> = cpus.difference(&nohz).copied().collect();
    if !miss.is_empty() {
        w.push(format!(
            "nohz_full does not cover CPU {}: the scheduler tick still interrupts them (boot with nohz_full={list})",
            format_cpulist(&miss)
        ));
    }
    let miss: BTreeSet<u32> = cpus.difference(&nocb).copied().collect();
    if !miss.is_empty() {
        w.push(format!(
            "rcu_nocbs does not cover CPU {}: RCU callbacks still run on them (boot with rcu_nocbs={list})",
            format_cpulist(&miss)
        ));
    }
    w
}

fn irq_numbers(r: &Roots) -> Vec<u32> {
    let mut v: Vec<u32> = fs::read_dir(r.proc_.join("irq"))
        .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn cgroup_dir(r: &Roots) -> PathBuf {
    r.cgroup.join(CGROUP_NAME)
}

fn check_cgroup(r: &Roots) -> Result<(), String> {
    let c = read_trim(&r.cgroup.join("cgroup.controllers")).ok_or_else(|| {
        format!(
            "cgroup v2 is not mounted at {} (mount -t cgroup2 none {})",
            r.cgroup.display(),
            r.cgroup.display()
        )
    })?;
    if !c.split_whitespace().any(|x| x == "cpuset") {
        return Err(format!(
            "the cpuset controller is not available in cgroup v2 at {} (needs CONFIG_CPUSETS, and it must \
             not be bound to a cgroup v1 hierarchy)",
            r.cgroup.display()
        ));
    }
    Ok(())
}

pub fn isolate(ctx: &Ctx, cpus: &BTreeSet<u32>) -> Result<IsolateReport, UsageError> {
    let r = &ctx.roots;
    let mut state = State::load(r).map_err(UsageError)?;
    if let Some(c) = &state.cpus {
        return Err(UsageError(format!(
            "CPUs {} are already isolated in {}; run 'aether-part cpus release' first",
            c.cpus, c.cgroup
        )));
    }
    let dir = cgroup_dir(r);
    if dir.exists() {
        return Err(UsageError(format!(
            "{} already exists (left over?); run 'aether-part cpus release' to remove it",
            dir.display()
        )));
    }
    check_cgroup(r).map_err(UsageError)?;
    let online = sys::cpus_online(r);
    let house: BTreeSet<u32> = online.difference(cpus).copied().collect();
    let mut rep = IsolateReport {
        cpus: format_cpulist(cpus),
        housekeeping: format_cpulist(&house),
        cgroup: dir.display().to_string(),
        ..Default::default()
    };
    let mut rec = CpuRecord { cpus: rep.cpus.clone(), cgroup: rep.cgroup.clone(), ..Default::default() };

    // 1. cgroup v2 isolated partition.
    let sub = r.cgroup.join("cgroup.subtree_control");
    let has = read_trim(&sub).unwrap_or_default().split_whitespace().any(|x| x == "cpuset");
    let undo_cg = |rec: &CpuRecord| {
        let _ = ctx.ops.write(&dir.join("cpuset.cpus.partition"), "member");
        let _ = ctx.ops.remove_dir(&dir);
        if rec.enabled_cpuset_controller {
            let _ = ctx.ops.write(&sub, "-cpuset");
        }
    };
    if !has {
        if let Err(e) = ctx.ops.write(&sub, "+cpuset") {
            rep.error = Some(format!("enabling cpuset in {} failed: {e}", sub.display()));
            return Ok(rep);
        }
        rec.enabled_cpuset_controller = true;
    }
    if let Err(e) = ctx.ops.create_dir(&dir) {
        undo_cg(&rec);
        rep.error = Some(format!("creating {} failed: {e}", dir.display()));
        return Ok(rep);
    }
    let list = rep.cpus.clone();
    let steps: [(&str, &str); 2] = [("cpuset.cpus", &list), ("cpuset.cpus.partition", "isolated")];
    for (f, v) in steps {
        if let Err(e) = ctx.ops.write(&dir.join(f), v) {
            undo_cg(&rec);
            rep.error = Some(format!("writing '{v}' to {} failed: {e}", dir.join(f).display()));
            return Ok(rep);
        }
    }
    rep.partition = read_trim(&dir.join("cpuset.cpus.partition")).unwrap_or_default();
    if rep.partition != "isolated" {
        undo_cg(&rec);
        rep.error = Some(format!("the kernel did not accept the isolated partition: '{}'", rep.partition));
        return Ok(rep);
    }

    // 2. IRQs off the isolated CPUs.
    for irq in irq_numbers(r) {
        let p = r.proc_.join(format!("irq/{irq}/smp_affinity_list"));
        let Some(cur) = read_trim(&p) else { continue };
        let Ok(set) = parse_cpulist(&cur) else { continue };
        if set.is_disjoint(cpus) {
            continue;
        }
        let mut new: BTreeSet<u32> = set.difference(cpus).copied().collect();
        if new.is_empty() {
            new = house.clone();
        }
        let to = format_cpulist(&new);
        match ctx.ops.write(&p, &to) {
            Ok(()) => {
                rec.moved_irqs.push(IrqRecord { irq, previous: cur.clone() });
                rep.irqs_moved.push(IrqMove { irq, from: cur, to });
            }
            Err(e) => {
                let reason = if e.raw_os_error() == Some(5) {
                    format!("kernel-managed IRQ, affinity is fixed by the kernel ({e})")
                } else {
                    format!("not movable ({e})")
                };
                rep.irqs_not_moved.push(IrqStuck { irq, affinity: cur, reason });
            }
        }
    }
    let dp = r.proc_.join("irq/default_smp_affinity");
    if let Some(cur) = read_trim(&dp) {
        if let Ok(set) = parse::parse_cpumask(&cur) {
            if !set.is_disjoint(cpus) {
                let mut new: BTreeSet<u32> = set.difference(cpus).copied().collect();
                if new.is_empty() {
                    new = house.clone();
                }
                match ctx.ops.write(&dp, &parse::format_cpumask(&new)) {
                    Ok(()) => rec.previous_default_affinity = Some(cur),
                    Err(e) => rep.warnings.push(format!("could not change {}: {e}", dp.display())),
                }
            }
        }
    }
    if !rep.irqs_not_moved.is_empty() {
        rep.warnings.push(format!(
            "{} IRQ(s) still target the isolated CPUs and cannot be moved (kernel-managed, e.g. NVMe queue IRQs)",
            rep.irqs_not_moved.len()
        ));
    }

    // 3. Boot parameters.
    rep.warnings.extend(boot_warnings(r, cpus));
    state.cpus = Some(rec);
    if let Err(e) = state.save(r) {
        rep.warnings.push(format!("could not record the isolation: {e}"));
    }
    rep.ok = true;
    Ok(rep)
}

#[derive(Debug, Serialize, Default)]
pub struct ReleaseReport {
    pub ok: bool,
    pub released: Option<String>,
    pub irqs_restored: Vec<IrqMove>,
    pub tasks_moved: usize,
    pub warnings: Vec<String>,
    pub error: Option<String>,
}

pub fn release(ctx: &Ctx) -> Result<ReleaseReport, UsageError> {
    let r = &ctx.roots;
    let mut state = State::load(r).map_err(UsageError)?;
    let dir = cgroup_dir(r);
    let mut rep = ReleaseReport::default();
    let rec = state.cpus.clone();
    if rec.is_none() && !dir.exists() {
        rep.ok = true;
        rep.warnings.push("no CPU isolation is recorded; nothing to release".into());
        return Ok(rep);
    }
    if let Some(rec) = &rec {
        rep.released = Some(rec.cpus.clone());
        for m in &rec.moved_irqs {
            let p = r.proc_.join(format!("irq/{}/smp_affinity_list", m.irq));
            let cur = read_trim(&p).unwrap_or_default();
            match ctx.ops.write(&p, &m.previous) {
                Ok(()) => rep.irqs_restored.push(IrqMove { irq: m.irq, from: cur, to: m.previous.clone() }),
                Err(e) if !p.exists() => rep.warnings.push(format!("IRQ {} is gone ({e})", m.irq)),
                Err(e) => rep.warnings.push(format!("could not restore IRQ {} to {}: {e}", m.irq, m.previous)),
            }
        }
        if let Some(d) = &rec.previous_default_affinity {
            if let Err(e) = ctx.ops.write(&r.proc_.join("irq/default_smp_affinity"), d) {
                rep.warnings.push(format!("could not restore default_smp_affinity: {e}"));
            }
        }
    }
    if dir.exists() {
        // Tasks left in the partition go back to the root cgroup.
        for pid in read_trim(&dir.join("cgroup.procs")).unwrap_or_default().split_whitespace() {
            match ctx.ops.write(&r.cgroup.join("cgroup.procs"), pid) {
                Ok(()) => rep.tasks_moved += 1,
                Err(e) => rep.warnings.push(format!("could not move task {pid} out: {e}")),
            }
        }
        let _ = ctx.ops.write(&dir.join("cpuset.cpus.partition"), "member");
        if let Err(e) = ctx.ops.remove_dir(&dir) {
            rep.error = Some(format!("could not remove {}: {e}", dir.display()));
            return Ok(rep);
        }
    }
    if rec.as_ref().is_some_and(|c| c.enabled_cpuset_controller) {
        if let Err(e) = ctx.ops.write(&r.cgroup.join("cgroup.subtree_control"), "-cpuset") {
            rep.warnings.push(format!("left the cpuset controller enabled: {e}"));
        }
    }
    state.cpus = None;
    if let Err(e) = state.save(r) {
        rep.warnings.push(format!("could not update the state file: {e}"));
    }
    rep.ok = true;
    Ok(rep)
}

// ------------------------------------------------------------------ hugepages

#[derive(Debug, Serialize, Clone)]
pub struct HugeCount {
    pub node: Option<u32>,
    pub size_kb: u64,
    pub total: u64,
    pub free: u64,
}

pub fn hugepage_sizes(r: &Roots) -> Vec<u64> {
    let mut v: Vec<u64> = fs::read_dir(r.sys.join("kernel/mm/hugepages"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn numa_nodes(r: &Roots) -> Vec<u32> {
    let mut v: Vec<u32> = fs::read_dir(r.sys.join("devices/system/node"))
        .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str()?.strip_prefix("node")?.parse().ok()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn count_in(dir: PathBuf, node: Option<u32>, size_kb: u64) -> HugeCount {
    let rd = |f: &str| read_trim(&dir.join(f)).and_then(|s| s.parse().ok()).unwrap_or(0);
    HugeCount { node, size_kb, total: rd("nr_hugepages"), free: rd("free_hugepages") }
}

pub fn hugepages_status(r: &Roots) -> Vec<HugeCount> {
    let mut out = Vec::new();
    for s in hugepage_sizes(r) {
        out.push(count_in(r.sys.join(format!("kernel/mm/hugepages/hugepages-{s}kB")), None, s));
        for n in numa_nodes(r) {
            let d = r.sys.join(format!("devices/system/node/node{n}/hugepages/hugepages-{s}kB"));
            if d.exists() {
                out.push(count_in(d, Some(n), s));
            }
        }
    }
    out
}

pub fn default_hugepage_kb(r: &Roots) -> Option<u64> {
    let mi = fs::read_to_string(r.proc_.join("meminfo")).ok()?;
    mi.lines()
        .find_map(|l| l.strip_prefix("Hugepagesize:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[derive(Debug, Serialize)]
pub struct HugeReport {
    pub ok: bool,
    pub size_kb: u64,
    pub node: Option<u32>,
    pub requested: u64,
    pub previous: u64,
    pub reserved: u64,
    pub shortfall: u64,
    pub counts: Vec<HugeCount>,
    pub warnings: Vec<String>,
}

/// Validate the request (no change on error) and return the nr_hugepages path.
pub fn hugepages_target(r: &Roots, node: Option<u32>, size: Option<&str>) -> Result<(PathBuf, u64), UsageError> {
    let sizes = hugepage_sizes(r);
    if sizes.is_empty() {
        return Err(UsageError(format!(
            "this kernel has no hugetlb support ({} is missing; needs CONFIG_HUGETLBFS)",
            r.sys.join("kernel/mm/hugepages").display()
        )));
    }
    let kb = match size {
        Some(s) => parse::parse_size_kb(s).map_err(UsageError)?,
        None => default_hugepage_kb(r).filter(|k| sizes.contains(k)).unwrap_or(sizes[0]),
    };
    if !sizes.contains(&kb) {
        return Err(UsageError(format!(
            "hugepage size {kb}kB is not supported here (available: {})",
            sizes.iter().map(|s| format!("{s}kB")).collect::<Vec<_>>().join(", ")
        )));
    }
    let path = match node {
        None => r.sys.join(format!("kernel/mm/hugepages/hugepages-{kb}kB/nr_hugepages")),
        Some(n) => {
            let nodes = numa_nodes(r);
            if !nodes.contains(&n) {
                return Err(UsageError(format!(
                    "unknown NUMA node {n} (nodes: {})",
                    if nodes.is_empty() { "none listed".into() } else { nodes.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ") }
                )));
            }
            r.sys.join(format!("devices/system/node/node{n}/hugepages/hugepages-{kb}kB/nr_hugepages"))
        }
    };
    Ok((path, kb))
}

pub fn hugepages(ctx: &Ctx, n: u64, node: Option<u32>, size: Option<&str>) -> Result<HugeReport, UsageError> {
    let r = &ctx.roots;
    let (path, kb) = hugepages_target(r, node, size)?;
    let previous = read_trim(&path).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut warnings = Vec::new();
    if let Err(e) = ctx.ops.write(&path, &n.to_string()) {
        warnings.push(format!("writing {n} to {} failed: {e}", path.display()));
    }
    let reserved: u64 = read_trim(&path).and_then(|s| s.parse().ok()).unwrap_or(0);
    let shortfall = n.saturating_sub(reserved);
    if shortfall > 0 {
        warnings.push(format!(
            "shortfall: asked for {n} x {kb}kB pages{}, the kernel reserved {reserved} ({shortfall} short); \
             memory is too fragmented or too small — reserve at boot (hugepages={n}) or free memory",
            node.map(|k| format!(" on node {k}")).unwrap_or_default()
        ));
    }
    Ok(HugeReport {
        ok: shortfall == 0,
        size_kb: kb,
        node,
        requested: n,
        previous,
        reserved,
        shortfall,
        counts: hugepages_status(r),
        warnings,
    })
}
