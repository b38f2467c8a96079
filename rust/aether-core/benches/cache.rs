//! Cost of the prefetch cache's index operations (`aether_core::cache`), the
//! per-block work the kernel does under the cache lock, against a std
//! `HashMap` doing the lookup alone, measured in the same run.
//!
//! Run: `cargo bench -p aether-core --bench cache`.

use aether_core::cache::{buckets_for, BlockCache, Serve, Slot};
use aether_core::StreamId;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::collections::HashMap;

const BLOCKS: usize = 16384; // 64 MiB of 4 KiB blocks

type C = BlockCache<u64, Vec<Slot<u64>>, Vec<u32>>;

fn full_cache() -> C {
    let slots: Vec<Slot<u64>> = (0..BLOCKS).map(|_| Slot::empty()).collect();
    let mut c = BlockCache::new(slots, vec![0; buckets_for(BLOCKS)], BLOCKS as u32).unwrap();
    for b in 0..BLOCKS as u64 {
        let t = c.reserve(b, StreamId(1), &mut |_, _, _| {}).unwrap();
        c.fill(t, b).unwrap();
    }
    c
}

fn bench(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("cache");
    let map: HashMap<u64, u64> = (0..BLOCKS as u64).map(|b| (b, b)).collect();
    let mut i = 0u64;
    g.bench_function("reference: HashMap lookup of 1 block", |b| {
        b.iter(|| {
            i = (i + 7) % BLOCKS as u64;
            black_box(map.get(&black_box(i)));
        })
    });
    let mut c = full_cache();
    let mut i = 0u64;
    g.bench_function("serve 4 KiB hit (1 block)", |b| {
        b.iter(|| {
            i = (i + 7) % BLOCKS as u64;
            let r = c.serve(black_box(i), 1, 64, false, &mut |_, _, _| {}, |p| {
                black_box(p);
            });
            black_box(matches!(r, Serve::Hit { .. }));
        })
    });
    let mut i = 0u64;
    g.bench_function("serve 128 KiB hit (32 blocks)", |b| {
        b.iter(|| {
            i = (i + 32 * 7) % (BLOCKS as u64 - 32);
            let r = c.serve(black_box(i), 32, 64, false, &mut |_, _, _| {}, |p| {
                black_box(p);
            });
            black_box(matches!(r, Serve::Hit { .. }));
        })
    });
    let mut next = BLOCKS as u64;
    g.bench_function("reserve + fill 1 block (evicting one)", |b| {
        b.iter(|| {
            next += 1;
            let t = c.reserve(black_box(next), StreamId(2), &mut |_, _, _| {}).unwrap();
            black_box(c.fill(t, next).is_ok());
        })
    });
    let mut i = 0u64;
    g.bench_function("write of 1 block: invalidate + fence begin/end", |b| {
        b.iter(|| {
            i = (i + 7) % (1 << 30);
            black_box(c.invalidate(black_box(i), 1, &mut |_, _, _| {}));
            let f = c.fence_begin(i, 1);
            c.fence_end(f);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
