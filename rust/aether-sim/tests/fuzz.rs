//! Seeded fuzzing of the trace parser (and of a replay of whatever it accepts), run by `cargo test`
//! with a fixed-seed xorshift generator: garbage and mutated CSV never panic, every refusal names a
//! line that exists, accepted traces survive a to_csv/parse round trip, and every policy replays them.

use aether_sim::trace::to_csv;
use aether_sim::{make, parse_csv, run, Config, Op, Req, POLICIES};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

const SEED: u64 = 0x7ace_5eed_2026_1204;

fn number(r: &mut Rng) -> String {
    match r.below(8) {
        0 => u64::MAX.to_string(),
        1 => "18446744073709551616".into(),
        2 => "-1".into(),
        3 => format!("{}", r.next()),
        4 => format!("{}", r.next() as u32),
        5 => "".into(),
        6 => format!("0x{:x}", r.below(100)),
        _ => format!("{}", r.below(100_000)),
    }
}

/// A CSV line that is valid most of the time and near-valid otherwise.
fn line(r: &mut Rng) -> String {
    let ts = if r.chance(30) { String::new() } else { format!("{}", r.below(1 << 30)) };
    let op = *r.pick(&["R", "W", "D", "F", "r", "w", "d", "f"]);
    let lba = r.below(1 << 24).to_string();
    let n = (1 + r.below(256)).to_string();
    let mut cols = vec![ts, op.to_string(), lba, n];
    match r.below(12) {
        0 => cols[r.below(4) as usize] = number(r),
        1 => cols[1] = (*r.pick(&["X", "", "RW", "\0", "é"])).into(),
        2 => {
            cols.pop();
        }
        3 => cols.push(number(r)),
        4 => cols[r.below(4) as usize].push(*r.pick(&['\0', ' ', '\t', ';', '\u{feff}'])),
        _ => {}
    }
    let sep = if r.chance(3) { ";" } else { "," };
    let mut s = cols.join(sep);
    if r.chance(5) {
        s = format!("  {s}\t");
    }
    s
}

fn document(r: &mut Rng) -> String {
    let mut s = String::new();
    match r.below(10) {
        0 => {}
        1 => s.push_str("ts_us,op,lba\n"),
        2 => s.push_str("# comment\n\nts_us , op , lba , sectors\r\n"),
        _ => s.push_str("ts_us,op,lba,sectors\n"),
    }
    for _ in 0..r.below(40) {
        match r.below(20) {
            0 => s.push('\n'),
            1 => s.push_str("# note, with, commas\n"),
            2 => {
                let n = r.below(30) as usize;
                let bytes: Vec<u8> = (0..n).map(|_| r.next() as u8).collect();
                s.push_str(&String::from_utf8_lossy(&bytes));
                s.push('\n');
            }
            _ => {
                s.push_str(&line(r));
                s.push_str(if r.chance(5) { "\r\n" } else { "\n" });
            }
        }
    }
    if r.chance(10) {
        // Truncated in the middle (a partial file).
        let mut cut = r.below(s.len() as u64 + 1) as usize;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[test]
fn trace_parser_fuzz() {
    let mut r = Rng(SEED);
    let (mut ok, mut err, mut replayed) = (0u32, 0u32, 0u32);
    let cfg = Config { latency_us: 80, bandwidth_mbps: 2000, queue_depth: 4, cache_blocks: 64, think_us: 5, ..Config::default() };
    for case in 0..30_000u32 {
        let doc = document(&mut r);
        match parse_csv(&doc) {
            Ok(reqs) => {
                ok += 1;
                let data_lines = doc.lines().filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#')).count();
                assert_eq!(reqs.len() + 1, data_lines, "case {case}: records vs lines in {doc:?}");
                let again = parse_csv(&to_csv(&reqs)).unwrap_or_else(|e| panic!("case {case}: round trip: {e}"));
                assert_eq!(again, reqs, "case {case}");
                // Whatever parses replays under every policy (huge lba/sectors included) without a panic.
                if case % 16 == 0 && !reqs.is_empty() {
                    for p in POLICIES {
                        let mut pol = make(p).unwrap();
                        let m = run("fuzz", &reqs, pol.as_mut(), &cfg);
                        let _ = format!("{m:?}");
                    }
                    replayed += 1;
                }
            }
            Err(e) => {
                err += 1;
                let lines = doc.lines().count().max(1);
                assert!(e.line >= 1 && e.line <= lines, "case {case}: error on line {} of {lines}: {e}", e.line);
                assert!(!e.msg.is_empty());
            }
        }
    }
    assert!(ok > 1_000 && err > 10_000 && replayed > 50, "weak generator: {ok} accepted, {err} refused, {replayed} replayed");
}

#[test]
fn generated_traces_round_trip() {
    let mut r = Rng(SEED ^ 1);
    for case in 0..2_000 {
        let reqs: Vec<Req> = (0..r.below(50))
            .map(|_| Req {
                ts_us: if r.chance(50) { Some(r.next()) } else { None },
                op: *r.pick(&[Op::Read, Op::Write, Op::Discard, Op::Flush]),
                lba: r.next(),
                sectors: r.next() as u32,
            })
            .collect();
        assert_eq!(parse_csv(&to_csv(&reqs)), Ok(reqs), "case {case}");
    }
}
