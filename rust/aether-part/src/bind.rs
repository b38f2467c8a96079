//! bind / restore with rollback, and the state file.

use crate::parse::Bdf;
use crate::plan::{self, Plan, UsageError, VFIO_DRIVER};
use crate::sys::{self, Ops, Roots};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DevRecord {
    pub bdf: String,
    pub vendor_device: String,
    pub previous_driver: Option<String>,
    pub previous_override: Option<String>,
    /// Block disks the device had when it was bound; restore waits for them.
    pub disks: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct IrqRecord {
    pub irq: u32,
    pub previous: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuRecord {
    pub cpus: String,
    pub cgroup: String,
    pub enabled_cpuset_controller: bool,
    pub moved_irqs: Vec<IrqRecord>,
    pub previous_default_affinity: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub version: u32,
    pub devices: Vec<DevRecord>,
    pub cpus: Option<CpuRecord>,
}

impl State {
    pub fn load(r: &Roots) -> Result<State, String> {
        let p = r.state_file();
        match fs::read_to_string(&p) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| format!("state file {} is corrupt: {e}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State { version: 1, ..Default::default() }),
            Err(e) => Err(format!("cannot read state file {}: {e}", p.display())),
        }
    }

    /// Write atomically (temp file + rename). The state file is ours, not sysfs, so plain fs.
    pub fn save(&self, r: &Roots) -> Result<(), String> {
        let p = r.state_file();
        fs::create_dir_all(&r.state_dir).map_err(|e| format!("cannot create {}: {e}", r.state_dir.display()))?;
        let tmp = p.with_extension("json.tmp");
        let mut s = serde_json::to_string_pretty(self).unwrap();
        s.push('\n');
        fs::write(&tmp, s).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        fs::rename(&tmp, &p).map_err(|e| format!("cannot write {}: {e}", p.display()))
    }

    pub fn device(&self, bdf: &str) -> Option<&DevRecord> {
        self.devices.iter().find(|d| d.bdf == bdf)
    }
}

pub struct Ctx<'a> {
    pub roots: Roots,
    pub euid: u32,
    pub ops: &'a dyn Ops,
    /// How long to wait for a driver or block device to appear.
    pub timeout: Duration,
    /// Real system (may run modprobe).
    pub real: bool,
}

#[derive(Debug, Serialize)]
pub struct DevResult {
    pub bdf: String,
    pub ok: bool,
    pub previous_driver: Option<String>,
    pub driver: Option<String>,
    pub steps: Vec<String>,
    pub error: Option<String>,
    pub disks: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct BindReport {
    pub ok: bool,
    pub plan: Plan,
    pub devices: Vec<DevResult>,
    pub error: Option<String>,
    pub rolled_back: bool,
    pub rollback: Vec<String>,
    pub state_file: String,
}

fn wait_driver(ctx: &Ctx, b: &Bdf, want: Option<&str>) -> Option<String> {
    let start = Instant::now();
    loop {
        let d = sys::driver_of(&ctx.roots, b);
        if d.as_deref() == want || start.elapsed() >= ctx.timeout {
            return d;
        }
        ctx.ops.sleep(Duration::from_millis(50));
    }
}

fn w(ctx: &Ctx, path: &Path, data: &str, steps: &mut Vec<String>) -> Result<(), String> {
    ctx.ops
        .write(path, data)
        .map_err(|e| format!("writing '{}' to {} failed: {e}", data.trim(), path.display()))?;
    steps.push(format!("wrote '{}' to {}", data.trim(), path.display()));
    Ok(())
}

/// Put a device back on `prev` (None: leave it unbound) and restore its driver_override.
fn return_device(ctx: &Ctx, b: &Bdf, prev: Option<&str>, prev_override: Option<&str>, steps: &mut Vec<String>) -> Result<Option<String>, String> {
    let r = &ctx.roots;
    let mut errs = Vec::new();
    let cur = sys::driver_of(r, b);
    if let Some(d) = cur.filter(|c| Some(c.as_str()) != prev) {
        if let Err(e) = w(ctx, &r.pci_driver(&d).join("unbind"), &b.to_string(), steps) {
            errs.push(e);
        }
    }
    // An empty write ("\n") clears driver_override.
    let ov = format!("{}\n", prev_override.unwrap_or(""));
    if let Err(e) = w(ctx, &r.pci_dev(b).join("driver_override"), &ov, steps) {
        errs.push(e);
    }
    if let Some(p) = prev {
        if sys::driver_of(r, b).as_deref() != Some(p) {
            if let Err(e) = w(ctx, &r.pci_driver(p).join("bind"), &b.to_string(), steps) {
                steps.push(format!("{e}; falling back to drivers_probe"));
                if let Err(e2) = w(ctx, &r.sys.join("bus/pci/drivers_probe"), &b.to_string(), steps) {
                    errs.push(e2);
                }
            }
        }
    }
    let now = wait_driver(ctx, b, prev);
    if now.as_deref() != prev {
        errs.push(format!(
            "{b} is on {} instead of {}",
            now.as_deref().unwrap_or("no driver"),
            prev.unwrap_or("no driver")
        ));
    }
    if errs.is_empty() { Ok(now) } else { Err(errs.join("; ")) }
}

fn bind_one(ctx: &Ctx, b: &Bdf, prev: Option<&str>, steps: &mut Vec<String>) -> Result<(), String> {
    let r = &ctx.roots;
    w(ctx, &r.pci_dev(b).join("driver_override"), VFIO_DRIVER, steps)?;
    if let Some(d) = prev {
        w(ctx, &r.pci_driver(d).join("unbind"), &b.to_string(), steps)?;
    }
    w(ctx, &r.sys.join("bus/pci/drivers_probe"), &b.to_string(), steps)?;
    let now = wait_driver(ctx, b, Some(VFIO_DRIVER));
    if now.as_deref() != Some(VFIO_DRIVER) {
        return Err(format!(
            "{b} did not bind to vfio-pci (driver now: {})",
            now.as_deref().unwrap_or("none")
        ));
    }
    Ok(())
}

pub fn ensure_vfio_driver(ctx: &Ctx) -> Result<(), String> {
    let p = ctx.roots.pci_driver(VFIO_DRIVER);
    if !p.exists() && ctx.real {
        let _ = std::process::Command::new("modprobe").arg("vfio-pci").status();
    }
    if !p.exists() {
        return Err(format!(
            "the vfio-pci driver is not available ({} is missing): build CONFIG_VFIO_PCI or modprobe vfio-pci",
            p.display()
        ));
    }
    Ok(())
}

/// Bind devices to vfio-pci. Refusals come back in the report with nothing changed.
pub fn bind(ctx: &Ctx, bdfs: &[Bdf], force_data: bool) -> BindReport {
    let r = &ctx.roots;
    let plan = plan::plan(r, bdfs, force_data);
    let mut rep = BindReport {
        ok: false,
        plan,
        devices: Vec::new(),
        error: None,
        rolled_back: false,
        rollback: Vec::new(),
        state_file: r.state_file().display().to_string(),
    };
    if !rep.plan.ok {
        rep.error = Some(format!("refused: {}", rep.plan.all_refusals().join("; ")));
        return rep;
    }
    let todo: Vec<(Bdf, Option<String>, Option<String>, Vec<String>, String)> = rep
        .plan
        .devices
        .iter()
        .filter(|d| !d.already_bound)
        .map(|d| {
            let b: Bdf = d.bdf.parse().unwrap();
            let ov = sys::read_trim(&r.pci_dev(&b).join("driver_override")).filter(|s| s != "(null)" && !s.is_empty());
            (b, d.current_driver.clone(), ov, d.disks.iter().map(|x| x.name.clone()).collect(), d.vendor_device.clone())
        })
        .collect();
    for d in rep.plan.devices.iter().filter(|d| d.already_bound) {
        rep.devices.push(DevResult {
            bdf: d.bdf.clone(),
            ok: true,
            previous_driver: None,
            driver: Some(VFIO_DRIVER.into()),
            steps: vec!["already bound to vfio-pci".into()],
            error: None,
            disks: vec![],
        });
    }
    if todo.is_empty() {
        rep.ok = true;
        return rep;
    }
    if let Err(e) = ensure_vfio_driver(ctx) {
        rep.error = Some(e);
        return rep;
    }
    // Record first, so that even a crash halfway leaves something for restore.
    let mut state = match State::load(r) {
        Ok(s) => s,
        Err(e) => {
            rep.error = Some(e);
            return rep;
        }
    };
    state.version = 1;
    for (b, prev, ov, disks, vd) in &todo {
        let bs = b.to_string();
        state.devices.retain(|d| d.bdf != bs);
        state.devices.push(DevRecord {
            bdf: bs,
            vendor_device: vd.clone(),
            previous_driver: prev.clone(),
            previous_override: ov.clone(),
            disks: disks.clone(),
        });
    }
    if let Err(e) = state.save(r) {
        rep.error = Some(e);
        return rep;
    }

    let mut done: Vec<usize> = Vec::new();
    let mut failure = None;
    for (i, (b, prev, _, disks, _)) in todo.iter().enumerate() {
        let mut steps = Vec::new();
        let res = bind_one(ctx, b, prev.as_deref(), &mut steps);
        let ok = res.is_ok();
        rep.devices.push(DevResult {
            bdf: b.to_string(),
            ok,
            previous_driver: prev.clone(),
            driver: sys::driver_of(r, b),
            steps,
            error: res.as_ref().err().cloned(),
            disks: disks.clone(),
        });
        done.push(i);
        if let Err(e) = res {
            failure = Some(format!("{b}: {e}"));
            break;
        }
    }
    if let Some(f) = failure {
        // Roll back everything we touched, newest first (including the failed one).
        rep.rolled_back = true;
        let mut all_back = true;
        for &i in done.iter().rev() {
            let (b, prev, ov, _, _) = &todo[i];
            let mut steps = Vec::new();
            match return_device(ctx, b, prev.as_deref(), ov.as_deref(), &mut steps) {
                Ok(_) => rep.rollback.push(format!("{b}: returned to {}", prev.as_deref().unwrap_or("no driver"))),
                Err(e) => {
                    all_back = false;
                    rep.rollback.push(format!("{b}: ROLLBACK FAILED: {e}"));
                }
            }
            let _ = steps;
        }
        if all_back {
            let bs: Vec<String> = todo.iter().map(|t| t.0.to_string()).collect();
            state.devices.retain(|d| !bs.contains(&d.bdf));
            let _ = state.save(r);
        }
        for d in rep.devices.iter_mut() {
            d.ok = false;
            d.driver = d.bdf.parse::<Bdf>().ok().and_then(|b| sys::driver_of(r, &b));
        }
        rep.error = Some(format!(
            "bind failed, {}: {f}",
            if all_back { "all devices were returned to their drivers" } else { "rollback was incomplete (records kept for restore)" }
        ));
        return rep;
    }
    rep.ok = true;
    rep
}

#[derive(Debug, Serialize)]
pub struct RestoreReport {
    pub ok: bool,
    pub devices: Vec<DevResult>,
    pub state_file: String,
}

/// Check the requested devices are recorded. Nothing changes on error.
pub fn restore_targets(r: &Roots, state: &State, bdfs: &[Bdf]) -> Result<Vec<DevRecord>, UsageError> {
    if bdfs.is_empty() {
        return Ok(state.devices.clone());
    }
    let mut out = Vec::new();
    for b in bdfs {
        match state.device(&b.to_string()) {
            Some(d) => out.push(d.clone()),
            None => {
                return Err(UsageError(format!(
                    "{b} is not recorded in {} (it was not bound by aether-part)",
                    r.state_file().display()
                )))
            }
        }
    }
    Ok(out)
}

fn wait_disks(ctx: &Ctx, b: &Bdf, want: &[String]) -> Result<Vec<String>, String> {
    let start = Instant::now();
    loop {
        let have = sys::disks_of(&ctx.roots, b);
        let nodes_ok = have.iter().all(|d| ctx.roots.dev.join(d).exists());
        if have.len() >= want.len() && nodes_ok {
            return Ok(have);
        }
        if start.elapsed() >= ctx.timeout {
            return Err(format!(
                "block device(s) did not reappear within {:?}: expected {}, found {}",
                ctx.timeout,
                want.join(", "),
                if have.is_empty() { "none".to_string() } else { have.join(", ") }
            ));
        }
        ctx.ops.sleep(Duration::from_millis(100));
    }
}

pub fn restore(ctx: &Ctx, recs: &[DevRecord]) -> RestoreReport {
    let r = &ctx.roots;
    let mut devices = Vec::new();
    for rec in recs {
        let b: Bdf = match rec.bdf.parse() {
            Ok(b) => b,
            Err(e) => {
                devices.push(DevResult { bdf: rec.bdf.clone(), ok: false, previous_driver: None, driver: None, steps: vec![], error: Some(e), disks: vec![] });
                continue;
            }
        };
        let mut steps = Vec::new();
        let mut res = if sys::pci_exists(r, &b) {
            return_device(ctx, &b, rec.previous_driver.as_deref(), rec.previous_override.as_deref(), &mut steps).map(|_| ())
        } else {
            Err(format!("{b} is no longer present in sysfs"))
        };
        let mut disks = Vec::new();
        if res.is_ok() && !rec.disks.is_empty() {
            match wait_disks(ctx, &b, &rec.disks) {
                Ok(d) => {
                    steps.push(format!("block device(s) back: {}", d.join(", ")));
                    disks = d;
                }
                Err(e) => res = Err(e),
            }
        }
        devices.push(DevResult {
            bdf: rec.bdf.clone(),
            ok: res.is_ok(),
            previous_driver: rec.previous_driver.clone(),
            driver: sys::driver_of(r, &b),
            steps,
            error: res.err(),
            disks,
        });
    }
    // Drop records of devices that are back.
    if let Ok(mut st) = State::load(r) {
        let back: Vec<&String> = devices.iter().filter(|d| d.ok).map(|d| &d.bdf).collect();
        st.devices.retain(|d| !back.contains(&&d.bdf));
        let _ = st.save(r);
    }
    RestoreReport { ok: devices.iter().all(|d| d.ok), devices, state_file: r.state_file().display().to_string() }
}
