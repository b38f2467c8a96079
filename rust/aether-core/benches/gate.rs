//! Cost of one per-I/O step: feature update + gate decision
//! (`Engine::on_read`), against a trivial next-block policy measured in the
//! same run as the reference.
//!
//! Run: `cargo bench -p aether-core --bench gate`.  Criterion reports the
//! mean in its `time:` line; the medians are in
//! `$CARGO_TARGET_DIR/criterion/<group>/<bench>/new/estimates.json`.

use aether_core::gate::Gate;
use aether_core::{Decision, Engine, Outcome, Params};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

/// The reference: prefetch the next block when the read continues the
/// previous one.  Same call shape as `Engine::on_read`.
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

/// Read the fields a caller reads (field by field, as the kernel does;
/// black-boxing the whole 48-byte struct measures a store-forwarding stall).
#[inline(always)]
fn consume(d: Decision) {
    black_box(d.prefetch);
    black_box(d.start);
    black_box(d.count);
    black_box(d.probability);
}

#[inline(never)]
fn aether_step(e: &mut Engine, lba: u64, sectors: u32, now: u64) -> Decision {
    e.on_read(lba, sectors, now)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("gate");

    // Harness floor: an empty step with the same loop-carried state.
    g.bench_function("harness_floor", |b| {
        let mut lba = 0u64;
        b.iter(|| {
            lba = lba.wrapping_add(8);
            black_box(lba)
        })
    });

    // Reference: trivial next-block policy on a sequential stream.
    g.bench_function("next_block_reference", |b| {
        let mut p = NextBlock { next: 0 };
        let mut lba = 0u64;
        b.iter(|| {
            lba = lba.wrapping_add(8);
            consume(p.on_read(black_box(lba), 8, 0))
        })
    });

    // aether: one sequential stream in steady state (the common case: MRU
    // fast path, steady features, memoised gate, depth grown by timely
    // feedback during warm-up so that a window top-up is issued every
    // 32 reads, as for a long-running stream).
    g.bench_function("aether_update_decide_seq", |b| {
        let mut e = Engine::new(Params::default());
        let mut lba = 1u64 << 30;
        let mut now = 0u64;
        for _ in 0..4096 {
            lba += 8;
            now += 1000;
            let d = e.on_read(lba, 8, now);
            for _ in 0..d.count {
                e.on_feedback(d.stream, Outcome::Timely);
            }
        }
        b.iter(|| {
            lba = lba.wrapping_add(8);
            now = now.wrapping_add(1000);
            consume(aether_step(&mut e, black_box(lba), 8, now))
        })
    });

    // aether: the same stream without any feedback (depth stays at its
    // initial 4 extents, so every second read issues a top-up).
    g.bench_function("aether_update_decide_seq_cold", |b| {
        let mut e = Engine::new(Params::default());
        let mut lba = 1u64 << 30;
        let mut now = 0u64;
        for _ in 0..64 {
            lba += 8;
            e.on_read(lba, 8, now);
        }
        b.iter(|| {
            lba = lba.wrapping_add(8);
            now = now.wrapping_add(1000);
            consume(aether_step(&mut e, black_box(lba), 8, now))
        })
    });

    // aether: a strided stream with a noisy component (division path of the
    // Chebyshev bound taken).
    g.bench_function("aether_update_decide_stride_jitter", |b| {
        let mut e = Engine::new(Params::default());
        let mut lba = 1u64 << 30;
        let mut i = 0u64;
        b.iter(|| {
            i = i.wrapping_add(1);
            lba = lba.wrapping_add(64 + (i & 3));
            consume(aether_step(&mut e, black_box(lba), 8, i))
        })
    });

    // aether: eight interleaved sequential streams (full table scan).
    g.bench_function("aether_update_decide_interleaved8", |b| {
        let mut e = Engine::new(Params::default());
        let mut pos = [0u64; 8];
        for (k, p) in pos.iter_mut().enumerate() {
            *p = (k as u64 + 1) << 32;
        }
        let mut i = 0usize;
        b.iter(|| {
            i = i.wrapping_add(1);
            let k = (i.wrapping_mul(5)) & 7;
            pos[k] = pos[k].wrapping_add(8);
            consume(aether_step(&mut e, black_box(pos[k]), 8, i as u64))
        })
    });

    // aether: random 4 KiB reads over 1 TiB with a full table of 128 live
    // sequential streams (region probe, new stream, LRU recycling).
    g.bench_function("aether_random_read_full_table", |b| {
        let mut e = Engine::new(Params::default());
        let slots = Engine::stream_slots() as u64;
        for step in 0..16u64 {
            for k in 0..slots {
                e.on_read((k << 36) + step * 8, 8, step * 1000 + k);
            }
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut now = 1_000_000u64;
        b.iter(|| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            now = now.wrapping_add(1000);
            consume(aether_step(&mut e, black_box((x >> 24) << 3), 8, now))
        })
    });

    // aether: 100 interleaved sequential streams (prediction index path).
    g.bench_function("aether_update_decide_interleaved100", |b| {
        let mut e = Engine::new(Params::default());
        let mut pos = [0u64; 100];
        for (k, p) in pos.iter_mut().enumerate() {
            *p = (k as u64 + 1) << 32;
        }
        let mut i = 0usize;
        b.iter(|| {
            i = i.wrapping_add(1);
            let k = (i.wrapping_mul(37)) % 100;
            pos[k] = pos[k].wrapping_add(8);
            consume(aether_step(&mut e, black_box(pos[k]), 8, i as u64))
        })
    });

    // on_write against a full table of 128 streams with open windows.
    g.bench_function("aether_on_write_full_table", |b| {
        let mut e = Engine::new(Params::default());
        let slots = Engine::stream_slots() as u64;
        for step in 0..16u64 {
            for k in 0..slots {
                e.on_read((k << 36) + step * 8, 8, step * 1000 + k);
            }
        }
        let mut x: u64 = 0x1234_5678_9abc_def1;
        b.iter(|| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            e.on_write(black_box((x >> 24) << 3), 8, 0);
        })
    });

    // on_feedback_blocks for a live stream of a full table.
    g.bench_function("aether_on_feedback_blocks", |b| {
        let mut e = Engine::new(Params::default());
        let slots = Engine::stream_slots() as u64;
        let mut ids = Vec::new();
        for step in 0..16u64 {
            for k in 0..slots {
                let d = e.on_read((k << 36) + step * 8, 8, step * 1000 + k);
                if step == 15 {
                    ids.push(d.stream);
                }
            }
        }
        let mut i = 0usize;
        b.iter(|| {
            i = i.wrapping_add(1);
            let id = ids[i % ids.len()];
            let o = if i % 8 == 0 { Outcome::Wasted } else { Outcome::Timely };
            e.on_feedback_blocks(black_box(id), o, 4);
        })
    });

    // The gate alone: three observables + sigmoid.
    g.bench_function("gate_eval_only", |b| {
        let gate = Gate::new(Params::default());
        let mut q = 0u32;
        b.iter(|| {
            q = q.wrapping_add(4099) & 0xffff;
            black_box(gate.eval(black_box([q, 65536 - q, q / 2])))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
