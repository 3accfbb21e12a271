//! Kuma's duration grammar (`1d`, `24h`, `10y`, `0`), and protobuf `Duration`s as Kuma reads them
//! (Go's grammar: `10s`, `1.5s`, `1m30s`).

mod go;

use std::{fmt, time::Duration};

use serde::{Serialize, Serializer};

pub use go::{GoDurationError, parse as parse_go};

/// What Kuma's grammar is, for the `detail` of a refusal (Kuma's reason does not say).
pub const KUMA_GRAMMAR: &str =
    "an integer and one unit of y, w, d, h, m, s, ms (for example 24h), or 0";
/// What Go's grammar is, for the `detail` of a refusal.
pub const GO_GRAMMAR: &str = "decimal numbers, each with a unit of ns, us, ms, s, m or h (for example 10s, 1.5s or 1m30s), or 0";

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Kuma's words; `KUMA_GRAMMAR` says what the format is.
    #[error("has to be a valid format")]
    Format,
    #[error("is too large")]
    Overflow,
}

impl DurationError {
    /// What Meshplane says beyond Kuma's reason.
    pub fn detail(&self) -> Option<&'static str> {
        match self {
            Self::Format => Some(KUMA_GRAMMAR),
            Self::Overflow => None,
        }
    }
}

/// A duration written in Kuma's grammar: one integer and exactly one unit out of `y|w|d|h|m|s|ms`,
/// or a bare `0`. `y` is 365 days. Compound forms such as `1h30m` are refused, as Kuma does.
/// The original text is kept so that resources round-trip unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KumaDuration {
    text: String,
    value: Duration,
}

impl KumaDuration {
    pub fn parse(s: &str) -> Result<Self, DurationError> {
        let value = parse_kuma(s)?;
        Ok(Self {
            text: s.to_string(),
            value,
        })
    }

    /// A duration built by the program, printed in the largest unit that divides it exactly.
    pub fn from_duration(d: Duration) -> Self {
        Self {
            text: format_kuma(d),
            value: d,
        }
    }

    pub fn as_duration(&self) -> Duration {
        self.value
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for KumaDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for KumaDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

const UNITS: &[(&str, u64)] = &[
    // "ms" must be tried before "m" and "s".
    ("ms", 1),
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
];

fn parse_kuma(s: &str) -> Result<Duration, DurationError> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    for (unit, millis) in UNITS {
        if let Some(num) = s.strip_suffix(unit) {
            if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
                return Err(DurationError::Format);
            }
            let n: u64 = num.parse().map_err(|_| DurationError::Overflow)?;
            let ms = n.checked_mul(*millis).ok_or(DurationError::Overflow)?;
            return Ok(Duration::from_millis(ms));
        }
    }
    Err(DurationError::Format)
}

fn format_kuma(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0".to_string();
    }
    for (unit, millis) in UNITS.iter().skip(1).chain(UNITS.iter().take(1)) {
        let m = u128::from(*millis);
        if ms.is_multiple_of(m) {
            return format!("{}{unit}", ms / m);
        }
    }
    format!("{ms}ms")
}

/// A timeout, a protobuf `Duration` to Kuma: Go's grammar (`10s`, `0.5s`, `1m30s`), and Kuma's own
/// (`1d`), which earlier Meshplane versions accepted and stored. Negative timeouts are refused.
/// The original text is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeout {
    text: String,
    value: Duration,
}

/// Why a timeout was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimeoutError {
    /// Go's words, as Kuma's decoder reports them (`bad Duration: time: invalid duration "x"`).
    #[error("bad Duration: {0}")]
    Format(GoDurationError),
    #[error("must not be negative")]
    Negative,
}

impl Timeout {
    pub fn parse(s: &str) -> Result<Self, TimeoutError> {
        let value = match parse_kuma(s) {
            Ok(v) => v,
            Err(_) => {
                let nanos = go::parse(s).map_err(TimeoutError::Format)?;
                let nanos = u64::try_from(nanos).map_err(|_| TimeoutError::Negative)?;
                Duration::from_nanos(nanos)
            }
        };
        Ok(Self {
            text: s.to_string(),
            value,
        })
    }

