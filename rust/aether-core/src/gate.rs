//! The adaptive gate: feature angles, `cos 2(theta_k - phi)` observables,
//! a logistic decision and online learning of `phi` and `epsilon`.
//!
//! Model (all quantities dimensionless):
//!
//! * Each feature quality `q_k in [0, 1]` (Q16) is encoded as the angle
//!   `theta_k = (pi/2) (1 - q_k)` of a one-qubit state
//!   `cos(theta)|0> + sin(theta)|1>`; a perfectly predictable feature sits
//!   at `theta = 0`, a useless one at `theta = pi/2`.
//! * Measuring the observable `O(phi) = cos(2 phi) Z + sin(2 phi) X` in that
//!   state gives `<O_k> = cos 2(theta_k - phi)` in `[-1, 1]`.  `phi` rotates
//!   the measurement basis: `<O_k>` is `+1` for `theta_k = phi` and `-1`
//!   for `theta_k = phi +- pi/2`.
//! * `z = sum_k lambda_k <O_k> + b`, `P = sigmoid(z)`; prefetch iff
//!   `P > epsilon_eff`.
//!
//! Feedback with label `y` (1 = the prefetched data was used, timely or
//! late; 0 = wasted) takes one stochastic-gradient step on the Bernoulli
//! log-likelihood `l = y ln P + (1 - y) ln(1 - P)`:
//!
//! ```text
//! dl/dz   = y - P
//! dz/dphi = sum_k 2 lambda_k sin 2(theta_k - phi)
//! phi    <- wrap_pi(phi + eta (y - P) dz/dphi)
//! ```
//!
//! The threshold adapts to the measured waste fraction `w` (EWMA, weight
//! 1/64, over feedback events): `epsilon_eff = epsilon + (epsilon_max -
//! epsilon) w` with `epsilon_max = (1 + epsilon) / 2`, so it always stays in
//! `[epsilon, (1 + epsilon)/2]`.
//!
//! The learned `phi` is bounded to the configured value `+- pi/8` and
//! decays back towards it (see [`Gate::decay`]): learning can tilt the
//! basis but can never close the gate on a perfectly predictable stream,
//! and a gate closed by a burst of waste reopens without labels.

use super::fixed::{
    clamp_i64, cos_q15, rad_q16_to_brad, sat_i32, sigmoid_q16, sin_q15, BRAD_QUARTER,
    HALF_PI_Q16, PI_Q16, Q16_ONE,
};
use super::param::Params;

/// Number of observables (and of lambdas).
pub const N_OBS: usize = 3;

/// Weight of one feedback event in the waste EWMA, as a right shift (1/64).
const WASTE_EWMA_SHIFT: u32 = 6;

/// Result of one gate evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GateEval {
    /// Feature angles `theta_k` in brad (kept for the feedback step).
    pub theta: [u16; N_OBS],
    /// Logit `z` in Q16.
    pub z: i32,
    /// Probability `P = sigmoid(z)` in Q16.
    pub p: u32,
    /// `true` if `P > epsilon_eff`.
    pub fire: bool,
}

/// Encode a Q16 quality `q in [0, 1]` as the angle `(pi/2)(1 - q)` in brad.
#[inline]
pub fn quality_to_theta(q: u32) -> u16 {
    let qc = if q > Q16_ONE as u32 { Q16_ONE as u32 } else { q };
    // qc * 16384 >> 16 <= 16384
    BRAD_QUARTER.wrapping_sub(((qc.wrapping_mul(BRAD_QUARTER as u32)) >> 16) as u16)
}

/// Largest distance (Q16 rad) the learned `phi` may move from the
/// configured one: `pi/8`.  With the default lambdas and bias a stream
/// with perfect features then has `z >= 5 cos(pi/4) - 1 = 2.54`,
/// `P >= 0.92`, above the strictest threshold `epsilon_max = 0.8125`: the
/// learner can never close the gate on a perfectly predictable stream.
pub const PHI_SPAN_Q16: i32 = PI_Q16 / 8;

