//! The goals of issues 3 and 10, checked on the built-in synthetic suite.
//!
//! Every assertion here can fail: the thresholds are the issues', the
//! baselines run in the same model, and where a baseline beats aether the
//! test says so (`KNOWN_BASELINE_WINS`) and fails if that stops being true,
//! so the table in `Documentation/algorithm.rst` cannot go stale silently.

use aether_sim::{run_all_with, run_suite, synth, Config, Metrics, ABLATION, POLICIES, WORKLOADS};
use std::sync::OnceLock;

fn suite() -> &'static [Metrics] {
    static S: OnceLock<Vec<Metrics>> = OnceLock::new();
    S.get_or_init(|| run_suite(1, &Config::default()))
}

fn get(w: &str, p: &str) -> &'static Metrics {
    suite().iter().find(|m| m.workload == w && m.policy == p).unwrap_or_else(|| panic!("missing {w}/{p}"))
}

#[test]
fn suite_has_every_pair() {
    assert_eq!(suite().len(), WORKLOADS.len() * POLICIES.len());
    for m in suite() {
        for v in [m.accuracy, m.coverage, m.timeliness, m.hit_ratio] {
            assert!((0.0..=1.0).contains(&v), "{m:?}");
        }
        assert!(m.waste >= 0.0);
        assert!(m.used_blocks <= m.prefetched_blocks);
        assert!(m.used_blocks <= m.demand_blocks);
    }
}

#[test]
fn seq_goal() {
    let m = get("seq", "aether");
    assert!(m.coverage >= 0.95, "seq coverage {}", m.coverage);
    assert!(m.accuracy >= 0.95, "seq accuracy {}", m.accuracy);
}

#[test]
fn stride_goal_and_linux_misses_it() {
    let m = get("stride", "aether");
    assert!(m.coverage >= 0.90, "stride coverage {}", m.coverage);
    assert!(m.accuracy >= 0.90, "stride accuracy {}", m.accuracy);
    // On-demand readahead only sees the stride-2 phase as "sequential".
    let l = get("stride", "linux-ra");
    assert!(l.coverage < 0.10, "linux-ra stride coverage {}", l.coverage);
}

#[test]
fn interleaved8_goal() {
    let m = get("interleaved8", "aether");
    assert!(m.coverage >= 0.85, "interleaved8 coverage {}", m.coverage);
}

#[test]
fn random_goal() {
    let m = get("random", "aether");
    assert!(m.waste <= 0.02, "random waste {}", m.waste);
}

#[test]
fn reverse_and_mixed_are_covered() {
    let r = get("reverse", "aether");
    assert!(r.coverage >= 0.95 && r.accuracy >= 0.95, "{r:?}");
    let m = get("mixed", "aether");
    assert!(m.coverage >= 0.90 && m.waste <= 0.05, "{m:?}");
}

/// Issue 10 item 3: 48 and 64 interleaved streams (the table used to hold
/// 32, and 64 streams got 57% hit ratio against Linux's 99.5%).
#[test]
fn many_streams_are_covered() {
    for w in ["interleaved48", "interleaved64"] {
        let a = get(w, "aether");
        assert!(a.coverage >= 0.97 && a.hit_ratio >= 0.97, "{w}: {a:?}");
        let l = get(w, "linux-ra");
        assert!(a.hit_ratio + 0.01 >= l.hit_ratio, "{w}: aether hit {} vs linux {}", a.hit_ratio, l.hit_ratio);
        assert!(a.waste < l.waste, "{w}: aether waste {} vs linux {}", a.waste, l.waste);
    }
}

/// Issue 10, linux-ra: with `async_size = size >> 1` (6.12) a sequential
/// stream of requests as large as the window is covered (it used to get 0).
#[test]
fn linux_ra_covers_large_sequential_requests() {
    let l = get("loaders-128k", "linux-ra");
    assert!(l.coverage >= 0.9, "{l:?}");
    // 1 MiB requests: the 128 KiB window covers an eighth of each read.
    let l = get("loaders-1m", "linux-ra");
    assert!(l.coverage > 0.1 && l.coverage < 0.2, "{l:?}");
}

