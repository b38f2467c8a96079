//! Seeded fuzzing of aether-core's inputs, run by `cargo test` (no cargo-fuzz, no proptest: a
//! fixed-seed xorshift generator, so a failure reproduces from the printed seed and case index).
//!
//! - `parse_q16`, `Params::set` and `Engine::set_param`: arbitrary bytes and near-miss decimals never
//!   panic, every error leaves the parameters unchanged, and accepted values round-trip.
//! - `Engine`: arbitrary read/write/feedback/latency sequences over arbitrary capacities never panic
//!   (test builds have overflow checks on) and never return an extent past the device's capacity.
//! - `BlockCache`: random reserve/fill/abort/serve/invalidate/fence/limit/shrink/clear sequences keep
//!   the occupancy within the limit, the counters equal to the index, and never serve a block whose
//!   fill predates a write to it.

use aether_core::cache::{buckets_for, BlockCache, FenceId, NoReserve, Serve, Slot, State, Ticket};
use aether_core::param::{ParamError, ParamId, MAX_INPUT_LEN};
use aether_core::{format_q16, parse_q16, Engine, FixedBuf, Outcome, Params, StreamId, PARAM_NAMES};
use std::collections::HashMap;

/// xorshift64* (same generator family as aether-sim's traces).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
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

const SEED: u64 = 0xae7e_5eed_2026_1204;

/// A numeric-looking string with a random mutation: the inputs a parser gets wrong.
fn decimal_like(r: &mut Rng) -> Vec<u8> {
    let mut s = Vec::new();
    for _ in 0..r.below(3) {
        s.push(*r.pick(b" \t\n"));
    }
    if r.chance(40) {
        s.push(*r.pick(b"+-"));
    }
    let int_digits = *r.pick(&[0u64, 1, 1, 2, 5, 6, 10, 20, 40]);
    for _ in 0..int_digits {
        s.push(b'0' + r.below(10) as u8);
    }
    if r.chance(60) {
        s.push(b'.');
        for _ in 0..r.below(16) {
            s.push(b'0' + r.below(10) as u8);
        }
    }
    for _ in 0..r.below(3) {
        s.push(*r.pick(b" \t\n"));
    }
    // Mutations: a stray byte, a NUL, a duplicated sign or dot, an exponent, a truncation.
    match r.below(8) {
        0 => {
            let at = r.below(s.len() as u64 + 1) as usize;
            s.insert(at, r.next() as u8);
        }
        1 => {
            let at = r.below(s.len() as u64 + 1) as usize;
            s.insert(at, 0);
        }
        2 => {
            let at = r.below(s.len() as u64 + 1) as usize;
            s.insert(at, *r.pick(b"+-.eExX"));
        }
        3 => {
            let n = r.below(s.len() as u64 + 1) as usize;
            s.truncate(n);
        }
        _ => {}
    }
    s
}

fn garbage(r: &mut Rng) -> Vec<u8> {
    let n = r.below(48) as usize;
    (0..n).map(|_| if r.chance(50) { *r.pick(b"0123456789.+- \n\t\0eEinfa") } else { r.next() as u8 }).collect()
}

