//! A hot loop for instruction counting (`valgrind --tool=callgrind`):
//! `hot_loop seq|next|jitter|inter N`.
use aether_core::{Decision, Engine, Params};
use std::hint::black_box;

#[inline(never)]
fn step(e: &mut Engine, lba: u64, s: u32, t: u64) -> Decision {
    e.on_read(lba, s, t)
}

#[inline(never)]
fn next_block(next: &mut u64, lba: u64, sectors: u32) -> Decision {
    let end = lba.wrapping_add(sectors as u64);
    let seq = lba == *next;
    *next = end;
    Decision { prefetch: seq, start: end, sectors, stride: sectors as i64, count: seq as u32, ..Decision::default() }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let mode = a.get(1).map(|s| s.as_str()).unwrap_or("seq");
    let n: u64 = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let mut e = Engine::new(Params::default());
    let warm = std::env::var_os("COLD").is_none();
    let mut acc = 0u64;
    let mut nb = 0u64;
    let mut pos = [0u64; 8];
    for (k, p) in pos.iter_mut().enumerate() {
        *p = (k as u64 + 1) << 32;
    }
    for i in 0..n {
        let d = match mode {
            "next" => next_block(&mut nb, i * 8, 8),
            "jitter" => step(&mut e, (1 << 30) + i * 64 + (i & 3), 8, i),
            "inter" => {
                let k = (i as usize * 5) & 7;
                pos[k] += 8;
                step(&mut e, pos[k], 8, i)
            }
            _ => step(&mut e, (1 << 30) + i * 8, 8, i * 1000),
        };
        if warm && mode != "next" && d.prefetch {
            for _ in 0..d.count {
                e.on_feedback(d.stream, aether_core::Outcome::Timely);
            }
        }
        acc = acc.wrapping_add(d.count as u64 + d.probability as u64);
    }
    black_box(acc);
}
