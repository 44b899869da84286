//! Scores and times as decimal text with one or two places, exactly as `{:.1}` and `{:.2}`
//! write them, without the formatter's exact arithmetic on every message.
//!
//! `format!("{:.1}", x)` works on the exact binary value of `x` (big-number arithmetic) so
//! that a tie rounds correctly: 700-800 instructions a number, and each message wrote four
//! or five (its score in X-Spam-Score, X-Spam-Status and the log line, the required score,
//! the time in the log line). Away from a tie, scaling and rounding in floating point gives the same digits:
//! the product is off by at most half a unit in its last place, far less than its distance to
//! the tie. Near one, and for values too large or not finite, the formatter decides.

use std::fmt;

/// Largest scaled magnitude taken on the fast path: below it a unit in the last place is at
/// most 2^-23 (`2^30 * 2^-53`), so [`TIE_MARGIN`] is far wider than any rounding error.
const FAST_LIMIT: f64 = (1u64 << 30) as f64;

/// How far from a tie (a scaled value ending in .5) the fast path must be.
const TIE_MARGIN: f64 = 1e-4;

/// `value` with `places` decimals (at most 2), written as `{:.places$}` writes it.
#[derive(Clone, Copy, Debug)]
pub struct Fixed {
    pub value: f64,
    pub places: u8,
}

/// One decimal: a score.
pub fn tenths(value: f64) -> Fixed {
    Fixed { value, places: 1 }
}

/// Two decimals: milliseconds in a log line.
pub fn hundredths(value: f64) -> Fixed {
    Fixed { value, places: 2 }
}

impl Fixed {
    /// Appends the text to `out`.
    pub fn push_to(self, out: &mut String) {
        let mut buf = [0u8; 24];
        match self.fast(&mut buf) {
            Some(n) => out.push_str(std::str::from_utf8(&buf[..n]).expect("ASCII digits")),
            None => {
                use fmt::Write;
                let _ = write!(out, "{:.*}", usize::from(self.places), self.value);
            }
        }
    }

    /// The text in `buf` and its length, or None where the formatter must decide.
    fn fast(self, buf: &mut [u8; 24]) -> Option<usize> {
        let scale = match self.places {
            1 => 10u64,
            2 => 100,
            _ => return None,
        };
        let scaled = self.value.abs() * scale as f64;
        // NaN is not finite.
        if !scaled.is_finite()
            || scaled >= FAST_LIMIT
            || ((scaled - scaled.trunc()) - 0.5).abs() < TIE_MARGIN
        {
            return None;
        }
        let units = scaled.round() as u64;
        let mut n = 0;
        if self.value.is_sign_negative() {
            buf[n] = b'-';
            n += 1;
        }
        let whole = units / scale;
        let mut digits = [0u8; 20];
        let mut d = digits.len();
        let mut w = whole;
        loop {
            d -= 1;
            digits[d] = b'0' + (w % 10) as u8;
            w /= 10;
            if w == 0 {
                break;
            }
        }
        let len = digits.len() - d;
        buf[n..n + len].copy_from_slice(&digits[d..]);
        n += len;
        buf[n] = b'.';
        n += 1;
        let mut frac = units % scale;
        for i in (0..self.places as usize).rev() {
            buf[n + i] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        Some(n + self.places as usize)
    }
}

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 24];
        match self.fast(&mut buf) {
            Some(n) => f.write_str(std::str::from_utf8(&buf[..n]).expect("ASCII digits")),
            None => write!(f, "{:.*}", usize::from(self.places), self.value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: f64) {
        for places in [1u8, 2] {
            let want = format!("{:.*}", usize::from(places), value);
            let fixed = Fixed { value, places };
            assert_eq!(fixed.to_string(), want, "{value:e} with {places} places");
            let mut pushed = String::from("x");
            fixed.push_to(&mut pushed);
            assert_eq!(pushed[1..], want, "{value:e} with {places} places");
        }
    }

    #[test]
    fn the_text_is_the_formatters() {
        // Ties and near-ties in binary (0.05 is a little above, 0.15 a little below, 0.25
        // and 0.125 exact), negatives that round to zero, the edges of the fast path, and
        // what never takes it.
        for v in [
            0.0,
            -0.0,
            0.05,
            0.15,
            0.25,
            0.35,
            0.125,
            0.375,
            0.005,
            0.015,
            2.675,
            1.005,
            -0.04,
            -0.05,
            -0.049_999,
            0.95,
            0.995,
            9.95,
            99.95,
            999.95,
            1e-300,
            -1e-300,
            5e-324,
            1e7,
            1.07e8,
            1.073_741_82e8,
            1.073_741_83e8,
            1e9,
            1e17,
            1e300,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            check(v);
            check(-v);
        }
        // Every hundredth and thousandth tie up to 1,000, and 400,000 generated values over
        // twenty orders of magnitude.
        for k in 0..200_000u32 {
            check(k as f64 / 200.0);
            check(k as f64 / 2000.0 + 0.0005);
            check(-(k as f64) / 20.0);
        }
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..400_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mantissa = (seed >> 11) as f64 / (1u64 << 53) as f64;
            let exponent = (seed % 21) as i32 - 10;
            let sign = if seed & 1 == 0 { 1.0 } else { -1.0 };
            check(sign * mantissa * 10f64.powi(exponent));
        }
    }

    #[test]
    fn most_scores_and_times_take_the_fast_path() {
        let mut buf = [0u8; 24];
        for v in [0.0, 1.2, -3.4, 5.04, 17.3, 0.37, 1234.56] {
            assert!(tenths(v).fast(&mut buf).is_some(), "{v}");
            assert!(hundredths(v + 0.001).fast(&mut buf).is_some(), "{v}");
        }
        assert!(tenths(0.05).fast(&mut buf).is_none());
        assert!(tenths(f64::NAN).fast(&mut buf).is_none());
        assert!(tenths(1e12).fast(&mut buf).is_none());
    }
}