/// What a correct parser must say about `s`, computed independently of `parse_q16` with i128
/// arithmetic: `None` when the grammar rejects it, else the rounded magnitude check result.
fn reference_parse(s: &str) -> Result<i32, ParamError> {
    if s.len() > MAX_INPUT_LEN {
        return Err(ParamError::TooLong);
    }
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    if t.is_empty() {
        return Err(ParamError::Empty);
    }
    let (neg, body) = match t.as_bytes()[0] {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let (ip, fp) = match body.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (body, None),
    };
    let digits_ok = |x: &str| x.bytes().all(|c| c.is_ascii_digit());
    if !digits_ok(ip) || !fp.is_none_or(digits_ok) || ip.len() + fp.map_or(0, str::len) == 0 {
        return Err(ParamError::Invalid);
    }
    let ip = ip.trim_start_matches('0');
    if ip.len() > 6 {
        return Err(ParamError::Overflow);
    }
    let int: i128 = if ip.is_empty() { 0 } else { ip.parse().unwrap() };
    // Only the first 12 fractional digits count (module docs); round half away from zero.
    let mut f12: String = fp.unwrap_or("").chars().take(12).collect();
    while f12.len() < 12 {
        f12.push('0');
    }
    let frac: i128 = f12.parse().unwrap();
    let scale: i128 = 1_000_000_000_000;
    let frac_q16 = (frac * 65536 + scale / 2) / scale;
    if int > 32768 {
        return Err(ParamError::Overflow);
    }
    let mag = (int << 16) + frac_q16;
    let v = if neg { -mag } else { mag };
    if v > i32::MAX as i128 || v < i32::MIN as i128 {
        return Err(ParamError::Overflow);
    }
    Ok(v as i32)
}

#[test]
fn parse_q16_agrees_with_a_reference_on_fuzzed_input() {
    let mut r = Rng::new(SEED);
    let (mut ok, mut err) = (0, 0);
    for case in 0..200_000u32 {
        let bytes = if r.chance(70) { decimal_like(&mut r) } else { garbage(&mut r) };
        // The kernel hands the parser only valid UTF-8 (it refuses the rest first).
        let Ok(s) = std::str::from_utf8(&bytes) else { continue };
        let got = parse_q16(s);
        let want = reference_parse(s);
        assert_eq!(got, want, "seed {SEED:#x} case {case}: input {s:?}");
        match got {
            Ok(v) => {
                ok += 1;
                // Round trip: what we print reads back as the same value.
                let mut b = FixedBuf::<48>::new();
                format_q16(v, &mut b).unwrap();
                assert_eq!(parse_q16(b.as_str()), Ok(v), "case {case}: {s:?} -> {v} -> {:?}", b.as_str());
            }
            Err(e) => {
                err += 1;
                assert!(e.to_errno() == -22 || e.to_errno() == -34, "{e:?}");
            }
        }
    }
    // The generator must exercise both sides, or the test proves nothing.
    assert!(ok > 20_000 && err > 20_000, "accepted {ok}, refused {err}");
}

#[test]
fn every_q16_value_formats_and_parses_back() {
    let mut r = Rng::new(SEED ^ 1);
    for _ in 0..200_000 {
        let v = r.next() as i32;
        let mut b = FixedBuf::<48>::new();
        format_q16(v, &mut b).unwrap();
        assert_eq!(parse_q16(b.as_str()), Ok(v), "{v} printed as {:?}", b.as_str());
    }
    for v in [i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX] {
        let mut b = FixedBuf::<48>::new();
        format_q16(v, &mut b).unwrap();
        assert_eq!(parse_q16(b.as_str()), Ok(v));
    }
}

#[test]
fn refused_parameter_writes_change_nothing() {
    let mut r = Rng::new(SEED ^ 2);
    let mut e = Engine::new(Params::DEFAULT);
    let names: Vec<String> = PARAM_NAMES.iter().map(|s| s.to_string()).chain(["".into(), "Phi".into(), "eps".into(),
        "epsilon\0".into(), "lambda4".into(), "bias ".into()]).collect();
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..100_000u32 {
        let name = r.pick(&names).clone();
        let bytes = if r.chance(80) { decimal_like(&mut r) } else { garbage(&mut r) };
        let Ok(val) = std::str::from_utf8(&bytes) else { continue };
        let before = e.params();
        match e.set_param(&name, val) {
            Ok(()) => {
                accepted += 1;
                let id = ParamId::from_name(&name).expect("accepted an unknown name");
                let v = parse_q16(val).expect("accepted an unparsable value");
                let (lo, hi) = id.range();
                assert!((lo..=hi).contains(&v), "case {case}: {name}={val:?} out of range accepted");
                assert_eq!(e.params().get_q16(id), v);
                for other in ParamId::ALL.iter().filter(|o| **o != id) {
                    assert_eq!(e.params().get_q16(*other), before.get_q16(*other), "case {case}: {name} touched {other:?}");
                }
            }
            Err(err) => {
                refused += 1;
                assert_eq!(e.params(), before, "case {case}: refused {name}={val:?} ({err:?}) but params changed");
            }
        }
        // Reading back always works for known names and never for unknown ones.
        let mut b = FixedBuf::<48>::new();
        assert_eq!(e.get_param(&name, &mut b).is_ok(), ParamId::from_name(&name).is_some());
    }
    assert!(accepted > 1_000 && refused > 10_000, "accepted {accepted}, refused {refused}");
}

