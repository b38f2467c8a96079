//! `aether-sim`: command-line front end of the simulator.
//!
//! ```text
//! aether-sim synth [--json] [--workload NAME]... [--policy NAME]... [options]
//! aether-sim replay FILE [--json] [--policy NAME]... [options]
//! aether-sim sweep [--workload NAME]... [--policy NAME]... [options]
//! aether-sim gen WORKLOAD            # print a synthetic workload as CSV
//! options: --latency-us N (100) --bandwidth-mbps N (2000) --qd N (32)
//!          --cache-blocks N (16384) --think-us N (20) --overhead-ns N (2000) --prefetch-blocks N (4096)
//!          --seed N (1) --seeds N (1: with N > 1, synth prints mean [min, max]
//!          over seeds 1..=N) --ablation (policies: aether aether-nolearn k2-rule)
//!          --set NAME=VALUE (aether parameter, e.g. --set epsilon=0.75)
//! sweep: QD 1, 4, 32 x cache 8, 64, 256 MiB, mean over --seeds.
//! ```

use aether_sim::{
    make, parse_csv, run_all_with, run_seeds, spread_table, synth, to_json, to_table, trace, Config, ABLATION, POLICIES,
    WORKLOADS,
};
use std::process::ExitCode;

fn usage() -> &'static str {
    "usage: aether-sim synth [--json] [--workload NAME]... [--policy NAME]... [options]\n       aether-sim replay FILE [--json] [--policy NAME]... [options]\n       aether-sim sweep [--workload NAME]... [--policy NAME]... [options]\n       aether-sim gen WORKLOAD [--seed N]\noptions: --latency-us N (100) --bandwidth-mbps N (2000) --qd N (32) --cache-blocks N (16384) --think-us N (20)\n         --overhead-ns N (2000) --prefetch-blocks N (4096) --seed N (1) --seeds N (1) --ablation\n         --set NAME=VALUE (aether parameter: phi epsilon lambda1 lambda2 lambda3 bias learning_rate)\nworkloads: seq stride interleaved8 random mixed reverse btree loaders-1m loaders-128k lsm backward smallfiles\n           zipf-scan interleaved48 interleaved64\npolicies: none linux-ra leap amp aether aether-nolearn k2-rule\n"
}

