//! Host-only checks of the integer tables against a floating-point
//! reference (floats are fine here: this file is never built into the
//! kernel module).

use aether_core::fixed::{cos_q15, rad_q16_to_brad, sigmoid_q16, sin_q15, Q16_ONE};
use aether_core::gate::{quality_to_theta, Gate};
use aether_core::Params;
use std::f64::consts::PI;

#[test]
fn cos_and_sin_tables() {
    let mut worst = 0.0f64;
    for a in 0..=u16::MAX {
        let x = a as f64 * 2.0 * PI / 65536.0;
        let c = cos_q15(a) as f64 / 32767.0;
        let s = sin_q15(a) as f64 / 32767.0;
        worst = worst.max((c - x.cos()).abs()).max((s - x.sin()).abs());
    }
    assert!(worst < 0.0062, "trig table error {worst}");
}

#[test]
fn sigmoid_table() {
    let mut worst = 0.0f64;
    let mut z = -12 * Q16_ONE;
    while z <= 12 * Q16_ONE {
        let f = z as f64 / 65536.0;
        let want = 1.0 / (1.0 + (-f).exp());
        let got = sigmoid_q16(z) as f64 / 65536.0;
        worst = worst.max((got - want).abs());
        z += 37;
    }
    assert!(worst < 0.004, "sigmoid table error {worst}");
}

#[test]
fn brad_conversion() {
    for r in (-205_887..=205_887).step_by(97) {
        let rad = r as f64 / 65536.0;
        let want = (rad / (2.0 * PI) * 65536.0).round().rem_euclid(65536.0) as u16;
        let got = rad_q16_to_brad(r);
        assert!(got.wrapping_sub(want) <= 1 || want.wrapping_sub(got) <= 1, "{r}: {got} vs {want}");
    }
}

/// The integer gate agrees with the real-valued formula
/// `sigmoid(sum lambda_k cos 2(theta_k - phi) + b)`.
#[test]
fn gate_matches_float_model() {
    let p = Params { phi: 13_107, ..Params::default() }; // phi = 0.2 rad
    let g = Gate::new(p);
    let lam = [p.lambda1, p.lambda2, p.lambda3].map(|l| l as f64 / 65536.0);
    let phi = p.phi as f64 / 65536.0;
    let b = p.bias as f64 / 65536.0;
    let mut worst = 0.0f64;
    for i in 0..2000u32 {
        let q = [(i * 33) % 65537, (i * 71) % 65537, (i * 13) % 65537];
        let e = g.eval(q);
        let mut z = b;
        for k in 0..3 {
            let theta = PI / 2.0 * (1.0 - q[k] as f64 / 65536.0);
            // the encoder rounds theta to the brad grid; use the same angle
            let theta_q = quality_to_theta(q[k]) as f64 * 2.0 * PI / 65536.0;
            assert!((theta - theta_q).abs() < 2.0 * PI / 65536.0 * 1.5);
            z += lam[k] * (2.0 * (theta_q - phi)).cos();
        }
        let pf = 1.0 / (1.0 + (-z).exp());
        worst = worst.max((pf - e.p as f64 / 65536.0).abs());
    }
    assert!(worst < 0.02, "gate vs float model: {worst}");
}
