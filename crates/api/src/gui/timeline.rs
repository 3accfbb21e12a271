//! A mesh's certificate-expiry timeline: how many certificates expire in each time bucket from now
//! on, split into those whose renewal is still ahead and those past their renewal time, drawn as
//! inline SVG. Meshplane renews at 70–80 % of a certificate's lifetime, so in a healthy mesh every
//! certificate has at least a fifth of its lifetime left; a bar of overdue certificates is a stalled
//! rotation.

use chrono::{DateTime, TimeDelta, Utc};
use maud::{Markup, html};

use super::layout::{fmt_span, fmt_time};

/// One certificate's expiry and, when known, when it was issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertTimes {
    pub expires: DateTime<Utc>,
    pub issued: Option<DateTime<Utc>>,
}

impl CertTimes {
    /// Past the latest moment Meshplane's schedule renews it (80 % of its lifetime).
    pub fn renewal_overdue(&self, now: DateTime<Utc>) -> bool {
        let Some(issued) = self.issued else {
            return false;
        };
        let life = self.expires - issued;
        if life <= TimeDelta::zero() {
            return now >= self.expires;
        }
        now > issued + life * 4 / 5
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub on_schedule: usize,
    pub overdue: usize,
}

impl Bucket {
    pub fn total(&self) -> usize {
        self.on_schedule + self.overdue
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    pub now: DateTime<Utc>,
    pub width: TimeDelta,
    pub buckets: Vec<Bucket>,
    /// Certificates already past their expiry (still reported: the dataplane got no new one).
    pub expired: usize,
    /// Overdue certificates across all buckets.
    pub overdue: usize,
    pub total: usize,
}

pub const BUCKETS: usize = 24;

/// Bucket widths a reader can count in, smallest first.
const STEPS: [i64; 14] = [
    60,
    5 * 60,
    15 * 60,
    30 * 60,
    3600,
    2 * 3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86_400,
    2 * 86_400,
    7 * 86_400,
    14 * 86_400,
    30 * 86_400,
];

/// Buckets from `now` covering the latest expiry (at most `BUCKETS` of the smallest width that
/// reaches it).
pub fn model(certs: &[CertTimes], now: DateTime<Utc>) -> Timeline {
    let latest = certs.iter().map(|c| c.expires).max().unwrap_or(now);
    let span = (latest - now).num_seconds().max(1);
    let step = STEPS
        .iter()
        .copied()
        .find(|s| s * BUCKETS as i64 >= span)
        .unwrap_or(STEPS[STEPS.len() - 1]);
    let width = TimeDelta::seconds(step);
    let mut buckets: Vec<Bucket> = (0..BUCKETS)
        .map(|i| Bucket {
            from: now + width * i as i32,
            to: now + width * (i as i32 + 1),
            on_schedule: 0,
            overdue: 0,
        })
        .collect();
    let (mut expired, mut overdue) = (0, 0);
    for c in certs {
        if c.expires <= now {
            expired += 1;
            continue;
        }
        let i = ((c.expires - now).num_seconds() / step).clamp(0, BUCKETS as i64 - 1) as usize;
        if c.renewal_overdue(now) {
            buckets[i].overdue += 1;
            overdue += 1;
        } else {
            buckets[i].on_schedule += 1;
        }
    }
    Timeline {
        now,
        width,
        buckets,
        expired,
        overdue,
        total: certs.len(),
    }
}

const W: f64 = 760.0;
const H: f64 = 200.0;
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 12.0;
/// The expired bar, left of the buckets.
const EXPIRED_W: f64 = 40.0;

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// The timeline as an inline SVG chart with a text legend; every bar has a tooltip with its counts.
pub fn svg(t: &Timeline) -> Markup {
    let max = t
        .buckets
        .iter()
        .map(Bucket::total)
        .chain(std::iter::once(t.expired))
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_h = H - BOTTOM - TOP;
    let x0 = LEFT + EXPIRED_W + 8.0;
    let bw = (W - x0 - 4.0) / t.buckets.len().max(1) as f64;
    let y = |n: usize| TOP + plot_h - plot_h * n as f64 / max as f64;
    let h = |n: usize| plot_h * n as f64 / max as f64;
    let label_every = (t.buckets.len() / 6).max(1);
    let desc = format!(
        "{} in this mesh: {} expired, {} overdue for renewal, by expiry in buckets of {}",
        plural(t.total, "certificate"),
        t.expired,
        t.overdue,
        fmt_span(t.width)
    );
    html! {
        svg class="timeline" viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(desc) xmlns="http://www.w3.org/2000/svg" {
            title { (desc) }
            line class="axis" x1=(LEFT) y1=(TOP + plot_h) x2=(W - 4.0) y2=(TOP + plot_h) {}
            text class="tick" x=(LEFT - 6.0) y=(TOP + 4.0) text-anchor="end" { (max) }
            text class="tick" x=(LEFT - 6.0) y=(TOP + plot_h) text-anchor="end" { "0" }
            g class="expired" {
                rect x=(LEFT + 4.0) y=(y(t.expired)) width=(EXPIRED_W - 8.0) height=(h(t.expired)) {
                    title { (plural(t.expired, "certificate")) " already expired" }
                }
                text class="tick" x=(LEFT + EXPIRED_W / 2.0) y=(H - 10.0) text-anchor="middle" { "expired" }
            }
            @for (i, b) in t.buckets.iter().enumerate() {
                @let x = x0 + bw * i as f64;
                g class="bucket" {
                    title {
                        (plural(b.total(), "certificate")) " expire between " (fmt_time(b.from)) " and " (fmt_time(b.to))
                        @if b.overdue > 0 { " (" (b.overdue) " past their renewal time)" }
                    }
                    @if b.on_schedule > 0 {
                        rect class="ok" x=(format!("{:.1}", x + 1.0)) y=(format!("{:.1}", y(b.total()) + h(b.overdue))) width=(format!("{:.1}", bw - 2.0)) height=(format!("{:.1}", h(b.on_schedule))) {}
                    }
                    @if b.overdue > 0 {
                        rect class="overdue" x=(format!("{:.1}", x + 1.0)) y=(format!("{:.1}", y(b.total()))) width=(format!("{:.1}", bw - 2.0)) height=(format!("{:.1}", h(b.overdue))) {}
                    }
                    // An invisible full-height target, so the tooltip works on empty buckets too.
                    rect class="hit" x=(format!("{:.1}", x)) y=(TOP) width=(format!("{:.1}", bw)) height=(plot_h) {}
                }
                @if i % label_every == 0 {
                    text class="tick" x=(format!("{:.1}", x + 2.0)) y=(H - 10.0) { "+" (fmt_span(b.from - t.now)) }
                }
            }
        }
        p class="legend" {
            span class="swatch ok" {} "renewal on schedule "
            span class="swatch overdue" {} "past its renewal time (rotation stalled) "
            span class="swatch expired" {} "expired"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
    }

    #[test]
    fn a_stalled_rotation_stands_out() {
        let now = at(0);
        let day = 86_400;
        // 10 certificates of 24 h issued an hour ago: on schedule, expiring in 23 h.
        let mut certs: Vec<CertTimes> = (0..10)
            .map(|_| CertTimes {
                expires: at(23 * 3600),
                issued: Some(at(-3600)),
            })
            .collect();
        // 3 issued 22 h ago: past 80 % of their lifetime, renewal overdue, 2 h left.
        certs.extend((0..3).map(|_| CertTimes {
            expires: at(2 * 3600),
            issued: Some(at(2 * 3600 - day)),
        }));
        // 1 expired, 1 without an issue time.
        certs.push(CertTimes {
            expires: at(-60),
            issued: Some(at(-60 - day)),
        });
        certs.push(CertTimes {
            expires: at(3600),
            issued: None,
        });
        let t = model(&certs, now);
        assert_eq!(
            t.width,
            TimeDelta::hours(1),
            "23 h fits in 24 one-hour buckets"
        );
        assert_eq!(t.total, 15);
        assert_eq!(t.expired, 1);
        assert_eq!(t.overdue, 3);
        assert_eq!(t.buckets[2].overdue, 3);
        assert_eq!(t.buckets[2].on_schedule, 0);
        assert_eq!(t.buckets[23].on_schedule, 10);
        assert_eq!(
            t.buckets[1].on_schedule, 1,
            "unknown issue time is not overdue"
        );
        let counted: usize = t.buckets.iter().map(Bucket::total).sum();
        assert_eq!(counted + t.expired, t.total);

        let svg = svg(&t).into_string();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("3 past their renewal time"), "{svg}");
        assert!(svg.contains(r#"class="overdue""#));
        assert!(svg.contains("1 certificate already expired"));
    }

    #[test]
    fn bucket_width_grows_with_the_horizon() {
        let now = at(0);
        let one = |secs: i64| {
            model(
                &[CertTimes {
                    expires: at(secs),
                    issued: None,
                }],
                now,
            )
            .width
        };
        assert_eq!(one(600), TimeDelta::minutes(1));
        assert_eq!(one(30 * 86_400), TimeDelta::days(2));
        assert_eq!(one(10 * 365 * 86_400), TimeDelta::days(30), "capped");
        let empty = model(&[], now);
        assert_eq!(empty.total, 0);
        assert_eq!(empty.buckets.len(), BUCKETS);
        // Far-future expiries land in the last bucket rather than outside the chart.
        let far = model(
            &[CertTimes {
                expires: at(10 * 365 * 86_400),
                issued: None,
            }],
            now,
        );
        assert_eq!(far.buckets[BUCKETS - 1].on_schedule, 1);
    }
}
