//! User-visible gate parameters and the shared decimal parser / formatter.
//!
//! Every parameter is a Q16 fixed-point number (`i32`, `1.0 == 65536`).
//! Users read and write them as plain decimals (`"0.625"`), through debugfs,
//! `dmsetup message` or the CLI; all of them go through [`parse_q16`] and
//! [`format_q16`] so that there is exactly one grammar:
//!
//! ```text
//! value := ws* [+-]? digits? ('.' digits?)? ws*     (at least one digit)
//! ```
//!
//! No exponent, no `inf`/`nan`, no hex.  At most [`MAX_INPUT_LEN`] bytes
//! (whitespace included, so a trailing `\n` from `echo` is fine).  The value
//! is rounded to the nearest Q16 step (`1/65536`, ties away from zero); only
//! the first 12 fractional digits take part in rounding.  Formatting prints
//! up to 5 fractional digits with trailing zeros removed, which is enough
//! for an exact round trip (`parse(format(v)) == v` for every Q16 value,
//! because `0.5e-5 < 0.5/65536`).

use super::fixed::{HALF_PI_Q16, Q16_ONE};
use core::fmt::Write;

/// Longest accepted input, in bytes.
pub const MAX_INPUT_LEN: usize = 32;

/// `EINVAL` (Linux errno).
pub const EINVAL: i32 = 22;
/// `ERANGE` (Linux errno).
pub const ERANGE: i32 = 34;

/// Why a parameter could not be set or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamError {
    /// The input was empty or only whitespace.
    Empty,
    /// The input is not a decimal number (garbage, stray characters, no digits).
    Invalid,
    /// The input is longer than [`MAX_INPUT_LEN`] bytes.
    TooLong,
    /// The number does not fit the Q16 format (`|v| >= 32768`).
    Overflow,
    /// The number is well formed but outside the parameter's range.
    OutOfRange,
    /// No parameter has this name.
    UnknownName,
    /// The output sink refused the formatted text.
    Format,
}

impl ParamError {
    /// Negative Linux errno for this error: `-EINVAL` for malformed input
    /// and unknown names, `-ERANGE` for values that do not fit.
    pub fn to_errno(self) -> i32 {
        match self {
            ParamError::Overflow | ParamError::OutOfRange => -ERANGE,
            _ => -EINVAL,
        }
    }

    /// Short human-readable description.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamError::Empty => "empty value",
            ParamError::Invalid => "not a decimal number",
            ParamError::TooLong => "value too long",
            ParamError::Overflow => "number overflows the fixed-point format",
            ParamError::OutOfRange => "value out of range for this parameter",
            ParamError::UnknownName => "unknown parameter",
            ParamError::Format => "formatting failed",
        }
    }
}

impl core::fmt::Display for ParamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Number of fractional digits that take part in rounding.
const FRAC_DIGITS: u32 = 12;
/// `10^FRAC_DIGITS`.
const FRAC_SCALE: u64 = 1_000_000_000_000;

