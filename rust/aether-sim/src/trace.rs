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
pub const WORKLOADS: [&str; 6] = ["seq", "stride", "interleaved8", "random", "mixed", "reverse"];

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
