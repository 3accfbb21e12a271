//! Go's `time.ParseDuration`, which Kuma's protobuf JSON decoder applies to every
//! `google.protobuf.Duration` field (`serviceProbe.interval`, `dpCert.requestTimeout`): `1.5s`,
//! `1m30s`, `300ms`, `-2h`, a bare `0`. Its errors carry Go's words, as Kuma reports them.

/// Why Go refuses a duration, in Go's words (`time: invalid duration "x"`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GoDurationError(String);

const UNITS: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
];

const LIMIT: u64 = 1 << 63;

/// Nanoseconds, signed, as Go's `time.Duration`.
pub fn parse(orig: &str) -> Result<i64, GoDurationError> {
    let invalid = || GoDurationError(format!("time: invalid duration {orig:?}"));
    let mut s = orig;
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut v: u64 = 0;
        for c in &b[..int_len] {
            v = v
                .checked_mul(10)
                .and_then(|x| x.checked_add(u64::from(c - b'0')))
                .filter(|x| *x <= LIMIT)
                .ok_or_else(invalid)?;
        }
        s = &s[int_len..];
        let (mut frac, mut scale, mut frac_len) = (0u64, 1f64, 0);
        if let Some(rest) = s.strip_prefix('.') {
            s = rest;
            let digits = s.bytes().take_while(u8::is_ascii_digit).count();
            // Go keeps reading digits past what a u64 holds, ignoring them.
            let mut overflow = false;
            for c in s[..digits].bytes() {
                if overflow {
                    continue;
                }
                match frac
                    .checked_mul(10)
                    .and_then(|x| x.checked_add(u64::from(c - b'0')))
                {
                    Some(x) if x <= LIMIT => {
                        frac = x;
                        scale *= 10.0;
                    }
                    _ => overflow = true,
                }
            }
            frac_len = digits;
            s = &s[digits..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid());
        }
        let unit_len = s
            .bytes()
            .take_while(|c| !(*c == b'.' || c.is_ascii_digit()))
            .count();
        if unit_len == 0 {
            return Err(GoDurationError(format!(
                "time: missing unit in duration {orig:?}"
            )));
        }
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let Some((_, per)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(GoDurationError(format!(
                "time: unknown unit {unit:?} in duration {orig:?}"
            )));
        };
        if v > LIMIT / per {
            return Err(invalid());
        }
        v *= per;
        if frac > 0 {
            // Go's float arithmetic, for the same rounding of fractions of an hour.
            let part = (frac as f64 * (*per as f64 / scale)) as u64;
            v = v
                .checked_add(part)
                .filter(|x| *x <= LIMIT)
                .ok_or_else(invalid)?;
        }
        total = total
            .checked_add(v)
            .filter(|x| *x <= LIMIT)
            .ok_or_else(invalid)?;
    }
    if neg {
        // -(1 << 63) is the one negative value without a positive twin.
        return Ok(0i64.wrapping_sub_unsigned(total));
    }
    i64::try_from(total).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_go_accepts() {
        const S: i64 = 1_000_000_000;
        for (s, want) in [
            ("0", 0),
            ("-0", 0),
            ("0s", 0),
            ("1s", S),
            ("1.5s", S + S / 2),
            (".5s", S / 2),
            ("1.s", S),
            ("1m30s", 90 * S),
            ("1h", 3600 * S),
            ("300ms", 300_000_000),
            ("1us", 1_000),
            ("1\u{b5}s", 1_000),
            ("1\u{3bc}s", 1_000),
            ("7ns", 7),
            ("-2h", -7200 * S),
            ("+5s", 5 * S),
            ("2h45m", 9900 * S),
            ("9223372036854775807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
        ] {
            assert_eq!(parse(s), Ok(want), "{s:?}");
        }
    }

    #[test]
    fn what_go_refuses_in_its_words() {
        for (s, why) in [
            ("", "time: invalid duration \"\""),
            ("x", "time: invalid duration \"x\""),
            (".s", "time: invalid duration \".s\""),
            ("-", "time: invalid duration \"-\""),
            ("1", "time: missing unit in duration \"1\""),
            ("1d", "time: unknown unit \"d\" in duration \"1d\""),
            ("1 s", "time: unknown unit \" s\" in duration \"1 s\""),
            ("1S", "time: unknown unit \"S\" in duration \"1S\""),
            (
                "9223372036854775808ns",
                "time: invalid duration \"9223372036854775808ns\"",
            ),
            ("3000000h", "time: invalid duration \"3000000h\""),
        ] {
            assert_eq!(parse(s), Err(GoDurationError(why.into())), "{s:?}");
        }
    }
}
