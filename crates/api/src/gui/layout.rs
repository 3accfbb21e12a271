//! The page shell every console page shares (header, navigation, the refreshed `<main>`, footer)
//! and the small formatting helpers pages use for times, spans and states.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use maud::{DOCTYPE, Markup, html};

use super::auth::Access;
use crate::ServerInfo;

/// Which navigation entry a page belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Zones,
    Meshes,
    Dataplanes,
    None,
}

/// What the shell needs besides the page's own content.
pub struct Shell<'a> {
    pub info: &'a ServerInfo,
    pub access: Option<&'a Access>,
    pub title: &'a str,
    pub nav: Nav,
    /// Seconds between live refreshes of `<main>`; `None` for pages that do not refresh.
    pub refresh: Option<u32>,
    pub now: DateTime<Utc>,
}

pub const BASE: &str = "/gui";

/// A full page: the shell around `body`.
pub fn page(shell: &Shell<'_>, body: Markup) -> Markup {
    let cp = match &shell.info.zone {
        Some(z) => format!("zone {z}"),
        None => "global".to_string(),
    };
    let zones_label = if shell.info.zone.is_some() {
        "Global"
    } else {
        "Zones"
    };
    let entries = [
        (Nav::Overview, "Overview", BASE.to_string()),
        (Nav::Zones, zones_label, format!("{BASE}/zones")),
        (Nav::Meshes, "Meshes", format!("{BASE}/meshes")),
        (Nav::Dataplanes, "Dataplanes", format!("{BASE}/dataplanes")),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (shell.title) " · Meshplane " (cp) }
                link rel="stylesheet" href=(format!("{BASE}/assets/console.css"));
                script src=(format!("{BASE}/assets/console.js")) defer {}
            }
            body {
                header {
                    a class="brand" href=(BASE) { "Meshplane" }
                    span class="cp" { (cp) }
                    @if shell.access.is_some() {
                        nav {
                            @for (n, label, href) in &entries {
                                a href=(href) class=[(shell.nav == *n).then_some("active")] { (label) }
                            }
                        }
                    }
                    span class="who" {
                        @match shell.access {
                            Some(Access::Admin) => { "loopback admin" }
                            Some(Access::User { name, via_cookie }) => {
                                "signed in as " (name)
                                @if *via_cookie {
                                    form method="post" action=(format!("{BASE}/logout")) class="inline" {
                                        button type="submit" { "Sign out" }
                                    }
                                }
                            }
                            None => {}
                        }
                    }
                }
                main data-refresh=[shell.refresh] data-rendered=(shell.now.to_rfc3339_opts(SecondsFormat::Secs, true)) {
                    (body)
                }
                footer {
                    span { "Meshplane " (shell.info.version) " · " (shell.info.mode) " · instance " (shell.info.instance_id) }
                    @if let Some(r) = shell.refresh {
                        span id="refresh-state" data-every=(r) { "live: refreshes every " (r) " s" }
                    }
                }
            }
        }
    }
}

/// `2026-12-03 10:31:02 UTC`.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A span in its two largest units: `45s`, `12m`, `3h 20m`, `2d 4h`.
pub fn fmt_span(d: TimeDelta) -> String {
    let s = d.num_seconds().abs();
    let (days, hours, mins, secs) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    let text = if days > 0 {
        if hours > 0 {
            format!("{days}d {hours}h")
        } else {
            format!("{days}d")
        }
    } else if hours > 0 {
        if mins > 0 {
            format!("{hours}h {mins}m")
        } else {
            format!("{hours}h")
        }
    } else if mins > 0 {
        format!("{mins}m")
    } else {
        format!("{secs}s")
    };
    if d < TimeDelta::zero() {
        format!("-{text}")
    } else {
        text
    }
}

/// `in 3h 20m` or `5m ago`.
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = t - now;
    if d >= TimeDelta::zero() {
        format!("in {}", fmt_span(d))
    } else {
        format!("{} ago", fmt_span(-d))
    }
}

/// A time as `<time>` with its absolute value and, beside it, how far from now.
pub fn when(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Markup {
    html! {
        @match t {
            Some(t) => {
                time datetime=(t.to_rfc3339_opts(SecondsFormat::Secs, true)) title=(fmt_time(t)) { (relative(t, now)) }
            }
            None => { span class="muted" { "—" } }
        }
    }
}

/// A status word with its colour class.
pub fn badge(class: &str, text: &str) -> Markup {
    html! { span class=(format!("badge {class}")) { (text) } }
}

/// A problem as a person needs it: what is wrong, and what to do.
pub fn problem(what: &str, fix: Option<&str>) -> Markup {
    html! {
        div class="problem" {
            p class="what" { (what) }
            @if let Some(f) = fix { p class="fix" { strong { "Fix: " } (f) } }
        }
    }
}

/// Percent-encodes a query parameter value (links carry mesh, zone and service names).
pub fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_relative_times() {
        assert_eq!(fmt_span(TimeDelta::seconds(45)), "45s");
        assert_eq!(fmt_span(TimeDelta::seconds(12 * 60 + 5)), "12m");
        assert_eq!(fmt_span(TimeDelta::seconds(3 * 3600 + 20 * 60)), "3h 20m");
        assert_eq!(fmt_span(TimeDelta::hours(24)), "1d");
        assert_eq!(fmt_span(TimeDelta::hours(52)), "2d 4h");
        assert_eq!(fmt_span(TimeDelta::seconds(-90)), "-1m");
        let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        assert_eq!(relative(now + TimeDelta::hours(2), now), "in 2h");
        assert_eq!(relative(now - TimeDelta::minutes(5), now), "5m ago");
        assert_eq!(fmt_time(now), "2027-01-15 08:00:00 UTC");
        assert_eq!(q("kuma.io/service=a b"), "kuma.io%2Fservice%3Da%20b");
    }
}
