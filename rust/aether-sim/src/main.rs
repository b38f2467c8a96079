//! `aether-sim`: command-line front end of the simulator.
//!
//! ```text
//! aether-sim synth [--json] [--workload NAME]... [--policy NAME]... [options]
//! aether-sim replay FILE [--json] [--policy NAME]... [options]
//! aether-sim gen WORKLOAD            # print a synthetic workload as CSV
//! options: --latency-us N (100) --bandwidth-mbps N (2000) --qd N (32)
//!          --cache-blocks N (16384) --think-us N (20) --seed N (1)
//!          --set NAME=VALUE (aether parameter, e.g. --set epsilon=0.75)
//! ```

use aether_sim::{make, parse_csv, run_all_with, synth, to_json, to_table, trace, Config, POLICIES, WORKLOADS};
use std::process::ExitCode;

fn usage() -> &'static str {
    "usage: aether-sim synth [--json] [--workload NAME]... [--policy NAME]... [options]\n       aether-sim replay FILE [--json] [--policy NAME]... [options]\n       aether-sim gen WORKLOAD [--seed N]\noptions: --latency-us N (100) --bandwidth-mbps N (2000) --qd N (32) --cache-blocks N (16384) --think-us N (20) --seed N (1)\n         --set NAME=VALUE (aether parameter: phi epsilon lambda1 lambda2 lambda3 bias learning_rate)\nworkloads: seq stride interleaved8 random mixed reverse\npolicies: none linux-ra leap amp aether\n"
}

struct Opts {
    json: bool,
    cfg: Config,
    seed: u64,
    positional: Vec<String>,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts { json: false, cfg: Config::default(), seed: 1, positional: vec![] };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{name} needs a value"))?;
            v.parse::<u64>().map_err(|e| format!("{name} {v:?}: {e}"))
        };
        match a.as_str() {
            "--json" => o.json = true,
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
    let pols: Vec<&str> = if policies.is_empty() { POLICIES.to_vec() } else { policies.iter().map(|s| s.as_str()).collect() };
    let Some(cmd) = o.positional.first().cloned() else {
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    let results = match cmd.as_str() {
        "synth" => {
            let names: Vec<String> = if workloads.is_empty() { WORKLOADS.iter().map(|s| s.to_string()).collect() } else { workloads.clone() };
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
