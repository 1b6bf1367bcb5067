//! Kubernetes resource quantities (`100m`, `1Gi`, `1e3`, `0.5`): parsing, exact comparison,
//! addition, rounding and the canonical text the API server prints.
//!
//! A quantity is held exactly as `mantissa * 10^exp10` (with `i128` mantissa), plus the
//! format its suffix implies (decimal SI, binary SI or decimal exponent), which decides how
//! it is printed back.

use serde_json::Value;
use std::cmp::Ordering;

/// Upstream's parse error for strings that are not quantities at all.
pub const ERR_FORMAT_WRONG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
/// Upstream's parse error for an unreadable numeric part.
pub const ERR_NUMERIC: &str = "unable to parse numeric part of quantity";
/// Upstream's parse error for an unknown suffix.
pub const ERR_SUFFIX: &str = "unable to parse quantity's suffix";

/// How a quantity prints its suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `k`, `M`, `m`, `n`, ... (base 10 SI suffixes).
    DecimalSI,
    /// `Ki`, `Mi`, `Gi`, ... (base 2 suffixes).
    BinarySI,
    /// `e3`, `E6`, ...
    DecimalExponent,
}

/// A parsed quantity.
#[derive(Clone, Debug)]
pub struct Quantity {
    mantissa: i128,
    exp10: i32,
    /// The suffix family of the input.
    pub format: Format,
    /// The input text when upstream would keep it verbatim (already canonical).
    cached: Option<String>,
}

