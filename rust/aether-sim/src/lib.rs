//! aether-sim: a trace-driven prefetch simulator for aether and its baselines.
//!
//! Metrics (per workload and policy), with 4 KiB blocks:
//!
//! * `accuracy`   = prefetched blocks used / prefetched blocks issued;
//! * `coverage`   = demand blocks served from prefetched data / demand blocks;
//! * `timeliness` = prefetch hits whose data had arrived / prefetch hits;
//! * `waste`      = prefetched bytes never used / demand bytes;
//! * `hit_ratio`  = demand blocks resident (arrived) in the cache / demand blocks;
//! * `demand_reads` = device reads issued for cache misses;
//! * `prefetched_blocks` = blocks read by prefetching.
//!
//! Ratios with a zero denominator are reported as 0.

pub mod model;
pub mod policy;
pub mod trace;

pub use model::{run, Config, Metrics};
pub use policy::{make, make_with, Policy, ABLATION, LOOKAHEAD_BLOCKS, POLICIES};
pub use trace::{parse_csv, synth, Op, Req, RANDOMIZED, WORKLOADS};

/// Run every policy in `policies` on one trace (aether with default parameters).
pub fn run_all(workload: &str, reqs: &[Req], policies: &[&str], cfg: &Config) -> Vec<Metrics> {
    run_all_with(workload, reqs, policies, cfg, &aether_core::Params::default())
}

/// Run every policy in `policies` on one trace, aether with `params`.
pub fn run_all_with(workload: &str, reqs: &[Req], policies: &[&str], cfg: &Config, params: &aether_core::Params) -> Vec<Metrics> {
    policies
        .iter()
        .filter_map(|p| make_with(p, params))
        .map(|mut p| run(workload, reqs, p.as_mut(), cfg))
        .collect()
}

/// Run the built-in suite (all workloads x all policies).
pub fn run_suite(seed: u64, cfg: &Config) -> Vec<Metrics> {
    let mut out = Vec::new();
    for w in WORKLOADS {
        if let Some(reqs) = synth(w, seed) {
            out.extend(run_all(w, &reqs, &POLICIES, cfg));
        }
    }
    out
}

/// One (workload, policy) over several seeds: mean, min and max of the
/// main metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spread {
    /// Workload name.
    pub workload: String,
    /// Policy name.
    pub policy: String,
    /// Seeds run.
    pub seeds: usize,
    /// Coverage: mean, min, max.
    pub coverage: [f64; 3],
    /// Waste: mean, min, max.
    pub waste: [f64; 3],
    /// Hit ratio: mean, min, max.
    pub hit_ratio: [f64; 3],
    /// Mean read latency (µs): mean, min, max.
    pub mean_us: [f64; 3],
    /// p99 read latency (µs): mean, min, max.
    pub p99_us: [f64; 3],
}

fn mmm(v: &[f64]) -> [f64; 3] {
    if v.is_empty() {
        return [0.0; 3];
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    [mean, min, max]
}

/// Run `workloads x policies` for each seed in `seeds`; one [`Spread`]
/// per pair (deterministic workloads are run once).
pub fn run_seeds(workloads: &[&str], policies: &[&str], cfg: &Config, params: &aether_core::Params, seeds: &[u64]) -> Vec<Spread> {
    let mut out = Vec::new();
    for w in workloads {
        let ss: Vec<u64> = if RANDOMIZED.contains(w) { seeds.to_vec() } else { seeds.iter().copied().take(1).collect() };
        let runs: Vec<Vec<Metrics>> =
            ss.iter().filter_map(|&s| synth(w, s)).map(|reqs| run_all_with(w, &reqs, policies, cfg, params)).collect();
        for (i, p) in policies.iter().enumerate() {
            let ms: Vec<&Metrics> = runs.iter().filter_map(|r| r.get(i)).collect();
            let f = |g: fn(&Metrics) -> f64| mmm(&ms.iter().map(|m| g(m)).collect::<Vec<_>>());
            out.push(Spread {
                workload: w.to_string(),
                policy: p.to_string(),
                seeds: ms.len(),
                coverage: f(|m| m.coverage),
                waste: f(|m| m.waste),
                hit_ratio: f(|m| m.hit_ratio),
                mean_us: f(|m| m.mean_read_latency_us),
                p99_us: f(|m| m.p99_read_latency_us),
            });
        }
    }
    out
}

/// Render spreads as a table: `mean [min, max]` in percent (latency in µs).
pub fn spread_table(v: &[Spread]) -> String {
    let pct = |a: [f64; 3]| format!("{:5.1} [{:5.1},{:5.1}]", 100.0 * a[0], 100.0 * a[1], 100.0 * a[2]);
    let us = |a: [f64; 3]| format!("{:6.1} [{:6.1},{:6.1}]", a[0], a[1], a[2]);
    let mut s = format!(
        "{:<13} {:<14} {:>5} {:>19} {:>19} {:>19} {:>22}\n",
        "workload", "policy", "seeds", "coverage %", "waste %", "hit_ratio %", "p99_us"
    );
    for x in v {
        s.push_str(&format!(
            "{:<13} {:<14} {:>5} {:>19} {:>19} {:>19} {:>22}\n",
            x.workload,
            x.policy,
            x.seeds,
            pct(x.coverage),
            pct(x.waste),
            pct(x.hit_ratio),
            us(x.p99_us)
        ));
    }
    s
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{:.6}", v)
    } else {
        "null".into()
    }
}

