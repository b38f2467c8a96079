//! Model-level tests: replay semantics, metrics definitions, CLI.

use aether_core::Outcome;
use aether_sim::policy::{Policy, Prefetch, ReadCtx};
use aether_sim::{parse_csv, run, Config, Req};
use std::process::Command;

/// Prefetches a fixed list once, on the first read.
struct Scripted(Vec<Prefetch>, Vec<(u32, u64, Outcome)>);

impl Policy for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn on_read(&mut self, _ctx: &ReadCtx<'_>, out: &mut Vec<Prefetch>) {
        out.append(&mut self.0);
    }
    fn on_feedback(&mut self, tag: u32, block: u64, outcome: Outcome) {
        self.1.push((tag, block, outcome));
    }
}

fn reqs(csv: &str) -> Vec<Req> {
    parse_csv(csv).unwrap()
}

#[test]
fn metrics_follow_the_definitions() {
    // Read block 0, prefetch blocks 1..=4; read 1 and 2 later; write 3; never touch 4.
    let t = reqs("ts_us,op,lba,sectors\n0,R,0,8\n1000,R,8,8\n1001,R,16,8\n1002,W,24,8\n");
    let mut p = Scripted(vec![Prefetch { block: 1, nblocks: 4, tag: 7, marker: None, chance_last: false }], vec![]);
    let m = run("t", &t, &mut p, &Config::default());
    assert_eq!(m.demand_blocks, 3);
    assert_eq!(m.prefetched_blocks, 4);
    assert_eq!(m.used_blocks, 2);
    assert!((m.accuracy - 0.5).abs() < 1e-9);
    assert!((m.coverage - 2.0 / 3.0).abs() < 1e-9);
    assert!((m.waste - 2.0 / 3.0).abs() < 1e-9, "2 unused prefetched blocks per 3 demand blocks");
    assert!((m.timeliness - 1.0).abs() < 1e-9, "read 1 ms later: data had arrived");
    assert_eq!(m.demand_reads, 1);
    // feedback: two timely uses, one invalidation by the write
    assert_eq!(p.1.iter().filter(|f| f.2 == Outcome::Timely).count(), 2);
    assert!(p.1.contains(&(7, 3, Outcome::Wasted)));
}

#[test]
fn late_hits_are_not_timely() {
    // Second read 10 us after the first: the prefetch (100 us latency) is in flight.
    let t = reqs("ts_us,op,lba,sectors\n0,R,0,8\n10,R,8,8\n");
    let mut p = Scripted(vec![Prefetch { block: 1, nblocks: 1, tag: 1, marker: None, chance_last: false }], vec![]);
    let m = run("t", &t, &mut p, &Config::default());
    assert_eq!(m.used_blocks, 1);
    assert_eq!(m.timeliness, 0.0);
    assert_eq!(p.1, vec![(1, 1, Outcome::Late)]);
    assert_eq!(m.hit_ratio, 0.0, "an in-flight block is not resident");
}

#[test]
fn eviction_reports_waste() {
    let t = reqs("ts_us,op,lba,sectors\n0,R,0,8\n1000,R,800,8\n");
    let mut p = Scripted(vec![Prefetch { block: 10, nblocks: 8, tag: 3, marker: None, chance_last: false }], vec![]);
    let cfg = Config { cache_blocks: 4, ..Config::default() };
    let m = run("t", &t, &mut p, &cfg);
    assert_eq!(m.used_blocks, 0);
    assert!(p.1.iter().filter(|f| f.2 == Outcome::Wasted).count() >= 4);
}

#[test]
fn closed_loop_and_zero_length() {
    let t = reqs("ts_us,op,lba,sectors\n,R,0,8\n,R,8,0\n,F,0,0\n,D,0,8\n,R,18446744073709551600,8\n");
    let mut p = Scripted(vec![], vec![]);
    let m = run("t", &t, &mut p, &Config::default());
    assert_eq!(m.read_requests, 2, "zero-length reads are skipped");
    assert_eq!(m.demand_reads, 2);
    assert!(m.elapsed_ms > 0.2, "closed loop serialises the reads: {}", m.elapsed_ms);
}

/// The results depend on the gate: a closed gate covers nothing, and a gate
/// biased open fires on more reads than the default one.
#[test]
fn goals_depend_on_the_gate() {
    use aether_sim::{run_all_with, synth};
    let cfg = Config::default();
    let mut p = aether_core::Params::default();
    p.set("epsilon", "1").unwrap();
    let seq = synth("seq", 1).unwrap();
    assert_eq!(run_all_with("seq", &seq, &["aether"], &cfg, &p)[0].coverage, 0.0);
    // epsilon 0 and a large bias: every stream with a stride prefetches.
    let mut p = aether_core::Params::default();
    p.set("epsilon", "0").unwrap();
    p.set("bias", "8").unwrap();
    let stride = synth("stride", 1).unwrap();
    let open = &run_all_with("stride", &stride, &["aether"], &cfg, &p)[0];
    let dflt = &run_all_with("stride", &stride, &["aether"], &cfg, &aether_core::Params::default())[0];
    let fired = |m: &aether_sim::Metrics| m.engine.map(|e| e.gate_fired).unwrap_or(0);
    assert!(fired(open) > fired(dflt), "{open:?} vs {dflt:?}");
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aether-sim"))
}

#[test]
fn cli_synth_json_and_replay() {
    let out = bin().args(["synth", "--json", "--workload", "seq", "--policy", "aether", "--policy", "none"]).output().unwrap();
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(s.trim_start().starts_with('[') && s.trim_end().ends_with(']'));
    for k in ["\"workload\": \"seq\"", "\"policy\": \"aether\"", "\"accuracy\"", "\"coverage\"", "\"timeliness\"", "\"waste\"", "\"hit_ratio\"", "\"demand_reads\"", "\"prefetched_blocks\""] {
        assert!(s.contains(k), "missing {k} in {s}");
    }
    assert_eq!(s.matches("\"workload\"").count(), 2);

    let dir = std::env::temp_dir().join(format!("aether-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("t.csv");
    let gen = bin().args(["gen", "reverse"]).output().unwrap();
    assert!(gen.status.success());
    std::fs::write(&f, &gen.stdout).unwrap();
    let out = bin().args(["replay", f.to_str().unwrap(), "--json"]).output().unwrap();
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    assert_eq!(s.matches("\"workload\": \"t\"").count(), 5, "{s}");

    let table = bin().args(["replay", f.to_str().unwrap()]).output().unwrap();
    assert!(String::from_utf8(table.stdout).unwrap().starts_with("workload"));

    std::fs::write(&f, "ts_us,op,lba,sectors\n0,Q,0,8\n").unwrap();
    let bad = bin().args(["replay", f.to_str().unwrap(), "--json"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8(bad.stderr).unwrap().contains("line 2"));
    let _ = std::fs::remove_dir_all(&dir);

    assert!(!bin().args(["synth", "--policy", "nope"]).output().unwrap().status.success());
    assert!(!bin().args(["synth", "--set", "epsilon=2"]).output().unwrap().status.success());
    let off = bin().args(["synth", "--json", "-w", "seq", "-p", "aether", "--set", "epsilon=1"]).output().unwrap();
    assert!(off.status.success());
    let s = String::from_utf8(off.stdout).unwrap();
    assert!(s.contains("\"coverage\": 0.000000") && s.contains("\"engine\""), "{s}");
    assert!(!bin().args(["frobnicate"]).output().unwrap().status.success());
}