/// The gate's learned state plus the user parameters it was built from.
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    params: Params,
    /// The configured `phi` (Q16 rad): the prior the learned value is
    /// bounded around and decays back to.
    phi0: i32,
    phi_brad: u16,
    lambda: [i32; N_OBS],
    eps_eff: u32,
    waste_ewma: u32,
    /// Number of feedback steps taken.
    updates: u64,
    /// Bumped whenever `eval` may give a different `z` for the same input.
    epoch: u64,
}

impl Gate {
    /// Every field, by reference, in declaration order. The destructuring has
    /// no `..`, so a new field does not build until it is listed here too: the
    /// kernel driver allocates gates (inside engines) zero-filled and checks from these types
    /// that all-zero bytes are a valid value (`rust/kernel_ext/zeroable.rs`).
    pub fn fields(&self) -> (&Params, &i32, &u16, &[i32; N_OBS], &u32, &u32, &u64, &u64) {
        let Gate { params, phi0, phi_brad, lambda, eps_eff, waste_ewma, updates, epoch } = self;
        (params, phi0, phi_brad, lambda, eps_eff, waste_ewma, updates, epoch)
    }

    /// Build a gate from parameters.
    pub fn new(params: Params) -> Self {
        let mut g = Gate {
            params,
            phi0: 0,
            phi_brad: 0,
            lambda: [0; N_OBS],
            eps_eff: 0,
            waste_ewma: 0,
            updates: 0,
            epoch: 0,
        };
        g.set_params(params);
        g
    }