const NANO: i32 = -9;
const MILLI: i32 = -3;
/// Largest value upstream stores (2^63 - 1); larger quantities are capped.
const MAX_ALLOWED: i128 = i64::MAX as i128;

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl Quantity {
    /// Parses a quantity string the way `resource.ParseQuantity` does.
    pub fn parse(s: &str) -> Result<Quantity, &'static str> {
        if s.is_empty() {
            return Err(ERR_FORMAT_WRONG);
        }
        if s == "0" {
            return Ok(Quantity {
                mantissa: 0,
                exp10: 0,
                format: Format::DecimalSI,
                cached: Some("0".into()),
            });
        }
        let parts = split_quantity(s)?;
        let (base, exponent, format) = interpret_suffix(parts.suffix).ok_or(ERR_SUFFIX)?;

        // Exact decimal value of the numeric part: digits * 10^-len(denom).
        let digits = format!("{}{}", parts.num, parts.denom);
        let digits = digits.trim_start_matches('0');
        let mut mantissa: i128 = 0;
        let mut exp10: i32 = -(parts.denom.len() as i32);
        // Very long inputs: keep the 37 most significant digits, rounding the rest up (the
        // value is then capped or rounded to nano below anyway).
        let mut dropped_nonzero = false;
        for (i, c) in digits.bytes().enumerate() {
            if i < 37 {
                mantissa = mantissa * 10 + i128::from(c - b'0');
            } else {
                exp10 += 1;
                dropped_nonzero |= c != b'0';
            }
        }
        if dropped_nonzero {
            mantissa += 1;
        }
        if base == 10 {
            exp10 += exponent;
        } else {
            // binary: multiply by 2^exponent exactly
            for _ in 0..exponent {
                mantissa = mantissa.checked_mul(2).ok_or(ERR_NUMERIC)?;
                if mantissa > MAX_ALLOWED * 1_000_000_000_000 {
                    break;
                }
            }
        }
        if !parts.positive {
            mantissa = -mantissa;
        }
        let mut q = Quantity {
            mantissa,
            exp10,
            format,
            cached: None,
        };
        q.normalize();

        // Upstream's fast path keeps the original text when it already looks canonical.
        let precision_ok = match format {
            Format::DecimalSI | Format::DecimalExponent => (parts.num.len() + parts.denom.len()) <= 18,
            Format::BinarySI => exponent >= 0 && parts.denom.is_empty() && parts.num.len() < 15,
        };
        let scale = if base == 10 {
            exponent - parts.denom.len() as i32
        } else {
            0
        };
        if precision_ok && scale >= NANO {
            let shifted = format!("{}{}", parts.num, parts.denom);
            let canonical_looking = match format {
                Format::BinarySI => {
                    let v: i128 = shifted.parse().unwrap_or(0);
                    exponent % 10 == 0 && (v & 0x07) != 0
                }
                _ => scale % 3 == 0 && !shifted.ends_with("000") && !shifted.starts_with('0'),
            };
            if canonical_looking {
                q.cached = Some(s.to_string());
            }
            return Ok(q);
        }

        // Slow path: round non-zero values up to nano, cap at the maximum.
        if q.mantissa != 0 && q.exp10 < NANO {
            q.round_up_to(NANO);
        }
        if q.cmp_abs_to_max() == Ordering::Greater {
            q.mantissa = if q.mantissa < 0 { -MAX_ALLOWED } else { MAX_ALLOWED };
            q.exp10 = 0;
        }
        if q.format == Format::BinarySI && q.mantissa > 0 && q.cmp(&Quantity::from_int(1)) == Ordering::Less {
            q.format = Format::DecimalSI;
        }
        Ok(q)
    }

    /// Reads a quantity from JSON (a string, or a number as YAML often produces).
    pub fn from_json(v: &Value) -> Result<Quantity, &'static str> {
        match v {
            Value::String(s) => Quantity::parse(s.trim()),
            Value::Number(n) => Quantity::parse(&n.to_string()),
            _ => Err(ERR_FORMAT_WRONG),
        }
    }

    /// An integer quantity in decimal SI format.
    pub fn from_int(v: i64) -> Quantity {
        let mut q = Quantity {
            mantissa: i128::from(v),
            exp10: 0,
            format: Format::DecimalSI,
            cached: None,
        };
        q.normalize();
        q
    }

    fn normalize(&mut self) {
        if self.mantissa == 0 {
            self.exp10 = 0;
            return;
        }
        while self.mantissa % 10 == 0 {
            self.mantissa /= 10;
            self.exp10 += 1;
        }
    }

    fn cmp_abs_to_max(&self) -> Ordering {
        let abs = Quantity {
            mantissa: self.mantissa.abs(),
            exp10: self.exp10,
            format: self.format,
            cached: None,
        };
        abs.cmp(&Quantity::from_int(i64::MAX))
    }

    /// True for zero.
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// True below zero.
    pub fn is_negative(&self) -> bool {
        self.mantissa < 0
    }

    /// Rounds away from zero to `10^scale` (upstream `RoundUp`); returns whether exact.
    fn round_up_to(&mut self, scale: i32) -> bool {
        if self.exp10 >= scale || self.mantissa == 0 {
            return true;
        }
        let drop = (scale - self.exp10) as u32;
        let neg = self.mantissa < 0;
        let abs = self.mantissa.unsigned_abs();
        let (q, exact) = match pow10(drop) {
            Some(p) => {
                let p = p as u128;
                (abs / p + u128::from(!abs.is_multiple_of(p)), abs.is_multiple_of(p))
            }
            None => (1, false),
        };
        let q = q as i128;
        self.mantissa = if neg { -q } else { q };
        self.exp10 = scale;
        self.cached = None;
        self.normalize();
        exact
    }

    /// Rounds up to milli precision, as defaulting does for resource lists.
    pub fn round_up_milli(&mut self) {
        if self.exp10 < MILLI {
            self.round_up_to(MILLI);
        }
    }

    /// Value in thousandths, rounded up (`MilliValue`), saturating at the range of `i64` as
    /// upstream's does: sums of many such values never overflow an `i128`.
    pub fn milli_value(&self) -> i128 {
        let e = self.exp10 + 3;
        let v = if e >= 0 {
            pow10(e as u32)
                .and_then(|p| self.mantissa.checked_mul(p))
                .unwrap_or(if self.mantissa < 0 { i128::MIN } else { i128::MAX })
        } else {
            let mut c = self.clone();
            c.round_up_to(-3);
            c.mantissa
                .saturating_mul(pow10((c.exp10 + 3).max(0) as u32).unwrap_or(1))
        };
        v.clamp(i128::from(i64::MIN), i128::from(i64::MAX))
    }

    /// Sum of two quantities (format of `self`).
    pub fn add(&self, other: &Quantity) -> Quantity {
        let e = self.exp10.min(other.exp10);
        let scale = |q: &Quantity| pow10((q.exp10 - e) as u32).and_then(|p| q.mantissa.checked_mul(p));
        match (scale(self), scale(other)) {
            (Some(a), Some(b)) if a.checked_add(b).is_some() => {
                let mut q = Quantity {
                    mantissa: a + b,
                    exp10: e,
                    format: self.format,
                    cached: None,
                };
                q.normalize();
                q
            }
            _ => {
                if self.cmp(other) == Ordering::Greater {
                    self.clone()
                } else {
                    other.clone()
                }
            }
        }
    }

    /// `self - other` (format of `self`; saturating as [`Quantity::add`]).
    pub fn sub(&self, other: &Quantity) -> Quantity {
        let negated = Quantity {
            mantissa: other.mantissa.saturating_neg(),
            exp10: other.exp10,
            format: other.format,
            cached: None,
        };
        self.add(&negated)
    }

    /// The text upstream prints for this quantity.
    pub fn canonical(&self) -> String {
        if let Some(s) = &self.cached {
            return s.clone();
        }
        if self.mantissa == 0 {
            return "0".into();
        }
        let mut format = self.format;
        if format == Format::BinarySI {
            let small = self.cmp(&Quantity::from_int(-1024)) == Ordering::Greater
                && self.cmp(&Quantity::from_int(1024)) == Ordering::Less;
            if small || self.exp10 < 0 {
                format = Format::DecimalSI;
            }
        }
        match format {
            Format::BinarySI => {
                let mut v = self.mantissa;
                let mut ok = true;
                for _ in 0..self.exp10 {
                    match v.checked_mul(10) {
                        Some(n) => v = n,
                        None => {
                            ok = false;
                            break;
                        }
                    }
                }
                if ok {
                    let mut exp = 0;
                    while v % 1024 == 0 && exp < 6 {
                        v /= 1024;
                        exp += 1;
                    }
                    let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp];
                    return format!("{v}{suffix}");
                }
                self.decimal_text(Format::DecimalSI)
            }
            f => self.decimal_text(f),
        }
    }

    fn decimal_text(&self, format: Format) -> String {
        let mut m = self.mantissa;
        let mut e = self.exp10;
        while e.rem_euclid(3) != 0 {
            match m.checked_mul(10) {
                Some(n) => {
                    m = n;
                    e -= 1;
                }
                None => break,
            }
        }
        let suffix = match format {
            Format::DecimalExponent => {
                if e == 0 {
                    String::new()
                } else {
                    format!("e{e}")
                }
            }
            _ => match e {
                -9 => "n".into(),
                -6 => "u".into(),
                -3 => "m".into(),
                0 => String::new(),
                3 => "k".into(),
                6 => "M".into(),
                9 => "G".into(),
                12 => "T".into(),
                15 => "P".into(),
                18 => "E".into(),
                other => format!("e{other}"),
            },
        };
        format!("{m}{suffix}")
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    /// Exact numeric comparison.
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.mantissa.signum(), other.mantissa.signum());
        if a != b {
            return a.cmp(&b);
        }
        if a == 0 {
            return Ordering::Equal;
        }
        let mag = cmp_magnitude(
            self.mantissa.unsigned_abs(),
            self.exp10,
            other.mantissa.unsigned_abs(),
            other.exp10,
        );
        if a < 0 { mag.reverse() } else { mag }
    }
}