struct Opts {
    json: bool,
    ablation: bool,
    cfg: Config,
    seed: u64,
    seeds: u64,
    positional: Vec<String>,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts { json: false, ablation: false, cfg: Config::default(), seed: 1, seeds: 1, positional: vec![] };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{name} needs a value"))?;
            v.parse::<u64>().map_err(|e| format!("{name} {v:?}: {e}"))
        };
        match a.as_str() {
            "--json" => o.json = true,
            "--ablation" => o.ablation = true,
            "--overhead-ns" => o.cfg.overhead_ns = num(a)?,
            "--prefetch-blocks" => o.cfg.prefetch_blocks = num(a)?.max(2) as usize,
            "--seeds" => o.seeds = num(a)?.clamp(1, 1000),
            "--latency-us" => o.cfg.latency_us = num(a)?,
            "--bandwidth-mbps" => o.cfg.bandwidth_mbps = num(a)?.max(1),
            "--qd" => o.cfg.queue_depth = num(a)?.max(1) as usize,
            "--cache-blocks" => o.cfg.cache_blocks = num(a)?.max(1) as usize,
            "--think-us" => o.cfg.think_us = num(a)?,
            "--seed" => o.seed = num(a)?,
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s => o.positional.push(s.to_string()),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // --workload / --policy take string values: pull them out first.
    let mut rest = Vec::new();
    let mut workloads = Vec::new();
    let mut policies = Vec::new();
    let mut sets: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--workload" | "-w" | "--policy" | "-p" | "--set" => {
                let Some(v) = args.get(i + 1) else {
                    eprintln!("{} needs a value\n{}", args[i], usage());
                    return ExitCode::from(2);
                };
                if args[i] == "--workload" || args[i] == "-w" {
                    workloads.push(v.clone())
                } else if args[i] == "--set" {
                    sets.push(v.clone())
                } else {
                    policies.push(v.clone())
                }
                i += 2;
            }
            _ => {
                rest.push(args[i].clone());
                i += 1;
            }
        }
    }
    let o = match parse(&rest) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprint!("{}", usage());
            return ExitCode::from(2);
        }
    };
    let mut params = aether_core::Params::default();
    for kv in &sets {
        let Some((k, v)) = kv.split_once('=') else {
            eprintln!("error: --set wants NAME=VALUE, got {kv:?}");
            return ExitCode::from(2);
        };
        if let Err(e) = params.set(k, v) {
            eprintln!("error: --set {kv}: {e}");
            return ExitCode::from(2);
        }
    }
    for p in &policies {
        if make(p).is_none() {
            eprintln!("error: unknown policy {p:?}\n{}", usage());
            return ExitCode::from(2);
        }
    }
    let pols: Vec<&str> = if !policies.is_empty() {
        policies.iter().map(|s| s.as_str()).collect()
    } else if o.ablation {
        ABLATION.to_vec()
    } else {
        POLICIES.to_vec()
    };
    let names: Vec<String> = if workloads.is_empty() { WORKLOADS.iter().map(|s| s.to_string()).collect() } else { workloads.clone() };
    for w in &names {
        if synth(w, 1).is_none() {
            eprintln!("error: unknown workload {w:?}\n{}", usage());
            return ExitCode::from(2);
        }
    }
    let wl: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let seeds: Vec<u64> = (o.seed..o.seed + o.seeds).collect();
    let Some(cmd) = o.positional.first().cloned() else {
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    let results = match cmd.as_str() {
        "synth" if o.seeds > 1 => {
            print!("{}", spread_table(&run_seeds(&wl, &pols, &o.cfg, &params, &seeds)));
            return ExitCode::SUCCESS;
        }
        "sweep" => {
            println!("{:<13} {:>3} {:>9} {:<14} {:>9} {:>8} {:>9} {:>9} {:>9}", "workload", "qd", "cache_MiB", "policy", "coverage", "waste", "hit_ratio", "mean_us", "p99_us");
            for qd in [1usize, 4, 32] {
                for mib in [8usize, 64, 256] {
                    let cfg = Config { queue_depth: qd, cache_blocks: mib * 256, ..o.cfg };
                    for x in run_seeds(&wl, &pols, &cfg, &params, &seeds) {
                        println!(
                            "{:<13} {:>3} {:>9} {:<14} {:>8.1}% {:>7.1}% {:>8.1}% {:>9.1} {:>9.1}",
                            x.workload, qd, mib, x.policy, 100.0 * x.coverage[0], 100.0 * x.waste[0], 100.0 * x.hit_ratio[0], x.mean_us[0], x.p99_us[0]
                        );
                    }
                }
            }
            return ExitCode::SUCCESS;
        }
        "synth" => {
            let mut all = Vec::new();
            for w in &names {
                let Some(reqs) = synth(w, o.seed) else {
                    eprintln!("error: unknown workload {w:?}\n{}", usage());
                    return ExitCode::from(2);
                };
                all.extend(run_all_with(w, &reqs, &pols, &o.cfg, &params));
            }
            all
        }
        "replay" => {
            let Some(path) = o.positional.get(1) else {
                eprintln!("error: replay needs a FILE\n{}", usage());
                return ExitCode::from(2);
            };
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {path}: {e}");
                    return ExitCode::from(1);
                }
            };
            let reqs = match parse_csv(&text) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {path}: {e}");
                    return ExitCode::from(1);
                }
            };
            let name = std::path::Path::new(path).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| path.clone());
            run_all_with(&name, &reqs, &pols, &o.cfg, &params)
        }
        "gen" => {
            let Some(w) = o.positional.get(1) else {
                eprintln!("error: gen needs a WORKLOAD\n{}", usage());
                return ExitCode::from(2);
            };
            let Some(reqs) = synth(w, o.seed) else {
                eprintln!("error: unknown workload {w:?}");
                return ExitCode::from(2);
            };
            print!("{}", trace::to_csv(&reqs));
            return ExitCode::SUCCESS;
        }
        other => {
            eprintln!("error: unknown command {other:?}\n{}", usage());
            return ExitCode::from(2);
        }
    };
    if o.json {
        print!("{}", to_json(&results));
    } else {
        print!("{}", to_table(&results));
    }
    ExitCode::SUCCESS
}
