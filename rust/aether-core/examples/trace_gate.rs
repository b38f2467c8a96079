//! Print the gate probability per request of a sequential stream
//! (`cargo run -p aether-core --example trace_gate -- [lambda1 lambda2 lambda3 bias]`).
use aether_core::{Engine, Params};
fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let mut p = Params::default();
    for (n, v) in ["lambda1", "lambda2", "lambda3", "bias"].iter().zip(a.iter()) {
        p.set(n, v).unwrap();
    }
    let mut e = Engine::new(p);
    for i in 0..12u64 {
        let d = e.on_read(1 << 20 | (i * 32), 32, i * 20_000);
        println!("req {:2}  P = {:.3}  prefetch = {} count = {}", i + 1, d.probability as f64 / 65536.0, d.prefetch, d.count);
    }
}