/// Compares `m1 * 10^e1` with `m2 * 10^e2` for non-zero magnitudes.
fn cmp_magnitude(m1: u128, e1: i32, m2: u128, e2: i32) -> Ordering {
    let d1 = m1.to_string();
    let d2 = m2.to_string();
    let o1 = d1.len() as i64 + i64::from(e1);
    let o2 = d2.len() as i64 + i64::from(e2);
    if o1 != o2 {
        return o1.cmp(&o2);
    }
    let n = d1.len().max(d2.len());
    let p1 = format!("{d1:0<n$}");
    let p2 = format!("{d2:0<n$}");
    p1.cmp(&p2)
}

struct Parts<'a> {
    positive: bool,
    num: &'a str,
    denom: &'a str,
    suffix: &'a str,
}

/// Splits sign, integer digits (without leading zeros), fraction digits and suffix.
fn split_quantity(s: &str) -> Result<Parts<'_>, &'static str> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut positive = true;
    match b.first() {
        Some(b'-') => {
            positive = false;
            pos = 1;
        }
        Some(b'+') => pos = 1,
        _ => {}
    }
    while pos < b.len() && b[pos] == b'0' {
        pos += 1;
    }
    if pos >= b.len() {
        return Ok(Parts {
            positive,
            num: "0",
            denom: "",
            suffix: "",
        });
    }
    let start = pos;
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let num = if pos == start { "0" } else { &s[start..pos] };
    let mut denom = "";
    if pos < b.len() && b[pos] == b'.' {
        pos += 1;
        let ds = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[ds..pos];
    }
    let suffix_start = pos;
    while pos < b.len() && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < b.len() && (b[pos] == b'-' || b[pos] == b'+') {
        pos += 1;
    }
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < b.len() {
        return Err(ERR_FORMAT_WRONG);
    }
    Ok(Parts {
        positive,
        num,
        denom,
        suffix: &s[suffix_start..],
    })
}

