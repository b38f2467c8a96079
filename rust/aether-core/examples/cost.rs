//! Per-operation cost in instructions, for runs on a noisy machine:
//! `valgrind --tool=cachegrind` counts instructions exactly, so running a
//! scenario with two iteration counts and subtracting gives instructions
//! per operation, independent of machine load.
//!
//! `cargo build --release --example cost -p aether-core` then
//! `scripts`-free: `valgrind --tool=cachegrind --cache-sim=no target/release/examples/cost SCENARIO N`
//! for N = 0 and N = 100000 (see Documentation/algorithm.rst, "Cost").

use aether_core::{Decision, Engine, Outcome, Params};
use std::hint::black_box;

struct NextBlock {
    next: u64,
}

impl NextBlock {
    #[inline(never)]
    fn on_read(&mut self, lba: u64, sectors: u32, _now_ns: u64) -> Decision {
        let end = lba.wrapping_add(sectors as u64);
        let seq = lba == self.next;
        self.next = end;
        Decision { prefetch: seq, start: end, sectors, stride: sectors as i64, count: seq as u32, ..Decision::default() }
    }
}

fn full_table() -> Engine {
    let mut e = Engine::new(Params::default());
    let slots = Engine::stream_slots() as u64;
    for step in 0..16u64 {
        for k in 0..slots {
            e.on_read((k << 36) + step * 8, 8, step * 1000 + k);
        }
    }
    e
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("seq");
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    match which {
        "reference" => {
            let mut p = NextBlock { next: 0 };
            for i in 0..n {
                black_box(p.on_read(black_box(i * 8), 8, 0));
            }
        }
        "seq" => {
            let mut e = Engine::new(Params::default());
            let mut lba = 1u64 << 30;
            for i in 0..(4096 + n) {
                lba += 8;
                let d = e.on_read(black_box(lba), 8, i * 1000);
                if i < 4096 {
                    for _ in 0..d.count {
                        e.on_feedback(d.stream, Outcome::Timely);
                    }
                }
                black_box(d.count);
            }
        }
        "random" => {
            let mut e = full_table();
            for i in 0..n {
                black_box(e.on_read(black_box((rnd() >> 24) << 3), 8, 1_000_000 + i * 1000).count);
            }
        }
        // Random reads over 1 GiB: with 128 streams in 256 regions most reads
        // find a stream nearby and fork from it (the guest bench's case).
        "random1g" => {
            let mut e = full_table();
            for i in 0..n {
                black_box(e.on_read(black_box((rnd() % (1 << 21)) & !7), 8, 1_000_000 + i * 1000).count);
            }
        }
        "interleaved100" => {
            let mut e = Engine::new(Params::default());
            let mut pos = [0u64; 100];
            for (k, p) in pos.iter_mut().enumerate() {
                *p = (k as u64 + 1) << 32;
            }
            for i in 0..(10_000 + n) as usize {
                let k = (i.wrapping_mul(37)) % 100;
                pos[k] += 8;
                black_box(e.on_read(black_box(pos[k]), 8, i as u64).count);
            }
        }
        "write" => {
            let mut e = full_table();
            for _ in 0..n {
                e.on_write(black_box((rnd() >> 24) << 3), 8, 0);
            }
        }
        "feedback" => {
            let mut e = full_table();
            let ids: Vec<_> = (0..128u64).map(|k| e.on_read((k << 36) + 16 * 8, 8, 20_000 + k).stream).collect();
            for i in 0..n as usize {
                let o = if i % 8 == 0 { Outcome::Wasted } else { Outcome::Timely };
                e.on_feedback_blocks(black_box(ids[i % ids.len()]), o, 4);
            }
        }
        _ => eprintln!("scenarios: reference seq random random1g interleaved100 write feedback"),
    }
}