/// Parse a decimal string into Q16 (see the module docs for the grammar).
pub fn parse_q16(input: &str) -> Result<i32, ParamError> {
    if input.len() > MAX_INPUT_LEN {
        return Err(ParamError::TooLong);
    }
    let s = input.trim_matches(|c: char| c.is_ascii_whitespace());
    if s.is_empty() {
        return Err(ParamError::Empty);
    }
    let bytes = s.as_bytes();
    let mut i = 0usize;
    let mut neg = false;
    match bytes.first() {
        Some(b'-') => {
            neg = true;
            i = 1;
        }
        Some(b'+') => i = 1,
        _ => {}
    }
    let mut int_part: u64 = 0;
    let mut digits = 0u32;
    let mut overflow = false;
    while let Some(&c) = bytes.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        int_part = match int_part.checked_mul(10).and_then(|v| v.checked_add(c.wrapping_sub(b'0') as u64)) {
            Some(v) => v,
            None => {
                overflow = true;
                u64::MAX
            }
        };
        digits = digits.saturating_add(1);
        i = i.wrapping_add(1);
    }
    let mut frac: u64 = 0;
    let mut frac_digits = 0u32;
    if bytes.get(i) == Some(&b'.') {
        i = i.wrapping_add(1);
        while let Some(&c) = bytes.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            if frac_digits < FRAC_DIGITS {
                frac = frac.wrapping_mul(10).wrapping_add(c.wrapping_sub(b'0') as u64);
                frac_digits = frac_digits.wrapping_add(1);
            }
            digits = digits.saturating_add(1);
            i = i.wrapping_add(1);
        }
    }
    if digits == 0 || i != bytes.len() {
        return Err(ParamError::Invalid);
    }
    // Scale the fraction to exactly FRAC_DIGITS digits.
    while frac_digits < FRAC_DIGITS {
        frac = frac.wrapping_mul(10);
        frac_digits = frac_digits.wrapping_add(1);
    }
    // frac < 10^12, * 65536 < 6.6e16 < 2^64.
    let frac_q16 = (frac.wrapping_mul(Q16_ONE as u64).wrapping_add(FRAC_SCALE / 2)) / FRAC_SCALE;
    if overflow || int_part > 32768 {
        return Err(ParamError::Overflow);
    }
    let mag = (int_part << 16).wrapping_add(frac_q16); // <= 2^31 + 2^16
    let v: i64 = if neg { (mag as i64).wrapping_neg() } else { mag as i64 };
    if v > i32::MAX as i64 || v < i32::MIN as i64 {
        return Err(ParamError::Overflow);
    }
    Ok(v as i32)
}

/// Write a Q16 value as a decimal (at most 5 fractional digits, trailing
/// zeros removed, `"0"` for zero).
pub fn format_q16<W: Write>(v: i32, w: &mut W) -> core::fmt::Result {
    let mag = v.unsigned_abs() as u64;
    let frac = mag & 0xffff;
    if v < 0 {
        w.write_char('-')?;
    }
    write!(w, "{}", mag >> 16)?;
    if frac == 0 {
        return Ok(());
    }
    // The shortest decimal that `parse_q16` maps back to exactly `frac`, so
    // "0.6" reads back as "0.6". Five digits always suffice (10^-5 < 2^-16).
    // All products stay below 65536 * 10^5 < 2^33.
    let mut scale = 1u64;
    for digits in 1..=5usize {
        scale = scale.wrapping_mul(10);
        let n = frac.wrapping_mul(scale).wrapping_add(1 << 15) >> 16;
        let back = n.wrapping_mul(Q16_ONE as u64).wrapping_add(scale / 2) / scale;
        if back == frac || digits == 5 {
            return write!(w, ".{:0width$}", n, width = digits);
        }
    }
    Ok(())
}

/// Largest magnitude of a lambda or the bias (16.0 in Q16).
const WEIGHT_MAX: i32 = 16 * Q16_ONE;

/// Names of all user-visible parameters, in display order.
pub const PARAM_NAMES: [&str; 7] = [
    "phi",
    "epsilon",
    "lambda1",
    "lambda2",
    "lambda3",
    "bias",
    "learning_rate",
];

/// Identifies one parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamId {
    /// Basis angle, radians.
    Phi,
    /// Prefetch threshold on the gate probability.
    Epsilon,
    /// Weight of the Chebyshev observable.
    Lambda1,
    /// Weight of the stride-majority observable.
    Lambda2,
    /// Weight of the steady-velocity observable.
    Lambda3,
    /// Bias of the logistic gate.
    Bias,
    /// Step size of the online update of `phi`.
    LearningRate,
}

impl ParamId {
    /// All ids, in the same order as [`PARAM_NAMES`].
    pub const ALL: [ParamId; 7] = [
        ParamId::Phi,
        ParamId::Epsilon,
        ParamId::Lambda1,
        ParamId::Lambda2,
        ParamId::Lambda3,
        ParamId::Bias,
        ParamId::LearningRate,
    ];

    /// Look a parameter up by name (exact, case-sensitive, surrounding
    /// ASCII whitespace ignored).
    pub fn from_name(name: &str) -> Option<ParamId> {
        let n = name.trim_matches(|c: char| c.is_ascii_whitespace());
        PARAM_NAMES
            .iter()
            .zip(ParamId::ALL.iter())
            .find(|(s, _)| **s == n)
            .map(|(_, id)| *id)
    }