/// The common lookahead cap (256 KiB) bounds every policy on 1 MiB reads:
/// at most a quarter of each read can be prefetched.
#[test]
fn lookahead_cap_binds_every_policy() {
    for p in ["leap", "amp", "aether"] {
        let m = get("loaders-1m", p);
        assert!(m.coverage <= 0.26 && m.coverage >= 0.2, "{p}: {m:?}");
    }
}

/// Backward scans: neither Linux nor AMP follows them; aether does.
#[test]
fn backward_scans() {
    let a = get("backward", "aether");
    assert!(a.coverage >= 0.9 && a.waste <= 0.15, "{a:?}");
    for b in ["linux-ra", "amp", "leap"] {
        assert!(get("backward", b).coverage < 0.05, "{b}");
    }
}

/// Issue 10 item 1: on the LSM trace, learning used to lock the gate shut
/// (67% vs 91% with learning_rate = 0), and the sequential scan of the
/// merged run got no coverage.  Now learning costs nothing there.
#[test]
fn lsm_learning_does_not_close_the_gate() {
    let reqs = synth("lsm", 1).unwrap();
    let ms = run_all_with("lsm", &reqs, &ABLATION, &Config::default(), &aether_core::Params::default());
    let (a, nolearn) = (&ms[0], &ms[1]);
    assert!(a.coverage >= 0.95, "{a:?}");
    assert!(a.coverage + 0.005 >= nolearn.coverage, "learning {} vs none {}", a.coverage, nolearn.coverage);
}

/// Pairs (workload, baseline) where the baseline dominates aether: higher
/// coverage or hit ratio (by > 0.5 pp) at no more waste (+ 0.5 pp).  See
/// "Where a baseline wins" in Documentation/algorithm.rst.
/// `loaders-1m`: Leap's hit ratio is 0.8 pp higher (19.2% vs 18.4%) at
/// equal coverage and waste; aether's mean latency is lower.
const KNOWN_BASELINE_WINS: &[(&str, &str)] = &[("loaders-1m", "leap")];

#[test]
fn known_wins_cost_more_latency() {
    for (w, b) in KNOWN_BASELINE_WINS {
        let (a, m) = (get(w, "aether"), get(w, b));
        assert!(
            a.mean_read_latency_us < m.mean_read_latency_us,
            "{w}: aether mean {} us vs {b} {} us",
            a.mean_read_latency_us,
            m.mean_read_latency_us
        );
    }
}

#[test]
fn baseline_wins_are_the_documented_ones() {
    let mut wins = Vec::new();
    for w in WORKLOADS {
        let a = get(w, "aether");
        for b in ["linux-ra", "leap", "amp"] {
            let m = get(w, b);
            let better = m.coverage > a.coverage + 0.005 || m.hit_ratio > a.hit_ratio + 0.005;
            if better && m.waste <= a.waste + 0.005 {
                wins.push((w, b));
            }
        }
    }
    assert_eq!(wins, KNOWN_BASELINE_WINS, "the table of baseline wins changed: update algorithm.rst");
}

/// Suite totals (blocks summed over all workloads): no baseline covers
/// more than aether at no more waste.
#[test]
fn suite_totals() {
    let total = |p: &str| {
        let (mut used, mut pf, mut demand) = (0u64, 0u64, 0u64);
        for m in suite().iter().filter(|m| m.policy == p) {
            used += m.used_blocks;
            pf += m.prefetched_blocks;
            demand += m.demand_blocks;
        }
        (used as f64 / demand as f64, (pf - used) as f64 / demand as f64)
    };
    let (ac, aw) = total("aether");
    for b in ["linux-ra", "leap", "amp"] {
        let (bc, bw) = total(b);
        println!("suite {b}: coverage {bc:.4} waste {bw:.4}; aether {ac:.4} {aw:.4}");
        assert!(ac >= bc || aw < bw, "{b} covers more ({bc} > {ac}) at no more waste ({bw} <= {aw})");
    }
}