fn check_decision(d: &aether_core::Decision, capacity: u64, ctx: &str) {
    if !d.prefetch {
        assert_eq!(d.total_sectors(), 0, "{ctx}");
        return;
    }
    assert!(d.count > 0 && d.sectors > 0, "{ctx}: empty prefetch {d:?}");
    for i in 0..d.count {
        let (s, n) = d.extent(i).unwrap_or_else(|| panic!("{ctx}: extent {i} of {d:?} not representable"));
        let end = s.checked_add(n as u64).unwrap_or_else(|| panic!("{ctx}: extent {i} of {d:?} overflows"));
        assert!(end <= capacity, "{ctx}: extent {i} = [{s}, {end}) past capacity {capacity}: {d:?}");
    }
}

#[test]
fn engine_never_panics_and_never_prefetches_past_capacity() {
    let mut r = Rng::new(SEED ^ 3);
    let mut total_prefetches = 0u64;
    for run in 0..300u32 {
        let mut params = Params::DEFAULT;
        if r.chance(50) {
            // Random in-range parameters, including the extremes.
            for id in ParamId::ALL {
                let (lo, hi) = id.range();
                let v = match r.below(4) {
                    0 => lo,
                    1 => hi,
                    _ => lo + r.below((hi as i64 - lo as i64 + 1) as u64) as i32,
                };
                params.set_q16(id, v).unwrap();
            }
        }
        let mut e = Engine::new(params);
        let capacity = match r.below(6) {
            0 => r.below(64),
            1 => 1 + r.below(4096),
            2 => u64::MAX,
            3 => u64::MAX - r.below(1 << 20),
            _ => 1 << (10 + r.below(30)),
        };
        e.set_capacity(capacity);
        // A few cursors that move sequentially, by strides, backwards or at random, so the gate fires.
        let mut cursors: Vec<(u64, i64, u32)> = (0..1 + r.below(6))
            .map(|_| {
                let size = *r.pick(&[1u32, 8, 8, 16, 64, 256, 2048, u32::MAX]);
                let stride = match r.below(4) {
                    0 => size as i64,
                    1 => -(size as i64),
                    2 => size as i64 * (2 + r.below(8) as i64),
                    _ => r.below(1 << 21) as i64 - (1 << 20),
                };
                (r.below(capacity.max(1)), stride, size)
            })
            .collect();
        let mut now = r.below(1 << 40);
        let mut streams: Vec<StreamId> = Vec::new();
        for step in 0..2_000u32 {
            now = now.wrapping_add(r.below(200_000));
            let c = r.below(cursors.len() as u64) as usize;
            let ctx = format!("seed {SEED:#x} run {run} step {step} capacity {capacity}");
            match r.below(20) {
                0..=13 => {
                    let (lba, stride, size) = cursors[c];
                    let (lba, size) =
                        if r.chance(5) { (r.next(), r.next() as u32) } else { (lba, size) };
                    let d = e.on_read(lba, size, now);
                    check_decision(&d, capacity, &ctx);
                    if d.prefetch {
                        total_prefetches += 1;
                        streams.push(d.stream);
                    }
                    cursors[c].0 = cursors[c].0.wrapping_add_signed(stride);
                }
                14 | 15 => e.on_write(r.below(capacity.max(1)), r.next() as u32 >> r.below(32), now),
                16 | 17 => {
                    if let Some(s) = streams.pop() {
                        let o = *r.pick(&[Outcome::Timely, Outcome::Late, Outcome::Wasted]);
                        e.on_feedback(s, o);
                    } else {
                        e.on_feedback(StreamId(r.next() as u32), Outcome::Wasted);
                    }
                }
                18 => e.record_latency(if r.chance(10) { r.next() } else { r.below(5_000_000) }),
                _ => {
                    if r.chance(5) {
                        e.reset(params);
                    } else if r.chance(10) {
                        // A resize (dm reload of a grown or shrunk device) keeps the streams.
                        let capacity2 = r.below(capacity.max(1)).max(1);
                        e.set_capacity(capacity2);
                        for _ in 0..50 {
                            let (lba, _, size) = cursors[c];
                            check_decision(&e.on_read(lba, size, now), capacity2, &ctx);
                            cursors[c].0 = cursors[c].0.wrapping_add(size as u64);
                        }
                        e.set_capacity(capacity);
                    }
                }
            }
        }
        let st = e.stats();
        assert!(st.reads >= st.gate_fired && st.gate_fired >= st.prefetches, "run {run}: {st:?}");
    }
    assert!(total_prefetches > 10_000, "the generator barely made the gate fire: {total_prefetches}");
}