    /// The parameter's name.
    pub fn name(self) -> &'static str {
        match self {
            ParamId::Phi => "phi",
            ParamId::Epsilon => "epsilon",
            ParamId::Lambda1 => "lambda1",
            ParamId::Lambda2 => "lambda2",
            ParamId::Lambda3 => "lambda3",
            ParamId::Bias => "bias",
            ParamId::LearningRate => "learning_rate",
        }
    }

    /// Inclusive range `(min, max)` in Q16.
    pub fn range(self) -> (i32, i32) {
        match self {
            // cos 2(theta - phi) has period pi, so [-pi/2, pi/2] is the whole circle.
            ParamId::Phi => (-HALF_PI_Q16, HALF_PI_Q16),
            ParamId::Epsilon => (0, Q16_ONE),
            ParamId::Lambda1 | ParamId::Lambda2 | ParamId::Lambda3 => (-WEIGHT_MAX, WEIGHT_MAX),
            ParamId::Bias => (-WEIGHT_MAX, WEIGHT_MAX),
            ParamId::LearningRate => (0, Q16_ONE),
        }
    }
}

/// The gate parameters, all in Q16.  See `Documentation/algorithm.rst`
/// for units and for why each default was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Basis angle phi, Q16 radians in `[-pi/2, pi/2]`.  Default 0.
    pub phi: i32,
    /// Base threshold epsilon, Q16 probability in `[0, 1]`.  Default 0.625.
    pub epsilon: i32,
    /// lambda1: weight of the Chebyshev observable.  Default 2.
    pub lambda1: i32,
    /// lambda2: weight of the stride-majority observable.  Default 2.
    pub lambda2: i32,
    /// lambda3: weight of the steady-velocity observable.  Default 1.
    pub lambda3: i32,
    /// Gate bias b.  Default -1.
    pub bias: i32,
    /// Learning rate of the phi update, Q16 in `[0, 1]`.  Default 1/256.
    pub learning_rate: i32,
}

impl Default for Params {
    fn default() -> Self {
        Params::DEFAULT
    }
}

impl Params {
    /// Default parameter set.
    pub const DEFAULT: Params = Params {
        phi: 0,
        epsilon: 40_960,        // 0.625
        lambda1: 2 * Q16_ONE,   // 2.0
        lambda2: 2 * Q16_ONE,   // 2.0
        lambda3: Q16_ONE,       // 1.0
        bias: -65_536,          // -1.0
        learning_rate: 256,     // 0.00390625 = 1/256
    };

    /// Names of all parameters (same as [`PARAM_NAMES`]).
    pub fn names() -> &'static [&'static str] {
        &PARAM_NAMES
    }

    /// Raw Q16 value of a parameter.
    pub fn get_q16(&self, id: ParamId) -> i32 {
        match id {
            ParamId::Phi => self.phi,
            ParamId::Epsilon => self.epsilon,
            ParamId::Lambda1 => self.lambda1,
            ParamId::Lambda2 => self.lambda2,
            ParamId::Lambda3 => self.lambda3,
            ParamId::Bias => self.bias,
            ParamId::LearningRate => self.learning_rate,
        }
    }

    /// Set a raw Q16 value, checking the parameter's range.
    pub fn set_q16(&mut self, id: ParamId, v: i32) -> Result<(), ParamError> {
        let (lo, hi) = id.range();
        if v < lo || v > hi {
            return Err(ParamError::OutOfRange);
        }
        match id {
            ParamId::Phi => self.phi = v,
            ParamId::Epsilon => self.epsilon = v,
            ParamId::Lambda1 => self.lambda1 = v,
            ParamId::Lambda2 => self.lambda2 = v,
            ParamId::Lambda3 => self.lambda3 = v,
            ParamId::Bias => self.bias = v,
            ParamId::LearningRate => self.learning_rate = v,
        }
        Ok(())
    }

    /// Parse `value` as a decimal and set parameter `name`.
    ///
    /// On error nothing is changed.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ParamError> {
        let id = ParamId::from_name(name).ok_or(ParamError::UnknownName)?;
        let v = parse_q16(value)?;
        self.set_q16(id, v)
    }

    /// Format parameter `name` as a decimal into `w`.
    pub fn get<W: Write>(&self, name: &str, w: &mut W) -> Result<(), ParamError> {
        let id = ParamId::from_name(name).ok_or(ParamError::UnknownName)?;
        format_q16(self.get_q16(id), w).map_err(|_| ParamError::Format)
    }

    /// Write every parameter as `name=value\n` lines.
    pub fn write_all<W: Write>(&self, w: &mut W) -> Result<(), ParamError> {
        for id in ParamId::ALL.iter() {
            w.write_str(id.name()).map_err(|_| ParamError::Format)?;
            w.write_char('=').map_err(|_| ParamError::Format)?;
            format_q16(self.get_q16(*id), w).map_err(|_| ParamError::Format)?;
            w.write_char('\n').map_err(|_| ParamError::Format)?;
        }
        Ok(())
    }
}