/// Base, exponent and format of a suffix.
fn interpret_suffix(s: &str) -> Option<(u32, i32, Format)> {
    let dec = |e| Some((10, e, Format::DecimalSI));
    let bin = |e| Some((2, e, Format::BinarySI));
    match s {
        "" => dec(0),
        "n" => dec(-9),
        "u" => dec(-6),
        "m" => dec(-3),
        "k" => dec(3),
        "M" => dec(6),
        "G" => dec(9),
        "T" => dec(12),
        "P" => dec(15),
        "E" => dec(18),
        "Ki" => bin(10),
        "Mi" => bin(20),
        "Gi" => bin(30),
        "Ti" => bin(40),
        "Pi" => bin(50),
        "Ei" => bin(60),
        _ => {
            let rest = s.strip_prefix('e').or_else(|| s.strip_prefix('E'))?;
            let e: i64 = rest.parse().ok()?;
            let e = i32::try_from(e).ok()?;
            if !(-400..=400).contains(&e) {
                return None;
            }
            Some((10, e, Format::DecimalExponent))
        }
    }
}

/// Rewrites a quantity value in canonical form (rounding up to milli when `round_milli`);
/// leaves unparseable values untouched for validation to report.
pub fn canonicalize_value(v: &mut Value, round_milli: bool) {
    if let Ok(mut q) = Quantity::from_json(v) {
        if round_milli {
            q.round_up_milli();
        }
        *v = Value::String(q.canonical());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        let mut q = Quantity::parse(s).unwrap();
        q.round_up_milli();
        q.canonical()
    }

    #[test]
    fn parses_and_prints_canonically() {
        let cases = [
            ("100m", "100m"),
            ("0.5", "500m"),
            ("1000m", "1"),
            ("1", "1"),
            ("1000", "1k"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("8Ki", "8Ki"),
            ("1e3", "1e3"),
            ("1E3", "1E3"),
            ("2000e3", "2e6"),
            ("0", "0"),
            ("0m", "0"),
            ("0.0001", "1m"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("123Mi", "123Mi"),
            ("1.0", "1"),
            ("12k", "12k"),
            ("1500k", "1500k"),
            ("0.1Ki", "102400m"),
            ("-100m", "-100m"),
            ("512", "512"),
        ];
        for (input, want) in cases {
            assert_eq!(canon(input), want, "{input}");
        }
    }

    #[test]
    fn rejects_garbage_with_upstream_messages() {
        assert_eq!(Quantity::parse("abc").unwrap_err(), ERR_FORMAT_WRONG);
        assert_eq!(Quantity::parse("").unwrap_err(), ERR_FORMAT_WRONG);
        assert_eq!(Quantity::parse("1Xi").unwrap_err(), ERR_FORMAT_WRONG);
        assert_eq!(Quantity::parse("1ki").unwrap_err(), ERR_SUFFIX);
        assert_eq!(Quantity::parse("1.2.3").unwrap_err(), ERR_FORMAT_WRONG);
    }

    #[test]
    fn compares_exactly_across_suffixes() {
        let q = |s| Quantity::parse(s).unwrap();
        assert!(q("100m") < q("1"));
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1e3"), q("1k"));
        assert!(q("-1") < q("0"));
        assert!(q("0.5") == q("500m"));
        assert_eq!(q("250m").add(&q("750m")), q("1"));
        assert_eq!(q("1.5").milli_value(), 1500);
        assert_eq!(q("1n").milli_value(), 1);
        assert_eq!(q("1e300").milli_value(), i128::from(i64::MAX), "saturates at int64");
        assert_eq!(q("9999999999999999999Ei").milli_value(), i128::from(i64::MAX));
    }

    #[test]
    fn json_numbers_are_quantities() {
        let mut v = serde_json::json!(2);
        canonicalize_value(&mut v, true);
        assert_eq!(v, serde_json::json!("2"));
        let mut v = serde_json::json!(0.5);
        canonicalize_value(&mut v, true);
        assert_eq!(v, serde_json::json!("500m"));
        let mut bad = serde_json::json!("lots");
        canonicalize_value(&mut bad, true);
        assert_eq!(bad, serde_json::json!("lots"));
    }
}
