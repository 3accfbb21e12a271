//! Results: a table per scenario (figure, its same-run baseline, ratio, target, PASS/MISS/INFO),
//! printed as Markdown, plus summary statistics over repeats and the JSON document `--json` writes.

use serde::Serialize;
use serde_json::Value;

/// Summary of repeated measurements of one figure.
#[derive(Clone, Debug, Serialize)]
pub struct Stat {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    pub samples: Vec<f64>,
}

impl Stat {
    /// `None` when there are no samples.
    pub fn of(samples: &[f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        Some(Self {
            min: s[0],
            median: percentile_sorted(&s, 50.0),
            max: s[s.len() - 1],
            samples: samples.to_vec(),
        })
    }

    pub fn single(v: f64) -> Self {
        Self {
            min: v,
            median: v,
            max: v,
            samples: vec![v],
        }
    }
}

/// Nearest-rank percentile of an ascending slice (`p` in 0..=100); 0 for an empty slice.
pub fn percentile_sorted(s: &[f64], p: f64) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    if p >= 50.0 && (p - 50.0).abs() < f64::EPSILON && s.len().is_multiple_of(2) {
        let m = s.len() / 2;
        return (s[m - 1] + s[m]) / 2.0;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    percentile_sorted(&s, p)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Verdict {
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "MISS")]
    Miss,
    /// No target for this figure: reported for information.
    #[serde(rename = "INFO")]
    Info,
}

impl Verdict {
    pub fn from_bool(ok: bool) -> Self {
        if ok { Self::Pass } else { Self::Miss }
    }

    fn text(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Miss => "**MISS**",
            Self::Info => "INFO",
        }
    }
}

/// One line of a table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub figure: String,
    pub unit: String,
    /// Ours.
    pub value: Option<Stat>,
    /// What the figure is compared with, and how it was obtained.
    pub baseline: Option<Stat>,
    pub baseline_label: String,
    /// Ours ÷ baseline (medians).
    pub ratio: Option<f64>,
    pub target: String,
    pub verdict: Verdict,
}

impl Row {
    pub fn new(figure: impl Into<String>, unit: impl Into<String>, value: Option<Stat>) -> Self {
        Self {
            figure: figure.into(),
            unit: unit.into(),
            value,
            baseline: None,
            baseline_label: String::new(),
            ratio: None,
            target: "—".into(),
            verdict: Verdict::Info,
        }
    }

    /// Sets the baseline and the ratio of medians.
    pub fn baseline(mut self, b: Option<Stat>, label: impl Into<String>) -> Self {
        self.ratio = match (&self.value, &b) {
            (Some(v), Some(b)) if b.median != 0.0 => Some(v.median / b.median),
            _ => None,
        };
        self.baseline = b;
        self.baseline_label = label.into();
        self
    }

    /// A second figure shown in the baseline column (p99 beside p50), without a ratio.
    pub fn beside(mut self, b: Option<Stat>, label: impl Into<String>) -> Self {
        self.baseline = b;
        self.baseline_label = label.into();
        self.ratio = None;
        self
    }

    pub fn target(mut self, text: impl Into<String>, verdict: Verdict) -> Self {
        self.target = text.into();
        self.verdict = verdict;
        self
    }
}

/// One scenario's results.
#[derive(Clone, Debug, Serialize)]
pub struct Table {
    pub scenario: String,
    pub title: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    /// Extra numbers for the JSON document only.
    pub extra: Value,
    pub seconds: f64,
    pub loadavg_before: String,
    pub loadavg_after: String,
}

impl Table {
    pub fn new(scenario: &str, title: &str) -> Self {
        Self {
            scenario: scenario.into(),
            title: title.into(),
            rows: Vec::new(),
            notes: Vec::new(),
            extra: Value::Null,
            seconds: 0.0,
            loadavg_before: String::new(),
            loadavg_after: String::new(),
        }
    }

    pub fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }

    pub fn print(&self) {
        println!("\n### {} — {}\n", self.scenario, self.title);
        println!(
            "| figure | ours (median [min–max]) | baseline (same run) | ratio | target | result |"
        );
        println!("|---|---|---|---|---|---|");
        for r in &self.rows {
            let ours = r
                .value
                .as_ref()
                .map_or("—".into(), |s| fmt_stat(s, &r.unit));
            let base = match &r.baseline {
                Some(b) if r.baseline_label.is_empty() => fmt_stat(b, &r.unit),
                Some(b) => format!("{} ({})", fmt_stat(b, &r.unit), r.baseline_label),
                None if r.baseline_label.is_empty() => "—".into(),
                None => r.baseline_label.clone(),
            };
            let ratio = r.ratio.map_or("—".into(), num);
            println!(
                "| {} | {ours} | {base} | {ratio} | {} | {} |",
                r.figure,
                r.target,
                r.verdict.text()
            );
        }
        for n in &self.notes {
            println!("\n- {n}");
        }
        println!(
            "\n_{:.0} s; load average before: {}; after: {}_",
            self.seconds, self.loadavg_before, self.loadavg_after
        );
    }
}

/// A number with a sensible precision for its size.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 || (v.fract() == 0.0 && a < 1e15) {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_stat(s: &Stat, unit: &str) -> String {
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    };
    if s.samples.len() <= 1 || (s.min - s.max).abs() < f64::EPSILON {
        format!("{}{unit}", num(s.median))
    } else {
        format!("{}{unit} [{}–{}]", num(s.median), num(s.min), num(s.max))
    }
}

/// The system load average (1, 5, 15 min) as `/proc/loadavg` shows it.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_percentiles() {
        let s = Stat::of(&[3.0, 1.0, 2.0, 10.0]).expect("samples");
        assert_eq!((s.min, s.median, s.max), (1.0, 2.5, 10.0));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[5.0], 99.0), 5.0);
        let r = Row::new("x", "u", Some(Stat::single(9.0))).baseline(Some(Stat::single(10.0)), "");
        assert_eq!(r.ratio, Some(0.9));
    }
}
