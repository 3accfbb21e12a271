//! The metrics every Meshplane binary exports besides its own: build info, the process's CPU,
//! memory, file descriptors and start time (Prometheus' standard `process_*` names), and the one
//! OpenMetrics encoding all `/metrics` endpoints answer with.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::Histogram,
        info::Info,
    },
    registry::Registry,
};

/// The content type of every `/metrics` answer.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The Linux kernel reports CPU times in /proc in USER_HZ ticks, which is 100 on every
/// architecture's user-space ABI (whatever the kernel's internal HZ).
const USER_HZ: f64 = 100.0;

/// A registry with the standard families registered at its root, and the sub-registry (prefix
/// `meshplane`) where the binary registers its own.
pub fn root_registry(binary: &'static str, version: &'static str) -> Registry {
    let mut root = Registry::default();
    root.register(
        "meshplane_build",
        "The Meshplane binary and version running",
        Info::new(vec![("binary", binary), ("version", version)]),
    );
    root.register_collector(Box::new(ProcessCollector::new()));
    root
}

/// The registry encoded as OpenMetrics text.
pub fn encode(reg: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, reg)?;
    Ok(out)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpErrorLabels {
    pub op: &'static str,
    pub error: &'static str,
}

/// Calls to a dependency (the store, a Vault): each call's latency by operation, and its failures
/// by operation and error, as a `<name>_duration_seconds` histogram and `<name>_errors_total`.
#[derive(Clone, Debug)]
pub struct OpMetrics {
    pub seconds: Family<OpLabels, Histogram>,
    pub errors: Family<OpErrorLabels, Counter>,
}

impl Default for OpMetrics {
    fn default() -> Self {
        Self {
            seconds: Family::new_with_constructor(|| {
                Histogram::new([
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
            }),
            errors: Family::default(),
        }
    }
}

impl OpMetrics {
    /// Registers `<name>_duration_seconds{op}` and `<name>_errors_total{op,error}`; `what` names the
    /// calls in the help texts.
    pub fn register(&self, reg: &mut Registry, name: &str, what: &str) {
        reg.register(
            format!("{name}_duration_seconds"),
            format!("Time {what} took, by operation"),
            self.seconds.clone(),
        );
        reg.register(
            format!("{name}_errors"),
            format!("Failed {what}, by operation and error"),
            self.errors.clone(),
        );
    }

    /// Records one finished call; `error` is the failure's label, `None` on success.
    pub fn observe(&self, op: &'static str, started: Instant, error: Option<&'static str>) {
        self.seconds
            .get_or_create(&OpLabels { op })
            .observe(started.elapsed().as_secs_f64());
        if let Some(error) = error {
            self.errors
                .get_or_create(&OpErrorLabels { op, error })
                .inc();
        }
    }
}

/// `process_*` read from /proc/self on each scrape; families whose source cannot be read (another
/// OS) are left out rather than reported as zero.
#[derive(Debug)]
pub struct ProcessCollector {
    start: f64,
}

impl ProcessCollector {
    pub fn new() -> Self {
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Self { start }
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

/// Total user + system CPU seconds from the text of /proc/self/stat.
pub fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may contain spaces: count from after it.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name, field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Resident memory in bytes from the text of /proc/self/status.
pub fn resident_bytes(status: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(cpu) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| cpu_seconds(&s))
        {
            let c = ConstCounter::new(cpu);
            let m = encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                c.metric_type(),
            )?;
            c.encode(m)?;
        }
        if let Some(rss) = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| resident_bytes(&s))
        {
            let g = ConstGauge::new(rss);
            let m = encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size, in bytes",
                None,
                g.metric_type(),
            )?;
            g.encode(m)?;
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            let g = ConstGauge::new(i64::try_from(dir.count()).unwrap_or(i64::MAX));
            let m = encoder.encode_descriptor(
                "process_open_fds",
                "Open file descriptors",
                None,
                g.metric_type(),
            )?;
            g.encode(m)?;
        }
        let g = ConstGauge::new(self.start);
        let m = encoder.encode_descriptor(
            "process_start_time_seconds",
            "When the process started, as Unix time",
            None,
            g.metric_type(),
        )?;
        g.encode(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_texts_are_read_past_a_command_name_with_spaces_and_parens() {
        let stat = "4242 (meshplane (x) y) S 1 4242 4242 0 -1 4194560 1500 0 0 0 250 50 0 0 20 0 \
                    12 0 123456 987654321 2345 18446744073709551615";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        assert_eq!(
            resident_bytes("Name:\tx\nVmRSS:\t  2048 kB\nThreads:\t3\n"),
            Some(2048 * 1024)
        );
        assert_eq!(cpu_seconds("garbage"), None);
    }

    #[test]
    fn the_root_registry_exports_build_info_and_this_process() {
        let reg = root_registry("meshplane-test", "9.9.9");
        let text = encode(&reg).expect("encode");
        assert!(
            text.contains(r#"meshplane_build_info{binary="meshplane-test",version="9.9.9"} 1"#),
            "{text}"
        );
        for family in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(family), "{family} missing:\n{text}");
        }
        let rss: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse().ok())
            .expect("rss value");
        assert!(
            rss > 1024.0 * 1024.0,
            "a real RSS, not a placeholder: {rss}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
