//! The goals of issue 3, checked on the built-in synthetic suite.
//!
//! Every assertion here can fail: the thresholds are the issue's, and the
//! baselines run in the same model.

use aether_sim::{run_suite, Config, Metrics, POLICIES, WORKLOADS};
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

/// Suite totals: aether's coverage is at least every baseline's, at equal
/// or lower waste (blocks summed over all workloads).
#[test]
fn suite_coverage_dominates_at_lower_waste() {
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
        assert!(ac >= bc, "suite coverage aether {ac} < {b} {bc}");
        assert!(aw <= bw, "suite waste aether {aw} > {b} {bw}");
    }
}

/// Per workload, no baseline beats aether's coverage at equal or lower
/// waste, except by at most 0.2 percentage points (aether trusts a stream
/// only after four consistent deltas; AMP and Linux bet on the second
/// read, which on a 4096-request stream is worth < 0.1 pp).
#[test]
fn no_baseline_dominates_per_workload() {
    for w in WORKLOADS {
        let a = get(w, "aether");
        for b in ["linux-ra", "leap", "amp"] {
            let m = get(w, b);
            if m.waste <= a.waste {
                assert!(
                    a.coverage + 0.002 >= m.coverage,
                    "{w}: {b} coverage {} waste {} beats aether coverage {} waste {}",
                    m.coverage,
                    m.waste,
                    a.coverage,
                    a.waste
                );
            }
        }
    }
}