    pub fn as_duration(&self) -> Duration {
        self.value
    }
}

impl Serialize for Timeout {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// A protobuf `Duration` as Kuma reads it from YAML: Go's grammar, sign included. The original text
/// is kept so that resources round-trip unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoDuration {
    text: String,
    nanos: i64,
}

impl GoDuration {
    pub fn parse(s: &str) -> Result<Self, GoDurationError> {
        Ok(Self {
            text: s.to_string(),
            nanos: go::parse(s)?,
        })
    }

    /// Signed nanoseconds, as Go's `time.Duration`.
    pub fn nanos(&self) -> i64 {
        self.nanos
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kuma_grammar() {
        let cases = [
            ("0", Duration::ZERO),
            ("1d", Duration::from_secs(86400)),
            ("24h", Duration::from_secs(86400)),
            ("10y", Duration::from_secs(10 * 365 * 86400)),
            ("2w", Duration::from_secs(14 * 86400)),
            ("90m", Duration::from_secs(5400)),
            ("30s", Duration::from_secs(30)),
            ("250ms", Duration::from_millis(250)),
        ];
        for (s, want) in cases {
            assert_eq!(
                KumaDuration::parse(s).map(|d| d.as_duration()),
                Ok(want),
                "{s}"
            );
        }
    }

    #[test]
    fn kuma_grammar_refuses_what_kuma_refuses() {
        for s in [
            "", "1h30m", "h", "-1h", "1.5h", "1 h", "1H", "1", "0s0", "abc", "1us", "+1d",
        ] {
            assert_eq!(KumaDuration::parse(s), Err(DurationError::Format), "{s:?}");
        }
        assert_eq!(
            KumaDuration::parse("99999999999999999999y"),
            Err(DurationError::Overflow)
        );
        assert_eq!(
            KumaDuration::parse("999999999999999999y"),
            Err(DurationError::Overflow)
        );
    }

    #[test]
    fn round_trips_text() {
        let d = KumaDuration::parse("1d").expect("valid");
        assert_eq!(serde_json::to_string(&d).expect("serializes"), "\"1d\"");
        assert_eq!(
            KumaDuration::from_duration(Duration::from_secs(86400)).as_str(),
            "1d"
        );
        assert_eq!(
            KumaDuration::from_duration(Duration::from_secs(3600 * 25)).as_str(),
            "25h"
        );
        assert_eq!(
            KumaDuration::from_duration(Duration::from_millis(1500)).as_str(),
            "1500ms"
        );
    }

    #[test]
    fn timeouts() {
        assert_eq!(
            Timeout::parse("10s").map(|t| t.as_duration()),
            Ok(Duration::from_secs(10))
        );
        assert_eq!(
            Timeout::parse("0.5s").map(|t| t.as_duration()),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(
            Timeout::parse("1m").map(|t| t.as_duration()),
            Ok(Duration::from_secs(60))
        );
        // Go's grammar, as Kuma's decoder reads a protobuf Duration.
        assert_eq!(
            Timeout::parse("1m30s").map(|t| t.as_duration()),
            Ok(Duration::from_secs(90))
        );
        assert_eq!(
            Timeout::parse(".5s").map(|t| t.as_duration()),
            Ok(Duration::from_millis(500))
        );
        for s in ["", "s", "ten seconds", "1.0000000001"] {
            assert!(
                matches!(Timeout::parse(s), Err(TimeoutError::Format(_))),
                "{s:?}"
            );
        }
        assert_eq!(
            Timeout::parse("10").map_err(|e| e.to_string()),
            Err("bad Duration: time: missing unit in duration \"10\"".to_string())
        );
        assert_eq!(Timeout::parse("-1s"), Err(TimeoutError::Negative));
    }
}
