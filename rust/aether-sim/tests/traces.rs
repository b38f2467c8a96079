//! Block traces of real programs, captured in the QEMU guest on ext4
//! (`scripts/guest/trace-apps.sh`): the bios the page cache sends to the
//! namespace, i.e. what aether receives when stacked there.  They already
//! contain Linux's readahead, so only aether's rows are a fair replay (the
//! baselines would read ahead on top of readahead); the assertions state
//! what aether does with them.

use aether_sim::{parse_csv, run_all, Config, Metrics, POLICIES};

fn replay(name: &str, text: &str) -> Vec<Metrics> {
    let reqs = parse_csv(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(reqs.len() > 30, "{name}: {} records", reqs.len());
    run_all(name, &reqs, &POLICIES, &Config::default())
}

fn aether(ms: &[Metrics]) -> &Metrics {
    ms.iter().find(|m| m.policy == "aether").unwrap()
}

/// `tar` of a source tree: the page cache's readahead already turned the
/// file reads into large sequential bios; what reaches aether is metadata
/// and small-file reads it does not predict.  It wastes nothing.
#[test]
fn tar_of_a_source_tree() {
    let ms = replay("tar-src", include_str!("data/tar-src.csv"));
    let a = aether(&ms);
    assert!(a.coverage < 0.02 && a.waste < 0.01, "{a:?}");
}

/// An SQLite index range scan: random table-page lookups between index
/// leaf reads; aether prefetches almost nothing and wastes nothing.
#[test]
fn sqlite_index_scan() {
    let ms = replay("sqlite-index-scan", include_str!("data/sqlite-index-scan.csv"));
    let a = aether(&ms);
    assert!(a.coverage < 0.02 && a.waste < 0.01, "{a:?}");
    assert!(a.accuracy > 0.5, "what it prefetches is used: {a:?}");
}

/// A chunked O_DIRECT loader (1 MiB reads of a 32 MiB file, fragmented by
/// ext4): aether covers part of the reads, bounded by the 256 KiB lookahead
/// cap (at most a quarter of each 1 MiB read), at under 1% waste.
#[test]
fn odirect_loader() {
    let ms = replay("odirect-loader", include_str!("data/odirect-loader.csv"));
    let a = aether(&ms);
    assert!(a.coverage > 0.03 && a.coverage <= 0.25 && a.waste < 0.01, "{a:?}");
}
