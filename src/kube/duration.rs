//! `metav1.Duration`: a Go `time.Duration` (signed nanoseconds) written as a string in Go's syntax.
//!
//! Kubernetes marshals it with Go's `Duration.String()` (`4m0s`, `24h0m0s`, `1.5s`, `300ms`) and
//! unmarshals it with `time.ParseDuration` (`4m`, `1h30m`, `.5s`, units ns us µs ms s m h). Both are
//! reproduced here so that a rendered value reads exactly as kubeadm would print it.

use super::Error;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Duration {
    nanos: i64,
}

const NS: u128 = 1;
const US: u128 = 1_000;
const MS: u128 = 1_000_000;
const S: u128 = 1_000_000_000;
const M: u128 = 60 * S;
const H: u128 = 60 * M;

impl Duration {
    pub const fn from_nanos(nanos: i64) -> Self {
        Duration { nanos }
    }
    pub const fn from_secs(secs: i64) -> Self {
        Duration { nanos: secs * S as i64 }
    }
    pub const fn from_mins(mins: i64) -> Self {
        Duration::from_secs(mins * 60)
    }
    pub const fn from_hours(hours: i64) -> Self {
        Duration::from_secs(hours * 3600)
    }
    pub const fn as_nanos(&self) -> i64 {
        self.nanos
    }
    /// As a `std::time::Duration`; `None` when negative.
    pub fn to_std(&self) -> Option<std::time::Duration> {
        u64::try_from(self.nanos).ok().map(std::time::Duration::from_nanos)
    }
}

impl FromStr for Duration {
    type Err = Error;

    /// Go's `time.ParseDuration`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::BadDuration(s.to_string());
        let (neg, mut rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        if rest == "0" {
            return Ok(Duration::default());
        }
        if rest.is_empty() {
            return Err(bad());
        }
        let mut total: u128 = 0;
        while !rest.is_empty() {
            // [0-9]*(\.[0-9]*)?
            let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (int_digits, after) = rest.split_at(int_len);
            let (frac_digits, after) = match after.strip_prefix('.') {
                Some(a) => {
                    let n = a.bytes().take_while(u8::is_ascii_digit).count();
                    a.split_at(n)
                }
                None => ("", after),
            };
            if int_digits.is_empty() && frac_digits.is_empty() {
                return Err(bad());
            }
            // the unit: everything up to the next digit or '.'
            let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            let mult = match unit {
                "ns" => NS,
                "us" | "\u{b5}s" | "\u{3bc}s" => US,
                "ms" => MS,
                "s" => S,
                "m" => M,
                "h" => H,
                _ => return Err(bad()),
            };
            let int: u128 = if int_digits.is_empty() { 0 } else { int_digits.parse().map_err(|_| bad())? };
            let mut v = int.checked_mul(mult).ok_or_else(bad)?;
            // Fraction: exact for up to 9 digits of sub-unit precision, further digits truncated (as Go).
            let mut scale: u128 = 1;
            let mut frac: u128 = 0;
            for d in frac_digits.bytes().take(18) {
                frac = frac * 10 + u128::from(d - b'0');
                scale *= 10;
            }
            v += frac * mult / scale;
            total = total.checked_add(v).ok_or_else(bad)?;
            rest = after;
        }
        let limit: u128 = if neg { 1u128 << 63 } else { (1u128 << 63) - 1 };
        if total > limit {
            return Err(bad());
        }
        let nanos = if neg { (total as i128).wrapping_neg() as i64 } else { total as i64 };
        Ok(Duration { nanos })
    }
}

impl fmt::Display for Duration {
    /// Go's `Duration.String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let neg = self.nanos < 0;
        let u = u128::from(self.nanos.unsigned_abs());
        let sign = if neg { "-" } else { "" };
        if u == 0 {
            return f.write_str("0s");
        }
        if u < S {
            let (unit, per, digits) = if u < US {
                return write!(f, "{sign}{u}ns");
            } else if u < MS {
                ("\u{b5}s", US, 3)
            } else {
                ("ms", MS, 6)
            };
            return write!(f, "{sign}{}{unit}", frac(u, per, digits));
        }
        let secs = frac(u % M, S, 9);
        let mins = (u / M) % 60;
        let hours = u / H;
        if hours > 0 {
            write!(f, "{sign}{hours}h{mins}m{secs}s")
        } else if u >= M {
            write!(f, "{sign}{mins}m{secs}s")
        } else {
            write!(f, "{sign}{secs}s")
        }
    }
}

/// `v / per` with up to `digits` fractional digits, trailing zeros (and a bare '.') dropped.
fn frac(v: u128, per: u128, digits: usize) -> String {
    let int = v / per;
    let rem = v % per;
    if rem == 0 {
        return int.to_string();
    }
    let f = format!("{rem:0digits$}");
    format!("{int}.{}", f.trim_end_matches('0'))
}

impl serde::Serialize for Duration {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> i64 {
        s.parse::<Duration>().unwrap_or_else(|e| panic!("{s}: {e}")).as_nanos()
    }

    #[test]
    fn formats_like_go() {
        // Expected strings are Go's time.Duration.String() outputs.
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1\u{b5}s"),
            (2_200_000, "2.2ms"),
            (300_000_000, "300ms"),
            (1_500_000_000, "1.5s"),
            (4 * 60 * 1_000_000_000, "4m0s"),
            (90 * 1_000_000_000, "1m30s"),
            (24 * 3600 * 1_000_000_000, "24h0m0s"),
            (87600 * 3600 * 1_000_000_000, "87600h0m0s"),
            (3_723_000_000_001, "1h2m3.000000001s"),
            (-1_500_000_000, "-1.5s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (i64::MAX, "2562047h47m16.854775807s"),
        ];
        for &(n, s) in cases {
            assert_eq!(Duration::from_nanos(n).to_string(), s);
            assert_eq!(p(s), n, "{s} round trip");
        }
    }

    #[test]
    fn parses_like_go() {
        assert_eq!(p("4m"), 240_000_000_000);
        assert_eq!(p("1h30m"), 5_400_000_000_000);
        assert_eq!(p(".5s"), 500_000_000);
        assert_eq!(p("1.s"), 1_000_000_000);
        assert_eq!(p("+5s"), 5_000_000_000);
        assert_eq!(p("-0"), 0);
        assert_eq!(p("0"), 0);
        assert_eq!(p("100us"), 100_000);
        assert_eq!(p("100\u{3bc}s"), 100_000);
        assert_eq!(p("1h1m1s1ms1us1ns"), 3_661_001_001_001);
        assert_eq!(p("0.1234567891s"), 123_456_789);
    }

    #[test]
    fn refuses_what_go_refuses() {
        for s in ["", "1", "s", ".s", "1x", "1.2.3s", "-", "1h 2m", "9223372036854775808ns", "3000000h"] {
            assert!(s.parse::<Duration>().is_err(), "{s:?} should be refused");
        }
        let e = "4 minutes".parse::<Duration>().unwrap_err().to_string();
        assert!(e.contains("4m0s"), "{e}");
    }

    #[test]
    fn serde_is_a_string() {
        let d: Duration = serde_yaml_ng::from_str("\"24h\"").unwrap();
        assert_eq!(serde_yaml_ng::to_string(&d).unwrap().trim(), "24h0m0s");
        assert!(serde_yaml_ng::from_str::<Duration>("240").is_err());
        assert_eq!(Duration::from_mins(4).to_std(), Some(std::time::Duration::from_secs(240)));
        assert_eq!(Duration::from_secs(-1).to_std(), None);
    }
}