/// Render results as a JSON array (one object per workload and policy).
pub fn to_json(ms: &[Metrics]) -> String {
    let mut s = String::from("[\n");
    for (i, m) in ms.iter().enumerate() {
        s.push_str(&format!(
            "  {{\"workload\": {}, \"policy\": {}, \"accuracy\": {}, \"coverage\": {}, \"timeliness\": {}, \"waste\": {}, \"hit_ratio\": {}, \"demand_reads\": {}, \"prefetched_blocks\": {}, \"read_requests\": {}, \"demand_blocks\": {}, \"used_blocks\": {}, \"mean_read_latency_us\": {}, \"p99_read_latency_us\": {}, \"elapsed_ms\": {}}}",
            json_str(&m.workload),
            json_str(&m.policy),
            json_num(m.accuracy),
            json_num(m.coverage),
            json_num(m.timeliness),
            json_num(m.waste),
            json_num(m.hit_ratio),
            m.demand_reads,
            m.prefetched_blocks,
            m.read_requests,
            m.demand_blocks,
            m.used_blocks,
            json_num(m.mean_read_latency_us),
            json_num(m.p99_read_latency_us),
            json_num(m.elapsed_ms),
        ));
        if let Some(e) = &m.engine {
            let mut phi = aether_core::FixedBuf::<24>::new();
            let mut eps = aether_core::FixedBuf::<24>::new();
            let _ = aether_core::format_q16(e.phi, &mut phi);
            let _ = aether_core::format_q16(e.epsilon_eff as i32, &mut eps);
            s.pop(); // reopen the object
            s.push_str(&format!(
                ", \"engine\": {{\"phi\": {}, \"epsilon_eff\": {}, \"streams\": {}, \"prefetches\": {}, \"timely\": {}, \"late\": {}, \"wasted\": {}, \"depth_cap\": {}}}}}",
                phi.as_str(),
                eps.as_str(),
                e.new_streams,
                e.prefetches,
                e.timely,
                e.late,
                e.wasted,
                e.depth_cap
            ));
        }
        s.push_str(if i + 1 < ms.len() { ",\n" } else { "\n" });
    }
    s.push(']');
    s.push('\n');
    s
}

/// Render results as a plain-text table.
pub fn to_table(ms: &[Metrics]) -> String {
    let mut s = format!(
        "{:<13} {:<14} {:>8} {:>8} {:>10} {:>8} {:>9} {:>12} {:>10} {:>9} {:>9}\n",
        "workload", "policy", "accuracy", "coverage", "timeliness", "waste", "hit_ratio", "demand_reads", "prefetched", "mean_us", "p99_us"
    );
    for m in ms {
        s.push_str(&format!(
            "{:<13} {:<14} {:>7.1}% {:>7.1}% {:>9.1}% {:>7.1}% {:>8.1}% {:>12} {:>10} {:>9.1} {:>9.1}\n",
            m.workload,
            m.policy,
            100.0 * m.accuracy,
            100.0 * m.coverage,
            100.0 * m.timeliness,
            100.0 * m.waste,
            100.0 * m.hit_ratio,
            m.demand_reads,
            m.prefetched_blocks,
            m.mean_read_latency_us,
            m.p99_read_latency_us
        ));
    }
    s
}