    /// Replace the parameters; resets the learned waste estimate.
    pub fn set_params(&mut self, params: Params) {
        self.params = params;
        self.phi0 = params.phi;
        self.phi_brad = rad_q16_to_brad(params.phi);
        self.lambda = [params.lambda1, params.lambda2, params.lambda3];
        self.waste_ewma = 0;
        self.eps_eff = params.epsilon.max(0) as u32;
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// Evaluation epoch: `eval(q)` returns the same `z` and `P` for the
    /// same `q` while the epoch is unchanged, so callers may memoise it.
    #[inline]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Current parameters (`phi` reflects online learning).
    pub fn params(&self) -> Params {
        self.params
    }

    /// Effective threshold `epsilon_eff` (Q16).
    pub fn epsilon_eff(&self) -> u32 {
        self.eps_eff
    }

    /// Measured waste fraction EWMA (Q16).
    pub fn waste_fraction(&self) -> u32 {
        self.waste_ewma
    }

    /// Number of feedback steps taken.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Observable `<O> = cos 2(theta - phi)` in Q15.
    #[inline]
    pub fn observable(&self, theta: u16) -> i32 {
        cos_q15(theta.wrapping_sub(self.phi_brad).wrapping_mul(2))
    }

    /// Evaluate the gate for feature qualities `q` (Q16 each).
    #[inline]
    pub fn eval(&self, q: [u32; N_OBS]) -> GateEval {
        let theta = [
            quality_to_theta(q[0]),
            quality_to_theta(q[1]),
            quality_to_theta(q[2]),
        ];
        // lambda (Q16, |.| <= 2^20) * O (Q15, |.| <= 2^15): |.| <= 2^35 per term.
        let mut acc: i64 = 0;
        for (l, t) in self.lambda.iter().zip(theta.iter()) {
            acc = acc.wrapping_add((*l as i64).wrapping_mul(self.observable(*t) as i64));
        }
        let z = sat_i32((acc >> 15).wrapping_add(self.params.bias as i64));
        let p = sigmoid_q16(z);
        GateEval { theta, z, p, fire: p > self.eps_eff }
    }

    /// Feedback on a prefetch that was issued with evaluation `e`.
    ///
    /// `used` is `true` for timely or late use, `false` for waste.  When
    /// `learn_phi` is false (the stream that made the decision is gone) only
    /// the waste estimate and `epsilon_eff` are updated.
    pub fn feedback(&mut self, e: &GateEval, used: bool, learn_phi: bool) {
        self.feedback_n(e, used, learn_phi, 1);
    }

    /// Feedback for `n` extents with the same outcome: the waste EWMA takes
    /// `n` steps (at most 64), `phi` takes one gradient step (one label per
    /// prefetch decision, whatever its size).
    pub fn feedback_n(&mut self, e: &GateEval, used: bool, learn_phi: bool, n: u32) {
        self.updates = self.updates.wrapping_add(1);
        // Waste EWMA in Q16: w += (x - w) / 64, n times.
        let x: i64 = if used { 0 } else { Q16_ONE as i64 };
        let mut w = self.waste_ewma as i64;
        for _ in 0..n.clamp(1, 64) {
            w = clamp_i64(w.wrapping_add((x.wrapping_sub(w)) >> WASTE_EWMA_SHIFT), 0, Q16_ONE as i64);
        }
        self.waste_ewma = w as u32;
        let eps = self.params.epsilon.max(0) as i64;
        let eps_max = (eps.wrapping_add(Q16_ONE as i64)) >> 1;
        let eps_eff = eps.wrapping_add(((eps_max.wrapping_sub(eps)).wrapping_mul(w)) >> 16);
        self.eps_eff = clamp_i64(eps_eff, 0, Q16_ONE as i64) as u32;

        if !learn_phi || self.params.learning_rate == 0 {
            return;
        }
        // err = y - P in Q16, |err| <= 2^16.
        let err = x_used(used).wrapping_sub(e.p as i64);
        // grad = sum 2 lambda_k sin 2(theta_k - phi), Q16: |.| <= 3 * 2 * 2^20 < 2^23.
        let mut grad: i64 = 0;
        for (l, t) in self.lambda.iter().zip(e.theta.iter()) {
            let s = sin_q15(t.wrapping_sub(self.phi_brad).wrapping_mul(2)) as i64;
            grad = grad.wrapping_add(((*l as i64).wrapping_mul(s)) >> 14);
        }
        // step = eta * err * grad, Q16: (2^16 * 2^17) >> 16 = 2^17, * 2^23 = 2^40.
        let step = ((self.params.learning_rate as i64).wrapping_mul(err) >> 16).wrapping_mul(grad) >> 16;
        // One step never exceeds pi/8.
        let step = clamp_i64(step, -(PI_Q16 as i64) / 8, (PI_Q16 as i64) / 8);
        self.set_phi((self.params.phi as i64).wrapping_add(step));
    }

    /// Move the learned `phi` 1/16 of the way back to the configured value
    /// (called every [`super::engine::DECAY_READS`] reads): without it a
    /// gate whose learning closed it would get no labels to reopen.
    pub fn decay(&mut self) {
        let d = (self.phi0 as i64).wrapping_sub(self.params.phi as i64);
        if d == 0 {
            return;
        }
        // Round toward phi0 so that the distance reaches 0.
        let step = if d > 0 { d.saturating_add(15) >> 4 } else { d >> 4 };
        self.set_phi((self.params.phi as i64).wrapping_add(step));
    }

    /// Learned `phi` = `v`, bounded to `phi0 +- PHI_SPAN_Q16` and to the
    /// parameter range `[-pi/2, pi/2]`.
    fn set_phi(&mut self, v: i64) {
        let lo = (self.phi0 as i64).wrapping_sub(PHI_SPAN_Q16 as i64).max(-(HALF_PI_Q16 as i64));
        let hi = (self.phi0 as i64).wrapping_add(PHI_SPAN_Q16 as i64).min(HALF_PI_Q16 as i64);
        self.params.phi = clamp_i64(v, lo, hi) as i32;
        let brad = rad_q16_to_brad(self.params.phi);
        if brad != self.phi_brad {
            self.phi_brad = brad;
            self.epoch = self.epoch.wrapping_add(1);
        }
    }
}

#[inline]
fn x_used(used: bool) -> i64 {
    if used {
        Q16_ONE as i64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theta_encoding() {
        assert_eq!(quality_to_theta(Q16_ONE as u32), 0);
        assert_eq!(quality_to_theta(0), BRAD_QUARTER);
        assert_eq!(quality_to_theta(u32::MAX), 0);
        assert_eq!(quality_to_theta(32768), 8192);
    }

    #[test]
    fn observables_at_default_phi() {
        let g = Gate::new(Params::default());
        assert_eq!(g.observable(0), 32767);
        assert_eq!(g.observable(BRAD_QUARTER), -32767);
        assert_eq!(g.observable(8192), 0);
    }

    #[test]
    fn perfect_features_fire_useless_do_not() {
        let g = Gate::new(Params::default());
        let good = g.eval([65536, 65536, 65536]);
        assert!(good.fire && good.p > 62_000, "{good:?}");
        let bad = g.eval([0, 0, 0]);
        assert!(!bad.fire && bad.p < 200, "{bad:?}");
        // monotone in each feature at phi = 0
        let mut prev = 0;
        for q in (0..=65536u32).step_by(4096) {
            let e = g.eval([q, q, q]);
            assert!(e.p >= prev);
            prev = e.p;
        }
    }

    #[test]
    fn waste_raises_epsilon_within_bounds() {
        let mut g = Gate::new(Params::default());
        let e = g.eval([65536, 65536, 65536]);
        for _ in 0..2000 {
            g.feedback(&e, false, false);
        }
        let eps = Params::default().epsilon as u32;
        let max = (eps + 65536) / 2;
        assert!(g.epsilon_eff() > eps + (max - eps) * 9 / 10, "{}", g.epsilon_eff());
        assert!(g.epsilon_eff() <= max);
        for _ in 0..2000 {
            g.feedback(&e, true, false);
        }
        assert!(g.epsilon_eff() < eps + 200, "{}", g.epsilon_eff());
        assert!(g.epsilon_eff() >= eps);
    }

    #[test]
    fn phi_gradient_step_direction() {
        // Features at theta = pi/4 (q = 0.5), phi = 0: <O> = cos(pi/2) = 0,
        // d<O>/dphi = 2 sin(2 theta) > 0.  Waste must move phi so that z falls:
        // dz/dphi > 0, y - P < 0  =>  phi decreases.
        let p = Params { learning_rate: Q16_ONE / 16, ..Params::default() };
        let mut g = Gate::new(p);
        let e = g.eval([32768, 32768, 32768]);
        let z0 = e.z;
        g.feedback(&e, false, true);
        assert!(g.params().phi < 0, "phi {}", g.params().phi);
        assert!(g.eval([32768, 32768, 32768]).z < z0);
        // and a used outcome moves it back up
        let mut g = Gate::new(p);
        let e = g.eval([32768, 32768, 32768]);
        g.feedback(&e, true, true);
        assert!(g.params().phi > 0);
        assert!(g.eval([32768, 32768, 32768]).z > z0);
    }

    #[test]
    fn phi_stays_wrapped_under_extreme_learning() {
        let p = Params {
            learning_rate: Q16_ONE,
            lambda1: 16 * Q16_ONE,
            lambda2: -16 * Q16_ONE,
            lambda3: 16 * Q16_ONE,
            bias: 16 * Q16_ONE,
            ..Params::default()
        };
        let mut g = Gate::new(p);
        for i in 0..10_000u32 {
            let q = (i.wrapping_mul(2654435761)) >> 15;
            let e = g.eval([q, q / 2, q / 3]);
            g.feedback(&e, i % 3 == 0, true);
            let phi = g.params().phi;
            assert!((-HALF_PI_Q16..=HALF_PI_Q16).contains(&phi));
        }
    }
}