/// A fixed-capacity `core::fmt::Write` sink (no allocation), useful for
/// formatting parameters into a kernel buffer or in tests.
#[derive(Debug)]
pub struct FixedBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> FixedBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        FixedBuf { buf: [0; N], len: 0 }
    }
    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
    /// The text written so far.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
    /// Forget the contents.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl<const N: usize> Default for FixedBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Write for FixedBuf<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(core::fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(v: i32) -> FixedBuf<48> {
        let mut b = FixedBuf::<48>::new();
        format_q16(v, &mut b).unwrap();
        b
    }

    #[test]
    fn parse_basic() {
        assert_eq!(parse_q16("0.625"), Ok(40_960));
        assert_eq!(parse_q16("1"), Ok(65_536));
        assert_eq!(parse_q16("-1.5"), Ok(-98_304));
        assert_eq!(parse_q16("+2."), Ok(131_072));
        assert_eq!(parse_q16(".5"), Ok(32_768));
        assert_eq!(parse_q16("  0.25\n"), Ok(16_384));
        assert_eq!(parse_q16("0"), Ok(0));
        assert_eq!(parse_q16("-0"), Ok(0));
        assert_eq!(parse_q16("0.00001"), Ok(1)); // 0.65536 rounds to 1
        assert_eq!(parse_q16("0.000007"), Ok(0)); // 0.46 rounds to 0
        assert_eq!(parse_q16("32767.99998"), Ok(i32::MAX));
        assert_eq!(parse_q16("-32768"), Ok(i32::MIN));
        assert_eq!(parse_q16("000000000000000000000000000001"), Ok(65_536));
    }

    #[test]
    fn parse_errors() {
        assert_eq!(parse_q16(""), Err(ParamError::Empty));
        assert_eq!(parse_q16(" \n\t"), Err(ParamError::Empty));
        for g in ["abc", "1.2.3", "1e3", "0x10", "--1", "+-1", "-", "+", ".", "1 2", "nan", "inf", "1,5", "½", "1.5x", "\u{0}"] {
            assert_eq!(parse_q16(g), Err(ParamError::Invalid), "{g:?}");
        }
        assert_eq!(parse_q16("32768"), Err(ParamError::Overflow));
        assert_eq!(parse_q16("32768.0"), Err(ParamError::Overflow));
        assert_eq!(parse_q16("-32768.00001"), Err(ParamError::Overflow));
        assert_eq!(parse_q16("32767.999999"), Err(ParamError::Overflow)); // rounds up to 2^31
        assert_eq!(parse_q16("99999999999999999999999"), Err(ParamError::Overflow));
        let long = "0.000000000000000000000000000000001";
        assert!(long.len() > MAX_INPUT_LEN);
        assert_eq!(parse_q16(long), Err(ParamError::TooLong));
        assert_eq!(ParamError::TooLong.to_errno(), -EINVAL);
        assert_eq!(ParamError::Overflow.to_errno(), -ERANGE);
        assert_eq!(ParamError::OutOfRange.to_errno(), -ERANGE);
        assert_eq!(ParamError::Invalid.to_errno(), -EINVAL);
    }

    #[test]
    fn format_basic() {
        assert_eq!(fmt(40_960).as_str(), "0.625");
        assert_eq!(fmt(0).as_str(), "0");
        assert_eq!(fmt(-98_304).as_str(), "-1.5");
        assert_eq!(fmt(65_536).as_str(), "1");
        assert_eq!(fmt(1).as_str(), "0.00002");
        assert_eq!(fmt(-1).as_str(), "-0.00002");
        assert_eq!(fmt(i32::MIN).as_str(), "-32768");
        assert_eq!(fmt(i32::MAX).as_str(), "32767.99998");
        assert_eq!(fmt(65_535).as_str(), "0.99998");
    }

    #[test]
    fn roundtrip_many() {
        // every value in [-4, 4] plus a coarse sweep of the whole range
        let mut v: i64 = -4 * 65_536;
        while v <= 4 * 65_536 {
            let b = fmt(v as i32);
            assert_eq!(parse_q16(b.as_str()), Ok(v as i32), "{}", b.as_str());
            v += 1;
        }
        let mut v: i64 = i32::MIN as i64;
        while v <= i32::MAX as i64 {
            let b = fmt(v as i32);
            assert_eq!(parse_q16(b.as_str()), Ok(v as i32), "{}", b.as_str());
            v += 65_521;
        }
    }

    #[test]
    fn format_is_shortest_round_trip() {
        // Every Q16 fraction (and its negative) formats to a decimal that
        // parses back to exactly the same value.
        for q in (0..=0xffff_i32).chain([65536, 3 * 65536 + 1, -1, -98_304, i32::MAX, i32::MIN + 1]) {
            for v in [q, q.wrapping_neg()] {
                let mut b = FixedBuf::<32>::new();
                format_q16(v, &mut b).unwrap();
                assert_eq!(parse_q16(b.as_str()), Ok(v), "{} -> {}", v, b.as_str());
            }
        }
        // What a user typed comes back as typed.
        for s in ["0.6", "0.1", "0.7", "0.25", "0.625", "-1.5", "2", "0.0039", "15.99"] {
            let mut b = FixedBuf::<32>::new();
            format_q16(parse_q16(s).unwrap(), &mut b).unwrap();
            assert_eq!(b.as_str(), s);
        }
    }

    #[test]
    fn params_set_get() {
        let mut p = Params::default();
        let mut b = FixedBuf::<32>::new();
        p.get("epsilon", &mut b).unwrap();
        assert_eq!(b.as_str(), "0.625");
        p.set("epsilon", "0.75\n").unwrap();
        assert_eq!(p.epsilon, 49_152);
        assert_eq!(p.set("epsilon", "1.5"), Err(ParamError::OutOfRange));
        assert_eq!(p.set("epsilon", "-0.1"), Err(ParamError::OutOfRange));
        assert_eq!(p.set("epsilon", "junk"), Err(ParamError::Invalid));
        assert_eq!(p.set("epsilon", ""), Err(ParamError::Empty));
        assert_eq!(p.epsilon, 49_152, "failed sets must not change the value");
        assert_eq!(p.set("nope", "1"), Err(ParamError::UnknownName));
        assert_eq!(p.set("phi", "1.6"), Err(ParamError::OutOfRange));
        p.set("phi", "-1.5").unwrap();
        p.set("lambda3", "-16").unwrap();
        assert_eq!(p.set("lambda3", "16.00002"), Err(ParamError::OutOfRange));
        assert_eq!(Params::names().len(), 7);
        for n in Params::names() {
            let mut b = FixedBuf::<32>::new();
            p.get(n, &mut b).unwrap();
            let v = b.as_str();
            let mut q = p;
            q.set(n, v).unwrap();
            assert_eq!(q, p, "round trip of {n}");
        }
        let mut all = FixedBuf::<256>::new();
        Params::default().write_all(&mut all).unwrap();
        assert_eq!(
            all.as_str(),
            "phi=0\nepsilon=0.625\nlambda1=2\nlambda2=2\nlambda3=1\nbias=-1\nlearning_rate=0.0039\n"
        );
        // A sink that is too small reports Format instead of panicking.
        let mut tiny = FixedBuf::<1>::new();
        assert_eq!(Params::default().get("bias", &mut tiny), Err(ParamError::Format));
    }
}
