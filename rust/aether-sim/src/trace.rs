//! Block traces: the CSV format and the built-in synthetic workloads.
//!
//! CSV: header `ts_us,op,lba,sectors`; `op` is `R`, `W`, `D` (discard) or
//! `F` (flush); `lba` and `sectors` are in 512-byte sectors; `ts_us` is the
//! submission time in microseconds or empty (closed loop at QD1: the next
//! request is issued when the previous one completes, plus think time).

use std::fmt;

/// Operation of a trace record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Read.
    Read,
    /// Write.
    Write,
    /// Discard.
    Discard,
    /// Flush.
    Flush,
}

/// One trace record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Req {
    /// Submission time (µs), `None` for closed loop.
    pub ts_us: Option<u64>,
    /// Operation.
    pub op: Op,
    /// Start sector.
    pub lba: u64,
    /// Length in sectors.
    pub sectors: u32,
}

/// A CSV parse error with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError {
    /// Line number (1-based).
    pub line: usize,
    /// What went wrong.
    pub msg: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

impl std::error::Error for TraceError {}

/// Parse a CSV trace (see the module docs).  Blank lines and lines starting
/// with `#` are ignored.
pub fn parse_csv(text: &str) -> Result<Vec<Req>, TraceError> {
    let mut out = Vec::new();
    let mut saw_header = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let ln = i + 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !saw_header {
            let cols: Vec<&str> = line.split(',').map(|c| c.trim()).collect();
            if cols != ["ts_us", "op", "lba", "sectors"] {
                return Err(TraceError { line: ln, msg: format!("expected header ts_us,op,lba,sectors, got {line:?}") });
            }
            saw_header = true;
            continue;
        }
        let cols: Vec<&str> = line.split(',').map(|c| c.trim()).collect();
        if cols.len() != 4 {
            return Err(TraceError { line: ln, msg: format!("expected 4 fields, got {}", cols.len()) });
        }
        let ts_us = if cols[0].is_empty() {
            None
        } else {
            Some(cols[0].parse::<u64>().map_err(|e| TraceError { line: ln, msg: format!("bad ts_us {:?}: {e}", cols[0]) })?)
        };
        let op = match cols[1] {
            "R" | "r" => Op::Read,
            "W" | "w" => Op::Write,
            "D" | "d" => Op::Discard,
            "F" | "f" => Op::Flush,
            other => return Err(TraceError { line: ln, msg: format!("bad op {other:?} (want R, W, D or F)") }),
        };
        let lba = cols[2].parse::<u64>().map_err(|e| TraceError { line: ln, msg: format!("bad lba {:?}: {e}", cols[2]) })?;
        let sectors =
            cols[3].parse::<u32>().map_err(|e| TraceError { line: ln, msg: format!("bad sectors {:?}: {e}", cols[3]) })?;
        out.push(Req { ts_us, op, lba, sectors });
    }
    if !saw_header {
        return Err(TraceError { line: 1, msg: "missing header ts_us,op,lba,sectors".into() });
    }
    Ok(out)
}

/// Render a trace as CSV (closed loop records get an empty `ts_us`).
pub fn to_csv(reqs: &[Req]) -> String {
    let mut s = String::from("ts_us,op,lba,sectors\n");
    for r in reqs {
        let op = match r.op {
            Op::Read => 'R',
            Op::Write => 'W',
            Op::Discard => 'D',
            Op::Flush => 'F',
        };
        match r.ts_us {
            Some(t) => s.push_str(&format!("{t},{op},{},{}\n", r.lba, r.sectors)),
            None => s.push_str(&format!(",{op},{},{}\n", r.lba, r.sectors)),
        }
    }
    s
}

/// Small deterministic PRNG (xorshift64*), so workloads are reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (seed 0 is remapped).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Sectors per 4 KiB block.
pub const BS: u64 = 8;

fn read(lba_blocks: u64, blocks: u64) -> Req {
    Req { ts_us: None, op: Op::Read, lba: lba_blocks * BS, sectors: (blocks * BS) as u32 }
}

fn write(lba_blocks: u64, blocks: u64) -> Req {
    Req { ts_us: None, op: Op::Write, lba: lba_blocks * BS, sectors: (blocks * BS) as u32 }
}

/// Names of the built-in workloads, in suite order.
pub const WORKLOADS: [&str; 15] = [
    "seq",
    "stride",
    "interleaved8",
    "random",
    "mixed",
    "reverse",
    "btree",
    "loaders-1m",
    "loaders-128k",
    "lsm",
    "backward",
    "smallfiles",
    "zipf-scan",
    "interleaved48",
    "interleaved64",
];

/// Workloads whose generator draws random numbers (results vary by seed).
pub const RANDOMIZED: [&str; 13] = [
    "interleaved8",
    "random",
    "mixed",
    "btree",
    "loaders-1m",
    "loaders-128k",
    "lsm",
    "backward",
    "smallfiles",
    "zipf-scan",
    "interleaved48",
    "interleaved64",
    "stride",
];