/// Payload: the block it was read for and that block's write version when the read was reserved.
type Payload = (u64, u32);
type Cache = BlockCache<Payload, Vec<Slot<Payload>>, Vec<u32>>;

fn new_cache(slots: usize, limit: u32) -> Cache {
    let s: Vec<Slot<Payload>> = (0..slots).map(|_| Slot::empty()).collect();
    BlockCache::new(s, vec![0; buckets_for(slots)], limit).unwrap()
}

#[test]
fn block_cache_random_ops_keep_limit_and_never_serve_stale_data() {
    let mut r = Rng::new(SEED ^ 4);
    let (mut hits, mut stale_refused, mut served_blocks) = (0u64, 0u64, 0u64);
    for run in 0..400u32 {
        let slots = 1 + r.below(40) as usize;
        let mut c = new_cache(slots, r.below(slots as u64 + 4) as u32);
        let universe = 1 + r.below(80);
        // Write version per block; bumped by every write, as the target invalidates before it submits.
        let mut version: HashMap<u64, u32> = HashMap::new();
        let mut tickets: Vec<(Ticket, u64, u32)> = Vec::new();
        let mut fences: Vec<FenceId> = Vec::new();
        let mut wasted_by_sink = 0u64;
        for step in 0..1_500u32 {
            let ctx = format!("seed {SEED:#x} run {run} step {step}");
            let mut sink = |_: StreamId, o: Outcome, n: u32| {
                if o == Outcome::Wasted {
                    wasted_by_sink += n as u64
                }
            };
            match r.below(16) {
                0..=3 => {
                    let b = r.below(universe);
                    let v = *version.get(&b).unwrap_or(&0);
                    match c.reserve(b, StreamId(r.below(8) as u32), &mut sink) {
                        Ok(t) => {
                            assert_eq!(c.state_of(b), State::InFlight, "{ctx}");
                            tickets.push((t, b, v));
                        }
                        Err(NoReserve::Present) => assert_ne!(c.state_of(b), State::Free, "{ctx}"),
                        Err(NoReserve::Fenced) => assert!(c.fenced_writes() > 0, "{ctx}"),
                        Err(NoReserve::Full) => {}
                    }
                }
                4..=6 if !tickets.is_empty() => {
                    let k = r.below(tickets.len() as u64) as usize;
                    let (t, b, v) = tickets.swap_remove(k);
                    let fresh = *version.get(&b).unwrap_or(&0) == v;
                    match c.fill(t, (b, v)) {
                        Ok(()) => assert!(fresh, "{ctx}: fill of block {b} accepted after a write to it"),
                        Err(_) => stale_refused += 1,
                    }
                }
                7 if !tickets.is_empty() => {
                    let k = r.below(tickets.len() as u64) as usize;
                    let (t, _, _) = tickets.swap_remove(k);
                    c.abort(t);
                }
                8..=10 => {
                    let first = r.below(universe);
                    let n = 1 + r.below(8) as u32;
                    let max = 1 + r.below(10) as u32;
                    let mut got: Vec<Payload> = Vec::new();
                    let res = c.serve(first, n, max, r.chance(50), &mut sink, |p| got.push(*p));
                    match res {
                        Serve::Hit { blocks, first_use } => {
                            hits += 1;
                            assert!(blocks >= 1 && blocks <= n.min(max) && first_use <= blocks, "{ctx}: {res:?}");
                            assert_eq!(got.len(), blocks as usize, "{ctx}: payloads vs {res:?}");
                            for (k, (pb, pv)) in got.iter().enumerate() {
                                let want = first + k as u64;
                                assert_eq!(*pb, want, "{ctx}: served block {pb} for {want}");
                                let cur = *version.get(&want).unwrap_or(&0);
                                assert_eq!(*pv, cur, "{ctx}: served block {want} filled before a write to it");
                                assert_eq!(c.state_of(want), State::Consumed, "{ctx}");
                            }
                            served_blocks += blocks as u64;
                        }
                        Serve::Miss { valid_prefix, in_flight, covered } => {
                            assert!(got.is_empty(), "{ctx}: a miss handed out payloads");
                            assert!(valid_prefix <= n && in_flight <= n, "{ctx}: {res:?}");
                            // The covered head (valid or in flight) holds the valid prefix.
                            assert!(valid_prefix <= covered && covered <= n, "{ctx}: {res:?}");
                        }
                    }
                }
                11 if r.chance(30) => {
                    // A write: fence and invalidate its range, bump the versions.
                    let first = r.below(universe);
                    let n = if r.chance(10) { u64::MAX - first } else { 1 + r.below(12) };
                    c.invalidate(first, n, &mut sink);
                    for b in first..first.saturating_add(n).min(universe) {
                        *version.entry(b).or_insert(0) += 1;
                        assert!(matches!(c.state_of(b), State::Free), "{ctx}: block {b} survived invalidate");
                    }
                    if r.chance(40) {
                        fences.push(c.fence_begin(first, n));
                    }
                }
                12 if !fences.is_empty() => {
                    let k = r.below(fences.len() as u64) as usize;
                    c.fence_end(fences.swap_remove(k));
                }
                13 => c.set_limit(r.below(slots as u64 + 8) as u32, &mut sink),
                14 => {
                    c.shrink(r.below(6) as u32, &mut sink);
                }
                15 if r.chance(10) => {
                    c.clear();
                }
                _ => {}
            }
            // Invariants after every step.
            let o = c.occupancy();
            assert!(o.limit <= c.capacity(), "{ctx}: {o:?}");
            assert!(o.used() <= c.capacity(), "{ctx}: {o:?}");
            // Over the limit only with nothing evictable left (in-flight reads are never evicted).
            assert!(o.used() <= o.limit || o.unused + o.consumed == 0, "{ctx}: over limit {o:?}");
            let (mut inf, mut un, mut con) = (0, 0, 0);
            for b in 0..universe {
                match c.state_of(b) {
                    State::InFlight => inf += 1,
                    State::Unused => un += 1,
                    State::Consumed => con += 1,
                    State::Free => {}
                }
            }
            assert_eq!((inf, un, con), (o.in_flight, o.unused, o.consumed), "{ctx}: counters vs index");
        }
    }
    assert!(hits > 3_000 && served_blocks > hits && stale_refused > 100,
        "weak run: {hits} hits, {served_blocks} blocks, {stale_refused} stale fills refused");
}