/// `n` sequential readers of `blocks`-block requests, picked at random.
fn interleaved(rng: &mut Rng, n: u64, blocks: u64, reads: usize, base_region: u64) -> Vec<Req> {
    const REGION: u64 = 262_144;
    let mut pos: Vec<u64> = (0..n).map(|k| base_region * REGION + k * (REGION / 4) + rng.below(64) * 16).collect();
    let mut v = Vec::with_capacity(reads);
    for _ in 0..reads {
        let k = rng.below(n) as usize;
        v.push(read(pos[k], blocks));
        pos[k] += blocks;
    }
    v
}

/// Zipf(`s`) sampler over `0..n` (inverse CDF by binary search).
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut c = Vec::with_capacity(n);
        let mut acc = 0.0;
        for k in 1..=n {
            acc += 1.0 / (k as f64).powf(s);
            c.push(acc);
        }
        for x in c.iter_mut() {
            *x /= acc;
        }
        Zipf(c)
    }
    fn sample(&self, rng: &mut Rng) -> u64 {
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        self.0.partition_point(|&x| x < u) as u64
    }
}

/// Build a synthetic workload by name (closed loop).  `None` for an
/// unknown name.
pub fn synth(name: &str, seed: u64) -> Option<Vec<Req>> {
    let mut rng = Rng::new(seed ^ name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)));
    // Regions are 1 GiB (262144 blocks) apart on a 64 GiB device.
    const REGION: u64 = 262_144;
    let v = match name {
        // One sequential reader, 16 KiB requests, 64 MiB.
        "seq" => {
            let base = 3 * REGION;
            (0..4096u64).map(|i| read(base + 4 * i, 4)).collect()
        }
        // 4 KiB reads with strides of 2..64 blocks, 1500 reads per stride.
        "stride" => {
            let mut v = Vec::new();
            for (k, stride) in [2u64, 4, 8, 16, 32, 64].iter().enumerate() {
                let base = (5 + 2 * k as u64) * REGION;
                for i in 0..1500u64 {
                    v.push(read(base + stride * i, 1));
                }
            }
            v
        }
        // Eight sequential 8 KiB readers, interleaved at random.
        "interleaved8" => {
            let mut pos: Vec<u64> = (0..8u64).map(|k| (20 + 3 * k) * REGION).collect();
            let mut v = Vec::new();
            for _ in 0..16_384 {
                let k = rng.below(8) as usize;
                v.push(read(pos[k], 2));
                pos[k] += 2;
            }
            v
        }
        // Uniform random 4 KiB reads over 64 GiB.
        "random" => (0..16_384).map(|_| read(rng.below(64 * REGION - 1), 1)).collect(),
        // Two sequential 16 KiB readers; 25% of requests are 4-16 KiB writes
        // landing just ahead of a reader (inside its readahead window).
        "mixed" => {
            let mut pos = [40 * REGION, 44 * REGION];
            let mut v = Vec::new();
            let mut k = 0usize;
            while v.len() < 12_000 {
                if rng.below(4) == 0 {
                    let r = rng.below(2) as usize;
                    v.push(write(pos[r] + rng.below(256), 1 + rng.below(4)));
                } else {
                    v.push(read(pos[k], 4));
                    pos[k] += 4;
                    k ^= 1;
                }
            }
            v
        }
        // One backward reader, 8 KiB requests.
        "reverse" => {
            let top = 50 * REGION;
            (1..=6000u64).map(|i| read(top - 2 * i, 2)).collect()
        }
        // A B-tree of 16 KiB pages: 70% point lookups (root, one of 256
        // inner pages, a random leaf), 30% range scans (descend, then 4 to
        // 128 consecutive leaves; 1 in 10 steps skips a page, a split).
        "btree" => {
            let (root, inner, leaves) = (60 * REGION, 60 * REGION + 4, 61 * REGION);
            let nleaves = 4 * REGION / 4;
            let mut v = Vec::new();
            while v.len() < 20_000 {
                v.push(read(root, 4));
                v.push(read(inner + 4 * rng.below(256), 4));
                let mut leaf = rng.below(nleaves);
                if rng.below(10) < 7 {
                    v.push(read(leaves + 4 * leaf, 4));
                } else {
                    let n = 4 << rng.below(6);
                    for _ in 0..n {
                        v.push(read(leaves + 4 * leaf, 4));
                        leaf += if rng.below(10) == 0 { 2 } else { 1 };
                    }
                }
            }
            v
        }
        // Four model-weight loaders, each a 256 MiB file read with 1 MiB
        // requests, scheduled at random.
        "loaders-1m" => interleaved(&mut rng, 4, 256, 1024, 70),
        // The same with 128 KiB requests over 64 MiB files.
        "loaders-128k" => interleaved(&mut rng, 4, 32, 2048, 74),
        // LSM compaction: merge two sorted runs (64 and 32 MiB, 64 KiB
        // reads, the next read from either run at random in proportion)
        // into a third with 256 KiB writes, then scan the new run.
        "lsm" => {
            let (mut a, mut b, mut c) = (80 * REGION, 82 * REGION, 84 * REGION);
            let (a_end, b_end) = (a + 16_384, b + 8_192);
            let c0 = c;
            let mut v = Vec::new();
            let mut out = 0u64;
            while a < a_end || b < b_end {
                let pick_a = b >= b_end || (a < a_end && rng.below(3) < 2);
                if pick_a {
                    v.push(read(a, 16));
                    a += 16;
                } else {
                    v.push(read(b, 16));
                    b += 16;
                }
                out += 16;
                if out >= 64 {
                    v.push(write(c, 64));
                    c += 64;
                    out -= 64;
                }
            }
            let mut x = c0;
            while x < c {
                v.push(read(x, 16));
                x += 16;
            }
            v
        }
        // 40 backward scans of 50 to 400 requests of 8 to 32 KiB at random
        // places; 1 in 20 steps skips a request.
        "backward" => {
            let mut v = Vec::new();
            for _ in 0..40 {
                let size = 2 << rng.below(3);
                let n = 50 + rng.below(351);
                let mut pos = 90 * REGION + rng.below(8 * REGION) + n * size * 2;
                for _ in 0..n {
                    v.push(read(pos, size));
                    let skip = if rng.below(20) == 0 { 2 } else { 1 };
                    pos -= size * skip;
                }
            }
            v
        }
        // Small files (4 KiB to 64 KiB, ascending on disk with small gaps),
        // each read whole with up to 16 KiB requests after its inode block
        // (one of 64 inode-table blocks: reuse); 3 in 10 files are read
        // out of layout order.
        "smallfiles" => {
            let mut files = Vec::new();
            let mut at = 100 * REGION;
            for _ in 0..3000 {
                let len = 1 << rng.below(5);
                files.push((at, len));
                at += len + rng.below(8);
            }
            let mut v = Vec::new();
            for i in 0..files.len() {
                let j = if rng.below(10) < 3 { rng.below(files.len() as u64) as usize } else { i };
                let (f, len) = files[j];
                v.push(read(99 * REGION + rng.below(64), 1));
                let mut o = 0;
                while o < len {
                    let n = (len - o).min(4);
                    v.push(read(f + o, n));
                    o += n;
                }
            }
            v
        }
        // A Zipf(0.9) hot set of 4 KiB reads over 80 MiB (more than the
        // default cache: reuse, so pollution costs) interleaved 1:1 with a
        // sequential scan of 64 KiB requests.
        "zipf-scan" => {
            let z = Zipf::new(20_480, 0.9);
            let mut scan = 110 * REGION;
            let mut v = Vec::new();
            for i in 0..24_000 {
                if i % 2 == 0 {
                    v.push(read(108 * REGION + z.sample(&mut rng) * 7 % 20_480, 1));
                } else {
                    v.push(read(scan, 16));
                    scan += 16;
                }
            }
            v
        }
        // 48 and 64 sequential 8 KiB readers, picked at random.
        "interleaved48" => interleaved(&mut rng, 48, 2, 24_576, 120),
        "interleaved64" => interleaved(&mut rng, 64, 2, 32_768, 140),
        _ => return None,
    };
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_roundtrip_and_errors() {
        let text = "ts_us,op,lba,sectors\n0,R,0,8\n,W,8,8\n# comment\n\n100,D,16,8\n200,F,0,0\n";
        let t = parse_csv(text).unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t[1], Req { ts_us: None, op: Op::Write, lba: 8, sectors: 8 });
        assert_eq!(parse_csv(&to_csv(&t)).unwrap(), t);
        assert!(parse_csv("").is_err());
        assert!(parse_csv("a,b,c,d\n").is_err());
        let e = parse_csv("ts_us,op,lba,sectors\n0,X,0,8\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse_csv("ts_us,op,lba,sectors\n0,R,-1,8\n").is_err());
        assert!(parse_csv("ts_us,op,lba,sectors\n0,R,1\n").is_err());
        assert!(parse_csv("ts_us,op,lba,sectors\nx,R,1,8\n").is_err());
    }

    #[test]
    fn synth_workloads_exist_and_are_deterministic() {
        for w in WORKLOADS {
            let a = synth(w, 1).unwrap();
            let b = synth(w, 1).unwrap();
            assert!(!a.is_empty());
            assert_eq!(a, b, "{w} not deterministic");
        }
        assert!(synth("nope", 1).is_none());
    }
}
